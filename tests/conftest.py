import numpy as np
import pytest
import torch
from importlib import resources
from pathlib import Path

from licodec.models import create_model
from licodec.weights import save_weights

from testkit import TINY, TINY_CCA, TINY_CONFIGS  # noqa: F401  (re-exported to the tests)

HYPERPRIOR_MODELS = ["bmshj2018-hyperprior", "mbt2018-mean"]


def tiny_model(name: str, seed: int = 0, **config):
    torch.manual_seed(seed)
    return create_model(name, {**TINY_CONFIGS.get(name, TINY), **config}).eval()


@pytest.fixture(scope="session")
def sample_path() -> Path:
    return Path(str(resources.files("licodec") / "data" / "sample.png"))


@pytest.fixture(scope="session")
def sample_rgb(sample_path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(sample_path).convert("RGB"))


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("w") / "tiny-mbt.safetensors"
    save_weights(tiny_model("mbt2018-mean"), path, quality=3, lmbda=0.0067)
    return path


@pytest.fixture
def train_images(tmp_path) -> Path:
    """Two small random RGB images in a folder, for training runs of a few steps."""
    from PIL import Image

    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return d


def train_args(*argv):
    """`licodec train` arguments, parsed as the CLI parses them."""
    import argparse

    from licodec import train

    p = argparse.ArgumentParser()
    train.add_arguments(p)
    return p.parse_args([str(a) for a in argv])


def image_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).unsqueeze(0).float() / 255
