"""Low-memory modes: model and sequential CPU offload give the same images as the plain pipeline
(run here with the CPU as the 'GPU', which exercises every hook and move), and the command line
says in one line when a mode needs CUDA that the machine does not have."""

import numpy as np
import pytest
import torch
from conftest import random_image

from x2i.app.cli import main
from x2i.inference.pipeline import X2IPipeline
from x2i.inference.request import Request


def images(pipe):
    requests = [Request("a red circle"), Request("make it blue", [random_image(1)])]
    return [np.asarray(im) for im in pipe(requests, height=32, width=32, num_inference_steps=2, show_progress=False)]


def test_model_offload_gives_the_same_images(tiny_models):
    parts = [tiny_models[k] for k in ("mllm", "flux", "alignnet")]
    plain = images(X2IPipeline.from_pretrained(*parts))
    pipe = X2IPipeline.from_pretrained(*parts)
    pipe.enable_model_cpu_offload(device="cpu")
    assert pipe.offload == ("model", torch.device("cpu"))
    for a, b in zip(plain, images(pipe)):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_sequential_offload_streams_the_mllm_and_alignnet(tiny_models):
    """x2i's parts under accelerate's hooks read the same conditioning. (FLUX's own sequential
    offload is diffusers'; accelerate cannot stream to the CPU itself, so it runs on GPUs only.)"""
    parts = [tiny_models[k] for k in ("mllm", "flux", "alignnet")]
    requests = [Request("a red circle"), Request("make it blue", [random_image(1)])]
    plain = X2IPipeline.from_pretrained(*parts).encode(requests)
    pipe = X2IPipeline.from_pretrained(*parts)
    pipe.enable_sequential_cpu_offload(device="cpu")
    assert pipe.offload == ("sequential", torch.device("cpu"))
    assert all(p.device.type == "meta" for p in pipe.encoder.model.parameters())  # no weight stays resident
    streamed = pipe.encode(requests)
    torch.testing.assert_close(streamed.prompt_embeds, plain.prompt_embeds)
    torch.testing.assert_close(streamed.pooled_prompt_embeds, plain.pooled_prompt_embeds)


@pytest.mark.parametrize("flags, message", [
    (["--offload", "model"], "--offload moves each part to a GPU while it runs, and no CUDA GPU is visible"),
    (["--quantize", "nf4"], "--quantize nf4 is bitsandbytes' 4-bit format, which needs a CUDA GPU"),
])
def test_modes_that_need_cuda_say_so(flags, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without CUDA
    assert main(["generate", "--prompt", "a red circle", *flags, "--out", str(tmp_path / "o.png")]) == 2
    assert message in capsys.readouterr().err


def test_int8_on_the_cpu_quantizes_flux_and_the_mllm(tiny_models, tmp_path):
    """--quantize int8 on the CPU: torchao's int8 weight-only tensors in the FLUX transformer and the
    MLLM, loaded through diffusers' and transformers' TorchAoConfig; the pictures stay close."""
    parts = [tiny_models[k] for k in ("mllm", "flux", "alignnet")]
    plain = images(X2IPipeline.from_pretrained(*parts))
    pipe = X2IPipeline.from_pretrained(*parts, quantize="int8")
    assert "Int8" in type(pipe.flux.transformer.transformer_blocks[0].attn.to_q.weight).__name__
    assert "Int8" in type(pipe.encoder.model.model.language_model.layers[0].self_attn.q_proj.weight).__name__
    for a, b in zip(plain, images(pipe)):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 8  # of 255
    out = tmp_path / "q.png"
    assert main(["generate", "--mllm", str(parts[0]), "--flux", str(parts[1]), "--alignnet", str(parts[2]), "--prompt", "a red circle",
                 "--quantize", "int8", "--height", "32", "--width", "32", "--steps", "2", "--out", str(out)]) == 0 and out.is_file()
