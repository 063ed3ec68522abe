"""The app's request handling without a browser: what uploads it accepts, how many, and that every
failure becomes a one-line message in the page."""

import gradio as gr
import pytest

from x2i.app.serve import accepted_suffixes, build_app, open_uploads, user_message
from x2i.errors import X2IError


class FakeEncoder:
    def __init__(self, takes):
        self.takes = takes


class FakePipe:
    def __init__(self, takes):
        self.encoder = FakeEncoder(takes)


def test_uploads_are_the_inputs_the_reader_takes():
    from PIL import Image

    from x2i.media import Audio, Video

    images_only = accepted_suffixes(FakePipe((Image.Image,)))
    everything = accepted_suffixes(FakePipe((Image.Image, Audio, Video)))
    assert ".png" in images_only and ".wav" not in images_only and ".mp4" not in images_only
    assert ".gif" not in images_only  # x2i reads a .gif as a video clip, which this reader refuses
    assert {".png", ".wav", ".mp3", ".mp4", ".webm"} <= set(everything)


def test_uploads_are_bounded_and_checked(tmp_path):
    files = [str(tmp_path / f"{i}.png") for i in range(5)]
    with pytest.raises(X2IError, match="5 files uploaded; this server takes at most 4"):
        open_uploads(files, max_inputs=4)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(X2IError, match="unsupported file type .txt"):
        open_uploads([str(tmp_path / "notes.txt")], max_inputs=4)


def test_every_failure_is_one_line_in_the_page():
    def bad_input():
        raise X2IError("cannot read image x.png")

    def bug():
        raise RuntimeError("shapes do not match\nlong internal detail")

    with pytest.raises(gr.Error) as failure:
        user_message(bad_input)
    assert failure.value.message == "cannot read image x.png"
    with pytest.raises(gr.Error) as failure:
        user_message(bug)
    assert str(failure.value.message) == "the request failed (RuntimeError: shapes do not match); see the server log"
    assert user_message(lambda: 42) == 42


def test_the_app_builds_over_a_pipeline(pipeline):
    app = build_app(pipeline, max_inputs=2, default_steps=3)
    labels = {getattr(block, "label", None) for block in app.blocks.values()}
    assert {"Inputs (at most 2)", "Results (newest first), each with the inputs that made it", "Message"} <= labels


def test_the_app_generates_from_a_sound_with_a_reader_that_hears(tiny_readers, tmp_path):
    """The Generate tab's handler over the tiny Qwen2.5-Omni: a sound upload makes a picture, and
    its caption names the upload."""
    from conftest import write_sound

    from x2i.inference.pipeline import X2IPipeline

    paths = tiny_readers["qwen2_5_omni"]
    pipe = X2IPipeline.from_pretrained(paths["mllm"], paths["flux"], paths["alignnet"])
    app = build_app(pipe, default_steps=2)
    generate = next(f.fn for f in app.fns.values() if f.fn.__name__ == "generate")
    tone = write_sound(tmp_path / "tone.wav")
    gallery, results, _ = generate("draw what you hear", [str(tone)], 0, 2, 32, 32, 3.5, 1, "auto", 1.0, 1.0, 1.0, [])
    assert gallery == results and len(results) == 1
    path, caption = results[0]
    # auto: an AlignNet that names no roads (as the tiny one, and the official ones) reads the prompt
    assert caption.startswith("draw what you hear | inputs: tone.wav | read: prompt | seed 0, 2 steps, 32x32")
    _, results, _ = generate("draw what you hear", [str(tone)], 0, 2, 32, 32, 3.5, 1, "answer", 1.0, 1.0, 1.0, results)
    assert len(results) == 2 and " | read: the answer: " in results[0][1]
    from PIL import Image

    assert Image.open(path).size == (32, 32)


def test_the_app_offers_the_branch_and_the_lora_when_loaded_and_zips_the_gallery(tmp_path):
    """With the shipped LightControl and LoRA and a FLUX LoRA: their strength sliders show, the LoRAs'
    are applied to FLUX's adapters, a text-only request runs with the branch off (it keeps an input picture, and there
    is none), and "Download all" is a zip of every picture with its caption."""
    import zipfile

    from PIL import Image
    from test_flux_lora import lora_file

    from x2i.inference.pipeline import X2IPipeline

    pipe = X2IPipeline.from_pretrained("mini", "mini", "mini", lightcontrol="mini", lora="mini", flux_loras=[(lora_file(tmp_path, "kohya")[0], 1.0)])
    app = build_app(pipe, default_steps=2)
    sliders = {b.elem_id: b for b in app.blocks.values() if getattr(b, "elem_id", None) in ("lightcontrol-scale", "lora-scale", "flux-lora-scale")}
    assert sliders["lightcontrol-scale"].visible and sliders["lora-scale"].visible and sliders["flux-lora-scale"].visible
    generate = next(f.fn for f in app.fns.values() if f.fn.__name__ == "generate")
    _, results, _ = generate("a red circle on the left", [], 0, 2, 64, 64, 3.5, 1, "auto", 1.0, 0.25, 0.5, [])
    layer = pipe.flux.transformer.transformer_blocks[0].attn.to_out[0]
    quarter, half = layer.scaling["x2i"], layer.scaling["flux-lora-0"]
    source = tmp_path / "source.png"
    Image.new("RGB", (64, 64), "white").save(source)
    _, results, archive = generate("make it blue", [str(source)], 0, 2, 64, 64, 3.5, 2, "auto", 0.5, 1.0, 1.0, results)
    assert layer.scaling["x2i"] == 4 * quarter and layer.scaling["flux-lora-0"] == 2 * half and len(results) == 3
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == ["000.png", "001.png", "002.png", "captions.txt"]
        captions = z.read("captions.txt").decode()
    assert captions.startswith("000.png  a red circle on the left | inputs: none") and "make it blue | inputs: source.png" in captions


def test_the_app_turns_gradio_analytics_off_by_itself():
    """Without GRADIO_ANALYTICS_ENABLED in the environment Gradio would report usage home; importing
    the app turns it off (nothing leaves the machine)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "GRADIO_ANALYTICS_ENABLED"}
    check = "import {}gradio.analytics as a; print(a.analytics_enabled())"
    plain = subprocess.run([sys.executable, "-c", check.format("")], env=env, capture_output=True, text=True, check=True)
    ours = subprocess.run([sys.executable, "-c", check.format("x2i.app.serve, ")], env=env, capture_output=True, text=True, check=True)
    assert plain.stdout.strip() == "True" and ours.stdout.strip() == "False"
