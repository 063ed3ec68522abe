"""Tiny real models (Qwen2.5-VL, FLUX, AlignNet), built once per test session and loaded from disk
through the same public loaders a user calls."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
torch.set_num_threads(2)
# diffusers and transformers give their loggers a handler on the stderr of the moment they load:
# load them now, not inside a test whose captured stderr is closed after it.
import x2i.inference.pipeline  # noqa: E402, F401


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    from x2i.tiny_models import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="session")
def encoder(tiny_models):
    from x2i.inference.loaders import load_encoder

    return load_encoder(tiny_models["mllm"])


@pytest.fixture(scope="session")
def pipeline(tiny_models):
    from x2i.inference.pipeline import X2IPipeline

    return X2IPipeline.from_pretrained(tiny_models["mllm"], tiny_models["flux"], tiny_models["alignnet"])


def random_image(seed: int, size=(48, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "input.png"
    random_image(1).save(path)
    return path


@pytest.fixture(scope="session")
def tiny_readers(tmp_path_factory, tiny_models):
    """Tiny models of every reader (the qwen2_5_vl ones are the session's `tiny_models`)."""
    from x2i.tiny_models import build_tiny_models

    readers = {"qwen2_5_vl": tiny_models}
    for reader in ("internvl", "qwen2_5_omni"):
        readers[reader] = build_tiny_models(tmp_path_factory.mktemp(reader), seed=0, reader=reader)
    return readers


def write_clip(path, frames=12, fps=4, size=(64, 48), codec="mpeg4"):
    """A small video clip with a bar that moves from frame to frame."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "rgb8" if codec == "gif" else "yuv420p"
        for i in range(frames):
            image = np.zeros((size[1], size[0], 3), np.uint8)
            image[:, (5 * i) % size[0] : (5 * i) % size[0] + 6] = (255, 60, 0)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_clip_with_sound(path, seconds=3, fps=4, size=(64, 48), frequency=440.0, rate=16000):
    """An mp4 of a moving bar (MPEG-4 video) with a sine tone as its sound track (AAC)."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=rate, layout="mono")
        for i in range(seconds * fps):
            image = np.zeros((size[1], size[0], 3), np.uint8)
            image[:, (5 * i) % size[0] : (5 * i) % size[0] + 6] = (255, 60, 0)
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        t = np.arange(seconds * rate) / rate
        tone = (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)[None]
        for start in range(0, tone.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start : start + 1024]), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            container.mux(audio.encode(frame))
        container.mux(video.encode())
        container.mux(audio.encode())
    return path


def write_sound(path, seconds=1.0, rate=44100, frequency=440.0, channels=2, codec="pcm_s16le"):
    """A sine tone, stereo by default, in the format `codec` writes (wav, flac, mp3, ...)."""
    import av

    t = np.arange(int(seconds * rate)) / rate
    tone = (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout="stereo" if channels == 2 else "mono")
        samples = np.tile(tone, (channels, 1)) if stream.format.is_planar else np.repeat(tone, channels)[None]
        frame = av.AudioFrame.from_ndarray(
            samples if stream.format.name == "fltp" else (samples * 32767).astype(np.int16),
            format="fltp" if stream.format.name == "fltp" else "s16" if not stream.format.is_planar else "s16p",
            layout="stereo" if channels == 2 else "mono",
        )
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
