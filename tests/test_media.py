"""Audio and video decoding (PyAV) and x2i's torchvision-free video processing for the Qwen family,
checked against transformers' own `Qwen2VLVideoProcessor` (reference made by
tests/data/make_video_reference.py where torchvision runs)."""

from pathlib import Path

import numpy as np
import pytest
from conftest import write_clip, write_sound
from transformers import Qwen2VLImageProcessorPil

from x2i.errors import X2IError
from x2i.inference.encoders.video_processor import QwenVideoProcessor
from x2i.media import Audio, Video

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name, tolerance", [("clip-56x56.mp4", 1e-6), ("clip-64x48.mp4", 0.016)])
def test_video_input_equals_transformers_video_processor(name, tolerance):
    """Frames that need no resizing give transformers' values to float rounding; resized ones
    differ by at most one grey level (PIL's bicubic vs torchvision's: 1/255 / CLIP std 0.26 = 0.015)."""
    reference = np.load(DATA / "video-reference.npz")
    processor = QwenVideoProcessor(Qwen2VLImageProcessorPil(), min_pixels=56 * 56, max_pixels=56 * 56)
    out = processor([Video.load(DATA / name).frames(fps=2.0)])
    assert out["video_grid_thw"].tolist() == reference[f"{name}:video_grid_thw"].tolist() == [[3, 4, 4]]  # 5 frames padded to 6
    difference = np.abs(out["pixel_values_videos"].numpy() - reference[f"{name}:pixel_values_videos"])
    assert difference.max() <= tolerance


@pytest.mark.parametrize("codec, suffix", [("mpeg4", ".mp4"), ("libvpx", ".webm"), ("gif", ".gif")])
def test_frames_are_sampled_at_the_stated_rate(tmp_path, codec, suffix):
    clip = Video.load(write_clip(tmp_path / f"clip{suffix}", frames=12, fps=4, codec=codec))
    assert clip.duration == pytest.approx(3.0) and clip.fps == pytest.approx(4.0)
    frames = clip.frames(fps=2.0)
    # 3 s at 2 fps: frames at 0, 0.5, ... 2.5 s, i.e. every second frame of the clip, whose bar moves 5 px a frame
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3)
    bar = [int(np.argmax(frame[20, :, 0] > 128)) for frame in frames]
    assert bar == [0, 10, 20, 30, 40, 50]


def test_a_long_clip_is_cut_with_a_warning(tmp_path):
    clip = Video.load(write_clip(tmp_path / "clip.mp4", frames=40, fps=4))
    with pytest.warns(UserWarning, match=r"10.0 s at 2 fps is 20 frames; reading only the first 4.0 s \(8 frames\)"):
        frames = clip.frames(fps=2.0, max_frames=8)
    assert len(frames) == 8


@pytest.mark.parametrize("codec, suffix, rate", [("pcm_s16le", ".wav", 44100), ("flac", ".flac", 44100), ("libmp3lame", ".mp3", 44100), ("libopus", ".ogg", 48000)])
def test_audio_is_decoded_to_mono_at_the_readers_rate(tmp_path, codec, suffix, rate):
    clip = Audio.load(write_sound(tmp_path / f"tone{suffix}", seconds=1.0, rate=rate, frequency=440, codec=codec))
    assert clip.duration == pytest.approx(1.0, abs=0.03)
    samples = clip.decode(16000)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) == pytest.approx(16000, abs=500)
    peak = np.abs(np.fft.rfft(samples)).argmax() * 16000 / len(samples)
    assert peak == pytest.approx(440, abs=3)


def test_audio_from_an_array_is_resampled():
    t = np.arange(8000) / 8000
    clip = Audio.from_array(np.stack([np.sin(2 * np.pi * 300 * t)] * 2), 8000)  # stereo, channels first
    samples = clip.decode(16000)
    assert clip.duration == pytest.approx(1.0) and len(samples) == pytest.approx(16000, abs=100)
    assert np.abs(np.fft.rfft(samples)).argmax() * 16000 / len(samples) == pytest.approx(300, abs=3)


def test_bad_clips_are_refused_in_one_line(tmp_path):
    with pytest.raises(X2IError, match="video file not found"):
        Video.load(tmp_path / "missing.mp4")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(X2IError, match=r"unsupported video format \.txt; use one of \.mp4"):
        Video.load(tmp_path / "notes.txt")
    (tmp_path / "broken.mp4").write_bytes(b"\x00not a video" * 10)
    with pytest.raises(X2IError, match="cannot read video .*broken.mp4"):
        Video.load(tmp_path / "broken.mp4")
    with pytest.raises(X2IError, match="cannot read audio .*broken.wav"):
        (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00garbage")
        Audio.load(tmp_path / "broken.wav")
    with pytest.raises(X2IError, match="has no audio stream"):
        Audio.load(write_clip(tmp_path / "silent.mp4"))
    with pytest.raises(X2IError, match="has no video stream"):
        Video.load(write_sound(tmp_path / "tone.mp4", codec="aac"))


@pytest.mark.parametrize("mode, values, expected", [
    ("I;16", np.full((4, 4), 32896, dtype=np.uint16), 128),  # 16-bit grey PNG: mid-grey stays mid-grey (it became white)
    ("F", np.full((4, 4), 0.5, dtype=np.float32), 128),  # floats in 0..1
    ("L", np.full((4, 4), 77, dtype=np.uint8), 77),  # 8 bits as they were
])
def test_deep_pictures_are_scaled_to_8_bits_not_clipped(tmp_path, mode, values, expected):
    from PIL import Image

    from x2i.media import load_image

    path = tmp_path / ("p.tiff" if mode == "F" else "p.png")
    Image.fromarray(values).save(path)
    with Image.open(path) as saved:
        assert saved.mode == mode
    assert np.asarray(load_image(path))[0, 0].tolist() == [expected] * 3



def test_a_sound_track_that_cannot_be_heard_leaves_the_clip_seen(tmp_path):
    from x2i.media.clips import _track

    silent = write_clip(tmp_path / "clip.mp4")  # no sound in it: what a track with nothing in it gives Audio.load
    with pytest.warns(UserWarning, match="sound track cannot be heard"):
        assert _track(silent) is None
    assert Video.load(silent).sound is None
