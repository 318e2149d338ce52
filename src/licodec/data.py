"""Training/validation images: every PNG/JPEG in a folder, held in memory as uint8 tensors,
served as random crops with random flips and, optionally, random downscaling (see
`scripts/prepare_data.py` for the recipe)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".ppm", ".bmp", ".tif", ".tiff"}


def list_images(folder) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such directory")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder}: no images found")
    return files


def load_rgb(path) -> torch.Tensor:
    """(3, H, W) uint8."""
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


class CropSampler:
    """Random crops (with horizontal/vertical flips) from in-memory images, driven by a torch.Generator
    whose state is checkpointed, so a resumed run draws the same batches as an uninterrupted one."""

    def __init__(self, folder, patch: int, generator: torch.Generator, max_scale: float = 1.0):
        """max_scale > 1: each crop is cut at s·patch pixels and resized to patch (antialiased), s drawn
        log-uniformly from [1, max_scale] (limited by the image size): the photo downscaled by s, which
        adds fine texture to the crops (with the recipe's 2x-downsampled JPEGs and max_scale 2, crops
        come from the originals downsampled 2-4x, the range the recipe allows)."""
        if max_scale < 1:
            raise ValueError(f"max_scale must be >= 1, got {max_scale}")
        self.max_scale = max_scale
        images = [load_rgb(p) for p in list_images(folder)]
        self.images = [im for im in images if min(im.shape[1:]) >= patch]
        self.skipped = len(images) - len(self.images)  # smaller than the crop
        if not self.images:
            raise ValueError(f"{folder}: no image is at least {patch}x{patch} ({len(images)} smaller ones)")
        self.patch = patch
        self.g = generator
        # sample images proportionally to their area so every pixel is equally likely
        self.weights = torch.tensor([im.shape[1] * im.shape[2] for im in self.images], dtype=torch.float64)

    def batch(self, n: int) -> torch.Tensor:
        """(n, 3, patch, patch) float in [0, 1]."""
        p, out = self.patch, []
        idx = torch.multinomial(self.weights, n, replacement=True, generator=self.g)
        for i in idx.tolist():
            im = self.images[i]
            c = p  # side of the crop taken from the image, resized to p below
            if self.max_scale > 1:
                u = float(torch.rand((), generator=self.g, dtype=torch.float64))
                c = min(round(p * math.exp(u * math.log(self.max_scale))), *im.shape[1:])
            top = int(torch.randint(0, im.shape[1] - c + 1, (1,), generator=self.g))
            left = int(torch.randint(0, im.shape[2] - c + 1, (1,), generator=self.g))
            crop = im[:, top : top + c, left : left + c]
            if c != p:  # (3, c, c) uint8 -> (3, p, p) uint8, area-like (antialiased bilinear) downscaling
                small = F.interpolate(crop[None].float(), size=(p, p), mode="bilinear", antialias=True, align_corners=False)
                crop = small[0].round_().clamp_(0, 255).to(torch.uint8)
            flips = torch.randint(0, 2, (2,), generator=self.g).tolist()
            if flips[0]:
                crop = crop.flip(2)
            if flips[1]:
                crop = crop.flip(1)
            out.append(crop)
        return torch.stack(out).float().div_(255.0)


class Prefetcher:
    """Training batches drawn ahead in a background thread, in the order the sampler would give
    them, so that cropping never stalls the model.

    Each item is (x (B,3,p,p) float, q (B,) ~ U[1, levels] or None, the sampler generator's state
    after drawing it): a checkpoint stores the state of the last batch *trained on*, and a resumed
    run draws the same batches as an uninterrupted one. The qualities come from the sampler's
    generator right after each batch's crops. The sampler's generator must not be used elsewhere
    while a Prefetcher runs."""

    def __init__(self, sampler: CropSampler, batch_size: int, levels: float | None = None, depth: int = 2) -> None:
        import queue
        import threading

        self._sampler, self._batch, self._levels = sampler, batch_size, levels
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="licodec-prefetch", daemon=True)
        self._thread.start()

    def _draw(self):
        x = self._sampler.batch(self._batch)
        q = None
        if self._levels is not None:
            q = 1 + (self._levels - 1) * torch.rand(self._batch, generator=self._sampler.g)
        return x, q, self._sampler.g.get_state()

    def _work(self) -> None:
        import queue

        while not self._stop.is_set():
            try:
                item = self._draw()
            except BaseException as e:  # handed to the consumer
                item = e
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return

    def next(self):
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
