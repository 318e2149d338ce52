#!/usr/bin/env python3
"""The import graph of the licodec package, function-local imports included (read with `ast`;
nothing is imported; ``if TYPE_CHECKING:`` blocks are not imports): each module's licodec
imports, the cycles among modules, and the imports that go up the layers of `LAYERS`
(docs/architecture.md). tests/test_architecture.py checks that there are neither.

    python scripts/import_graph.py            # module edges, cycles, upward imports
    python scripts/import_graph.py --layers   # edges between layers
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "licodec"

# lowest first; a module may import its own layer and those below (a package prefix names its modules)
LAYERS = [
    ("foundation", ["licodec", "licodec.errors", "licodec.defaults", "licodec.precision", "licodec.progress",
                    "licodec.rate", "licodec.registry", "licodec.format", "licodec.imageio", "licodec.data"]),
    ("layers", ["licodec.layers"]),
    ("entropy", ["licodec.entropy"]),
    ("models", ["licodec.models"]),
    ("weights", ["licodec.weights", "licodec.weights_check"]),
    ("codec", ["licodec.codec"]),
    ("tools", ["licodec.metrics", "licodec.train", "licodec.ema", "licodec.analysis", "licodec.evaluation", "licodec.importers"]),
    ("cli", ["licodec.cli"]),
]


def layer_of(module: str) -> int:
    """Index in `LAYERS` of the longest prefix that names ``module``."""
    best, found = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for pre in prefixes:
            if (module == pre or module.startswith(pre + ".")) and len(pre) > best:
                best, found = len(pre), i
    if found is None:
        raise KeyError(f"{module} is in no layer of LAYERS")
    return found


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted(SRC.rglob("*.py")):
        parts = p.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _walk(node):
    """`ast.walk` that leaves out ``if TYPE_CHECKING:`` bodies."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            yield from (n for c in child.orelse for n in _walk_one(c))
            continue
        yield from _walk_one(child)


def _walk_one(node):
    yield node
    yield from _walk(node)


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The licodec modules that ``name`` imports anywhere in its body."""
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:  # `from . import models` names a module
                sub = f"{mod}.{alias.name}"
                found.add(sub if sub in known else mod)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {n: imports(n, p, set(mods)) for n, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in g:
        if v not in index:
            visit(v)
    return out


def upward(g: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports of a module in a higher layer: (importer, imported)."""
    return sorted((m, d) for m, ds in g.items() for d in ds if layer_of(d) > layer_of(m))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", action="store_true")
    a = p.parse_args(argv)
    g = graph()
    if a.layers:
        names = [n for n, _ in LAYERS]
        for i, n in enumerate(names):
            below = sorted({names[layer_of(d)] for m, ds in g.items() if layer_of(m) == i for d in ds} - {n},
                           key=names.index)
            print(f"{n}: {', '.join(below) or '-'}")
    else:
        for m in sorted(g):
            print(f"{m}: {', '.join(sorted(g[m]))}")
    cyc, up = cycles(g), upward(g)
    print("cycles:", cyc or "none")
    print("upward imports:", up or "none")
    return 1 if cyc or up else 0


if __name__ == "__main__":
    raise SystemExit(main())
