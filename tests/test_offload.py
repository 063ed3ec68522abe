"""Low-memory modes: model offload puts each part on the GPU only while it runs (a 'GPU' that differs
from the CPU: the meta device, moves recorded), sequential offload streams the weights and reads
the same conditioning, int8 on the CPU quantizes, and the command line says in one line when a mode
needs CUDA that the machine does not have."""

import numpy as np
import pytest
import torch
from conftest import random_image

from x2i.app.cli import main
from x2i.inference.lightcontrol import LightControl
from x2i.inference.pipeline import X2IPipeline
from x2i.inference.request import Request


def images(pipe):
    requests = [Request("a red circle"), Request("make it blue", [random_image(1)])]
    return [np.asarray(im) for im in pipe(requests, height=32, width=32, num_inference_steps=2, show_progress=False)]


def test_model_offload_runs_each_part_on_the_gpu_and_keeps_it_off_between(tiny_models, monkeypatch):
    """Model offload with a 'GPU' that differs from the CPU: the meta device, where a move is
    recorded instead of made (so the work still runs). The MLLM (answering, then encoding), AlignNet
    and the LightControl branch must each sit on the GPU while they run and on the CPU before and
    after; FLUX's parts are handed to diffusers' own offload with the same device."""
    parts = [tiny_models[k] for k in ("mllm", "flux", "alignnet")]
    pipe = X2IPipeline.from_pretrained(*parts, condition_on="prompt+answer")
    pipe.lightcontrol = LightControl.for_flux(pipe.flux, block_out_channels=(8, 16, 32), norm_groups=4)
    gpu, cpu = torch.device("meta"), torch.device("cpu")
    modules = {"mllm": pipe.encoder.model, "alignnet": pipe.alignnet, "lightcontrol": pipe.lightcontrol}
    placed, ran = {}, []
    for name, module in modules.items():
        def record_move(device, name=name, module=module):
            placed[name] = torch.device(device)
            return module

        monkeypatch.setattr(module, "to", record_move)
        watched = module.get_input_embeddings() if name == "mllm" else module  # every MLLM pass (encode, generate) embeds first
        watched.register_forward_pre_hook(lambda _module, _args, name=name: ran.append((name, placed.get(name))))
    flux_offload = []
    monkeypatch.setattr(pipe.flux, "enable_model_cpu_offload", lambda device: flux_offload.append(device))

    pipe.enable_model_cpu_offload(gpu)
    assert placed == {"mllm": cpu, "alignnet": cpu, "lightcontrol": cpu} and flux_offload == [gpu]
    pipe([Request("make it blue", [random_image(1)])], height=32, width=32, num_inference_steps=2, show_progress=False,
         generator=torch.Generator().manual_seed(0))  # noise made on the CPU: no generator lives on the meta device
    assert {name for name, _ in ran} == set(modules)
    assert all(device == gpu for _, device in ran), ran
    assert placed == {"mllm": cpu, "alignnet": cpu, "lightcontrol": cpu}


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


def test_a_branch_attached_after_sequential_offload_streams_too(tiny_models, tmp_path):
    """load_lightcontrol after sequential offload: the branch is hooked like every part (its weights
    stream in) and gives the same samples as the branch loaded plainly; it used to be moved to the
    meta device, where its weights were lost."""
    parts = [tiny_models[k] for k in ("mllm", "flux", "alignnet")]
    plain = X2IPipeline.from_pretrained(*parts)
    torch.manual_seed(0)
    LightControl.for_flux(plain.flux, block_out_channels=(8, 8, 8), norm_groups=4).save_pretrained(tmp_path / "branch")
    plain.load_lightcontrol(tmp_path / "branch")
    pipe = X2IPipeline.from_pretrained(*parts)
    pipe.enable_sequential_cpu_offload(device="cpu")
    pipe.load_lightcontrol(tmp_path / "branch")
    assert all(p.device.type == "meta" for p in pipe.lightcontrol.parameters())  # streamed, not resident
    image, sigma = torch.rand(1, 3, 32, 32) * 2 - 1, torch.tensor([0.5])
    for a, b in zip(pipe.lightcontrol(image, sigma), plain.lightcontrol(image, sigma)):
        torch.testing.assert_close(a, b)


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
