"""The package's dependencies point one way (docs/architecture.md): no import cycle among the
licodec modules, function-local imports included, and no module imports a higher layer."""

import importlib.util
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import import_graph  # noqa: E402


def test_no_import_cycle():
    assert import_graph.cycles(import_graph.graph()) == []


def test_no_import_goes_up_the_layers():
    g = import_graph.graph()
    assert all(import_graph.layer_of(m) >= 0 for m in g)  # every module is in a layer
    assert import_graph.upward(g) == []


def test_the_checker_sees_function_local_imports_and_cycles():
    # a function-local import is an edge; a cycle through one is found
    g = import_graph.graph()
    assert "licodec.models.refine" in g["licodec.models.hyperprior"]
    assert import_graph.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_graph.upward({"licodec.layers.gdn": {"licodec.codec"}}) == [("licodec.layers.gdn", "licodec.codec")]


def test_fuzzers_and_test_helpers_are_not_in_the_package():
    for name in ("licodec.fuzz", "licodec.fuzz_header", "licodec.fuzz_weights", "licodec.testing"):
        assert importlib.util.find_spec(name) is None, name
