"""Importers of weights trained elsewhere: CompressAI's zoo architectures (`licodec.importers.compressai`)
and the official CCA model of Han et al. 2024 (`licodec.importers.cca`).

A checkpoint (``.pth`` / ``.pth.tar``) is read with ``torch.load(weights_only=True)`` (no arbitrary
pickle), its tensors are mapped strictly onto a registered licodec model — every source tensor used
or explicitly accounted for, every shape checked, the config inferred from the shapes — and the
result is written as a normal licodec weight file (`licodec.weights.save_weights`) whose metadata
``extra`` records the provenance: source, architecture, quality and λ, the source file's SHA-256.
Anything wrong with the input is a one-line `CheckpointError`.

The written files work as any other (``Codec.from_weights``, ``licodec compress --weights``); put
into the user weight folder (`user_weights_dir`) they are listed by ``licodec models``.
"""

__all__ = ["CheckpointError", "ImportResult", "user_weights_dir", "user_weight_files"]


def __getattr__(name: str):  # lazily: `licodec --help` imports `licodec.importers.cli` without torch
    if name in __all__:
        from . import common

        return getattr(common, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
