import numpy as np
import pytest
import torch
from importlib import resources
from pathlib import Path

from licodec.registry import create_model
from licodec.weights import save_weights

TINY = {"N": 16, "M": 24}
HYPERPRIOR_MODELS = ["bmshj2018-hyperprior", "mbt2018-mean"]


def tiny_model(name: str, seed: int = 0, **config):
    torch.manual_seed(seed)
    return create_model(name, {**TINY, **config}).eval()


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


def image_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).unsqueeze(0).float() / 255
