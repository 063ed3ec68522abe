"""`x2i tiny-models --reader`, then `x2i generate` with every input each reader takes and `x2i
distill` for a few steps with each reader; bad audio and video input in one line, exit 2."""

import json

import numpy as np
import pytest
from conftest import write_clip, write_sound
from PIL import Image
from safetensors.torch import load_file

from x2i.app.cli import main

READERS = ["qwen2_5_vl", "internvl", "qwen2_5_omni"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The tiny models of every reader, built by the command a user runs."""
    root = tmp_path_factory.mktemp("readers")
    for reader in READERS:
        assert main(["tiny-models", str(root / reader), "--reader", reader]) == 0
    return root


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("inputs")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(directory / "a.png")
    write_clip(directory / "clip.webm", codec="libvpx")
    write_sound(directory / "tone.mp3", codec="libmp3lame")
    write_sound(directory / "long.wav", seconds=31, rate=8000)
    return directory


def model_args(built, reader):
    return [f"--{part}={built / reader / part}" for part in ("mllm", "flux", "alignnet")]


MEDIA = {
    "qwen2_5_vl": ["--image", "a.png", "--video", "clip.webm"],
    "internvl": ["--image", "a.png", "--image", "a.png"],
    "qwen2_5_omni": ["--audio", "tone.mp3", "--image", "a.png", "--video", "clip.webm"],
}


@pytest.mark.parametrize("reader", READERS)
def test_generate_with_every_input_the_reader_takes(built, inputs, tmp_path, reader):
    media = [str(inputs / item) if "." in item else item for item in MEDIA[reader]]
    out = tmp_path / "out.png"
    code = main(["generate", *model_args(built, reader), "--prompt", "draw it", *media,
                 "--height", "32", "--width", "32", "--steps", "2", "--out", str(out)])
    assert code == 0 and Image.open(out).size == (32, 32)


@pytest.mark.parametrize("reader", READERS)
def test_distill_runs_with_every_reader(built, tmp_path, reader):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle on the left\ntwo blue squares\na small green triangle at the top\n")
    out = tmp_path / "run"
    code = main(["distill", "--mllm", str(built / reader / "mllm"), "--prompts", str(prompts), "--out", str(out),
                 "--steps", "2", "--batch", "2", "--pad-to", "400", "--warmup", "1"])
    assert code == 0
    config = json.loads((out / "alignnet" / "config.json").read_text())
    assert (config["num_hidden_states"], config["hidden_size"]) == (3, 32)  # the tiny reader's 2 layers + 1, width 32
    assert all(np.isfinite(t.numpy()).all() for t in load_file(out / "alignnet" / "diffusion_pytorch_model.safetensors").values())


def bad_cases(built, inputs, tmp_path):
    (tmp_path / "notes.txt").write_text("not a sound")
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00junk")
    nowhere = ["--flux", str(tmp_path / "no-flux")]  # errors about the request must come before any model loads
    return {
        "audio for a reader that does not hear": (
            [*model_args(built, "qwen2_5_vl"), *nowhere, "--audio", str(inputs / "tone.mp3")], "Qwen2.5-VL does not take audio"),
        "video for InternVL": ([*model_args(built, "internvl"), *nowhere, "--video", str(inputs / "clip.webm")], "InternVL does not take video"),
        "unsupported audio format": ([*model_args(built, "qwen2_5_omni"), *nowhere, "--audio", str(tmp_path / "notes.txt")], "unsupported audio format .txt"),
        "unreadable audio": ([*model_args(built, "qwen2_5_omni"), *nowhere, "--audio", str(tmp_path / "broken.wav")], "cannot read audio"),
        "missing video": ([*model_args(built, "qwen2_5_omni"), *nowhere, "--video", str(tmp_path / "none.mp4")], "video file not found"),
        "bad frame rate": ([*model_args(built, "qwen2_5_omni"), *nowhere, "--prompt", "x", "--video-fps", "0"], "--video-fps must be positive"),
        "sound too long": ([*model_args(built, "qwen2_5_omni"), *nowhere, "--audio", str(inputs / "long.wav")], "31.0 s long; Qwen2.5-Omni hears at most 30 s"),
    }


@pytest.mark.parametrize("case", ["audio for a reader that does not hear", "video for InternVL", "unsupported audio format",
                                  "unreadable audio", "missing video", "bad frame rate", "sound too long"])
def test_bad_media_is_one_clear_line_and_exit_2(built, inputs, tmp_path, capsys, case):
    args, expected = bad_cases(built, inputs, tmp_path)[case]
    code = main(["generate", *args, "--height", "32", "--width", "32", "--steps", "1", "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("x2i: error:") and expected in err[-1], err[-1]
    assert not any("Traceback" in line for line in err)


def test_a_long_clip_is_cut_with_a_warning(built, inputs, tmp_path):
    with pytest.warns(UserWarning, match=r"clip.webm: 3.0 s at 2 fps is 6 frames; reading only the first 1.0 s \(2 frames\)"):
        code = main(["generate", *model_args(built, "qwen2_5_vl"), "--video", str(inputs / "clip.webm"), "--max-frames", "2",
                     "--height", "32", "--width", "32", "--steps", "1", "--out", str(tmp_path / "o.png")])
    assert code == 0
