"""Tiny real models (Qwen2.5-VL, FLUX, AlignNet), built once per test session and loaded from disk
through the same public loaders a user calls."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    from x2i.tiny import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="session")
def encoder(tiny_models):
    from x2i.loaders import load_encoder

    return load_encoder(tiny_models["mllm"])


@pytest.fixture(scope="session")
def pipeline(tiny_models):
    from x2i.pipeline import X2IPipeline

    return X2IPipeline.from_pretrained(tiny_models["mllm"], tiny_models["flux"], tiny_models["alignnet"])


def random_image(seed: int, size=(48, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "input.png"
    random_image(1).save(path)
    return path
