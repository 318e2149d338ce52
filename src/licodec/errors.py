"""User-facing errors (the CLI prints their message on one line and exits with status 1) and notices."""

import sys


class LicodecError(Exception):
    """Base of every error that is the input's fault, not a bug: a `.lic` file (`FormatError`), an
    image (`ImageError`), a weight file (`licodec.weights.WeightsError`, also a ValueError), a model
    name (`licodec.registry.UnknownModelError`, also a KeyError), a model config
    (`licodec.registry.ConfigError`, also a ValueError), or an argument of the Python API."""


class FormatError(LicodecError):
    """A .lic file is foreign, truncated, corrupt or from a newer format version."""


class ImageError(LicodecError):
    """An input image cannot be read or is outside what the codec accepts."""


def notice(msg: str) -> None:
    """One line on stderr, ``licodec: notice: …``, that does not break a tqdm progress bar."""
    from tqdm import tqdm

    tqdm.write(f"licodec: notice: {msg}", file=sys.stderr)
