"""Timing beside a background training run: `paused` stops that process meanwhile (SIGSTOP), and
lets it go on after (SIGCONT), so that a timing does not share the CPU with it."""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager


@contextmanager
def paused(pid: int | None):
    """The process ``pid`` stopped meanwhile (nothing when ``pid`` is None or 0)."""
    if pid:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        if pid:
            os.kill(pid, signal.SIGCONT)
