"""Progress of long coding work, reported to whoever listens (the CLI's progress bar).

The transforms of a large image run tile by tile (`licodec.codec.tiling.tiled`); each finished
tile calls `report` with its stage ("analysis" or "synthesis"), the tiles done and the tiles in
all. Nothing listens unless a caller wraps the work in `reporting(callback)`: then `report` costs
one context-variable lookup per tile.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator, Optional

Callback = Callable[[str, int, int], None]  # (stage, done, total)
_listener: ContextVar[Optional[Callback]] = ContextVar("licodec_progress", default=None)


@contextmanager
def reporting(callback: Callback) -> Iterator[None]:
    """Send the progress of the work done inside the block to ``callback(stage, done, total)``."""
    token = _listener.set(callback)
    try:
        yield
    finally:
        _listener.reset(token)


def report(stage: str, done: int, total: int) -> None:
    cb = _listener.get()
    if cb is not None:
        cb(stage, done, total)
