"""Bounded work: prompts longer than the model reads, sizes far beyond the model or the memory,
and absurd captions in distillation are refused (or cut, with a warning) before the work starts."""

import time

import pytest

from x2i.app.cli import main
from x2i.errors import X2IError
from x2i.inference.request import Request
from x2i.inference.work_bounds import generation_bytes


def test_an_enormous_prompt_is_refused_at_once(capsys, tmp_path):
    start = time.time()
    code = main(["generate", "--prompt", "a red circle and " * 5000, "--out", str(tmp_path / "o.png")])  # 85,000 characters
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.startswith("x2i: error: the text is") and "reads at most 128" in err and "--max-text-tokens" in err
    assert time.time() - start < 60  # it once ran 35 s per denoising step


def test_the_prompt_limit_is_a_flag(tmp_path):
    assert main(["generate", "--prompt", "a red circle on the left", "--max-text-tokens", "3", "--steps", "1", "--out", str(tmp_path / "o.png")]) == 2
    assert main(["generate", "--prompt", "a red circle on the left", "--steps", "1", "--out", str(tmp_path / "o.png")]) == 0


def test_a_size_far_beyond_the_model_is_refused(capsys, tmp_path):
    code = main(["generate", "--prompt", "a red circle", "--height", "4096", "--width", "4096", "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "4096x4096 is 262144 image tokens; this FLUX was made for 64x64 (64 tokens) and x2i allows up to 256" in err and "--max-image-tokens" in err
    # the flag raises the bound (here to a size that runs in a moment)
    assert main(["generate", "--prompt", "a red circle", "--height", "128", "--width", "128", "--steps", "1", "--out", str(tmp_path / "o.png")]) == 0


def test_a_size_whose_memory_will_not_fit_is_refused_with_the_estimate(pipeline, monkeypatch):
    import x2i.inference.work_bounds

    monkeypatch.setattr(x2i.inference.work_bounds, "free_bytes", lambda device: 1024**2)  # 1 MiB free
    with pytest.raises(X2IError, match=r"1 image at 64x64 needs about 0\.\d GiB of activations on cpu, and 0\.0 GiB is free"):
        pipeline(Request("a red circle"), height=64, width=64, num_inference_steps=1)


def test_many_images_are_made_in_passes_that_fit_and_do_not_depend_on_them(pipeline, monkeypatch):
    """Five images where two fit in memory: passes of two, two and one (the whole batch used to be
    one pass of 10 GB for --num-images 10000), each image the same as in one pass, and image k
    of seed S the single image of seed S + k."""
    import numpy as np

    import x2i.inference.work_bounds

    request, sizes = Request("a red circle"), {"height": 32, "width": 32, "num_inference_steps": 2, "show_progress": False}
    whole = pipeline(request, num_images_per_prompt=5, seed=7, **sizes)
    passes = []
    real_flux = type(pipeline.flux).__call__
    monkeypatch.setattr(type(pipeline.flux), "__call__", lambda self, **kw: passes.append(len(kw["prompt_embeds"])) or real_flux(self, **kw))
    one_image = x2i.inference.work_bounds.generation_bytes(pipeline.flux, 32, 32, 1, pipeline.pad_to or pipeline.max_text_tokens)
    monkeypatch.setattr(x2i.inference.work_bounds, "free_bytes", lambda device: 2 * one_image + 1)
    split = pipeline(request, num_images_per_prompt=5, seed=7, **sizes)
    assert passes == [2, 2, 1]
    def close(a, b):  # a batch of another size rounds its sums otherwise: a level of 255 at most
        return np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max() <= 1

    assert all(close(a, b) for a, b in zip(whole, split))
    assert not any(close(whole[0], b) for b in whole[1:])  # five different images
    assert close(pipeline(request, seed=9, **sizes)[0], whole[2])
    passes.clear()
    pipeline(request, num_images_per_prompt=5, seed=7, batch_size=1, **sizes)
    assert passes == [1] * 5


def test_the_memory_estimate_grows_with_size_and_images(pipeline):
    flux = pipeline.flux
    small, large = generation_bytes(flux, 64, 64, 1, 32), generation_bytes(flux, 256, 256, 1, 32)
    assert large > 8 * small and generation_bytes(flux, 256, 256, 4, 32) == 4 * large


def test_distill_cuts_an_absurd_caption_with_a_warning(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle on the left\n" + "a blue square " * 15000 + "\n")  # a 209,999-character line (stripped)
    start = time.time()
    with pytest.warns(UserWarning, match="a caption of 209999 characters is longer than 128 tokens .*reads its first 128 tokens"):
        code = main(["distill", "--prompts", str(prompts), "--out", str(tmp_path / "run"), "--steps", "1", "--batch", "2", "--pad-to", "128"])
    assert code == 0 and time.time() - start < 120
