"""Defaults and argument rules that the command line shows in ``--help`` and checks while parsing,
in a module that imports nothing (so that ``licodec --help`` and argument errors do not import
torch). `licodec.codec` (its runner and tiling) and `licodec.models.refine` use these same
values and checks (`tests/test_cli_habits.py` checks that `MAX_EFFORT` matches the effort table)."""

DEFAULT_MODEL = "mbt2018-mean"
DEFAULT_QUALITY = 3.0
DEFAULT_TILE = 1024  # pixels; the codec's default tile size (`licodec.codec.tiling`)
TILE_MULTIPLE = 64  # tile sizes are multiples of the models' total stride (g_a ∘ h_a)
MAX_EFFORT = 4  # the highest encoder effort (`licodec.models.refine.EFFORT_STEPS`); "max" names it


def check_tile(tile) -> int:
    """``tile`` as an int: 0 (never tile) or a positive multiple of 64 pixels; ValueError otherwise."""
    t = int(tile)
    if t != tile or t < 0 or t % TILE_MULTIPLE:
        raise ValueError(f"tile size must be 0 (no tiling) or a positive multiple of {TILE_MULTIPLE} pixels, got {tile}")
    return t


def check_effort(effort) -> int:
    """An effort level 0..MAX_EFFORT (an int, or "max"), or ValueError."""
    if isinstance(effort, str) and effort.strip().lower() == "max":
        return MAX_EFFORT
    if isinstance(effort, bool) or not isinstance(effort, int) or not 0 <= effort <= MAX_EFFORT:
        raise ValueError(f"effort must be an integer in 0..{MAX_EFFORT} or 'max', got {effort!r:.20}")
    return effort
