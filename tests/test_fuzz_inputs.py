"""Fast samples of the edited-header and weight-file fuzzers (benchmarks/run_fuzz.py runs 2,000
cases of each), and checks that their harnesses flag what they must."""

import numpy as np
import pytest
import torch

from conftest import tiny_model
from licodec.codec import Codec
from testkit.fuzz import Seed
from testkit.fuzz_header import HeaderEditor, run_header_fuzz
from testkit.fuzz_weights import WeightMutator, run_weight_case, run_weight_fuzz
from licodec.weights import save_weights


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fz")
    out = []
    for name, kw, q, half in (("mbt2018-mean", {}, 3, False), ("he2021-checkerboard", {}, 3, True),
                              ("mbt2018-mean", {"rate_levels": 8}, None, False)):
        m = tiny_model(name, **kw)
        last = [c for c in m.g_a.modules() if isinstance(c, torch.nn.Conv2d)][-1]
        with torch.no_grad():
            last.weight.mul_(20)
        path = d / f"{name}-{len(out)}.safetensors"
        save_weights(m, path, quality=q, half=half)
        out.append(str(path))
    return out


@pytest.fixture(scope="module")
def rgb(sample_rgb):
    return np.ascontiguousarray(sample_rgb[:40, :56])


@pytest.fixture(scope="module")
def seeds(files, sample_rgb):
    out = []
    for f in files:
        codec = Codec.from_weights(f)
        for h, w in ((1, 1), (33, 47), (64, 96)):
            out.append(Seed(codec.encode(np.ascontiguousarray(sample_rgb[:h, :w])), f, f"{f} {w}x{h}"))
    return out


def test_header_fuzz_sample_has_no_failures(seeds):
    s = run_header_fuzz(seeds, cases=300, seed=0)
    assert s["outcomes"]["failure"] == 0, s["failures"][:3]
    assert s["outcomes"]["decoded"] == 0
    assert sum(s["outcomes"].values()) == 300
    # quality, size and channel edits reach the latent check
    assert sum(n for msg, n in s["clean_errors"].items() if "header" in msg and "cannot decode" in msg) >= 50, \
        s["clean_errors"]


def test_header_edits_are_deterministic_and_change_the_bytes(seeds):
    data = [s.data for s in seeds]
    a, b = HeaderEditor(data, seed=1), HeaderEditor(data, seed=1)
    for i in range(50):
        c = a.case(i)
        assert c == b.case(i) and c.data != data[c.seed_index]


def test_header_fuzz_flags_a_decoded_edit(seeds):
    s = run_header_fuzz(seeds[:1], cases=5, seed=0, decode=lambda d, w: (np.zeros((1, 1, 3), np.uint8), None))
    assert s["outcomes"]["failure"] == 5


def test_weight_fuzz_sample_has_no_failures(files, rgb):
    s = run_weight_fuzz(files, rgb, cases=250, seed=0)
    assert s["outcomes"]["failure"] == 0, s["failures"][:3]
    assert s["outcomes"]["clean_error"] >= 150
    assert s["outcomes"]["decoded"] >= 10  # float16 storage, finite values: weights that still code
    assert s["max_rss_growth_mib"] < 512


def test_weight_cases_are_deterministic(files):
    blobs = [open(f, "rb").read() for f in files]
    a, b = WeightMutator(blobs, seed=2), WeightMutator(blobs, seed=2)
    for i in range(30):
        assert a.case(i) == b.case(i)


def test_weight_harness_flags_warnings(files, rgb, tmp_path, monkeypatch):
    import warnings

    import testkit.fuzz_weights as fw

    def warns(path, rgb):
        warnings.warn("overflow", RuntimeWarning)
        return rgb

    monkeypatch.setattr(fw, "code_with", warns)
    r = run_weight_case(open(files[0], "rb").read(), tmp_path, rgb)
    assert r.outcome == "failure" and "RuntimeWarning" in r.reason
