"""Test kit shared by the tests, the benchmarks and scripts/ (not part of the installed package: the
tests put ``tests/`` on ``sys.path`` through pyproject's ``pythonpath``, the benchmarks and scripts
insert it themselves). The mutation fuzzers live beside this file: `testkit.fuzz` (.lic files),
`testkit.fuzz_header` (header fields), `testkit.fuzz_weights` (weight files), `testkit.fuzz_tally`.

Tiny configs of every registered model: random-init models of ~20k parameters whose coding runs
in milliseconds, for the tests, the fuzz run (`benchmarks/run_fuzz.py`) and quick experiments.

    from testkit import TINY_CONFIGS
    model = create_model("han2024-cca", TINY_CONFIGS["han2024-cca"])

`reordered_sums`: what another machine does to float sums, on this one. `load_script`: a script of
scripts/ or benchmarks/ as a module, for the tests of its functions.
"""

from contextlib import contextmanager
from pathlib import Path

import torch.nn.functional as F

TINY = {"N": 16, "M": 24}
TINY_CCA = {
    "N": 8, "M": 24, "widths": [8, 8, 8], "naf_blocks": [1, 1, 1], "res_blocks": 1, "hyper_width": 8,
    "num_groups": 4, "em_width": 8, "em_blocks": 1, "head_widths": [8, 8],
}
# one per registered model (tests/models/test_all_models.py checks that none is missing)
TINY_CONFIGS = {
    "bmshj2018-hyperprior": TINY,
    "mbt2018-mean": TINY,
    "lee2019-ctx": TINY,
    "lee2019-ctx-hybrid": {**TINY, "M2": 8},
    "he2021-checkerboard": TINY,
    "han2024-cca": TINY_CCA,
    # weights imported from CompressAI and the CCA authors (`licodec.models.imported`)
    "compressai-bmshj2018-hyperprior": TINY,
    "compressai-mbt2018-mean": TINY,
    "compressai-mbt2018": TINY,
    "han2024-cca-official": TINY_CCA,
}


@contextmanager
def reordered_sums():
    """What another machine does to float sums, on this one: within, every ``F.conv2d`` and
    ``F.conv_transpose2d`` (those of the networks, float or exact) sums its input channels in
    reverse order — the same mathematics in another order, as another thread count, CPU kernel or
    GPU would. Yields a dict whose "calls" counts them."""
    conv2d, conv_transpose2d = F.conv2d, F.conv_transpose2d
    count = {"calls": 0}

    def reversed_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
        count["calls"] += 1
        if groups != 1:  # depthwise: nothing to reorder
            return conv2d(x, w, b, stride, padding, dilation, groups)
        return conv2d(x.flip(1), w.flip(1), b, stride, padding, dilation, groups)

    def reversed_conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
        count["calls"] += 1
        return conv_transpose2d(x.flip(1), w.flip(0), b, stride, padding, output_padding, groups, dilation)

    F.conv2d, F.conv_transpose2d = reversed_conv2d, reversed_conv_transpose2d
    try:
        yield count
    finally:
        F.conv2d, F.conv_transpose2d = conv2d, conv_transpose2d


def load_script(path, name: str):
    """The Python file ``path`` (a script, not a package module) imported as module ``name``, with its
    own folder on ``sys.path`` meanwhile (for the helpers beside it, e.g. benchmarks/pausing.py)."""
    import importlib.util
    import sys

    folder = str(Path(path).parent)
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(folder)
    return mod
