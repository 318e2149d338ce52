"""Tiny configs of every registered model: random-init models of ~20k parameters whose coding runs
in milliseconds, for the tests, the fuzz run (`benchmarks/run_fuzz.py`) and quick experiments.

    from licodec.testing import TINY_CONFIGS
    model = create_model("han2024-cca", TINY_CONFIGS["han2024-cca"])
"""

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
}
