"""Defaults that the command line shows in ``--help``, in a module that imports nothing (so that
``licodec --help`` does not import torch). `licodec.codec` and `licodec.models.tiling` use the same
values (`tests/test_cli_habits.py` checks that they agree)."""

DEFAULT_MODEL = "mbt2018-mean"
DEFAULT_QUALITY = 3.0
DEFAULT_TILE = 1024  # = licodec.models.tiling.DEFAULT_TILE
MAX_EFFORT = 4  # the highest encoder effort (`licodec.models.refine.EFFORT_STEPS`); "max" names it
