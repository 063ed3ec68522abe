"""Community FLUX LoRAs on X2I's FLUX and on the teacher: the formats diffusers reads (diffusers,
kohya, xlabs), each changing the adapted layer by exactly its scaled low-rank update; beside the edit
LoRA, each at its own strength; one for another FLUX in one line; on the command line and in eval."""

import pytest
import torch
from safetensors.torch import save_file

from x2i.app.cli import main
from x2i.errors import X2IError
from x2i.inference.pipeline import X2IPipeline

RANK, INNER = 4, 128  # the mini FLUX: 4 heads of 32


def low_rank(seed, inner=INNER):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(RANK, inner, generator=g) * 0.05, torch.randn(inner, RANK, generator=g) * 0.05  # down (A), up (B)


def lora_file(tmp_path, fmt, inner=INNER):
    """A LoRA on the first double block's image attention output (FLUX: img_attn.proj; diffusers:
    transformer_blocks.0.attn.to_out.0), written as each trainer writes it; and its update B @ A."""
    down, up = low_rank(1, inner)
    if fmt == "diffusers":
        state = {"transformer.transformer_blocks.0.attn.to_out.0.lora_A.weight": down, "transformer.transformer_blocks.0.attn.to_out.0.lora_B.weight": up}
        update = up @ down
    elif fmt == "kohya":  # sd-scripts: lora_down/lora_up with alpha; the update is scaled by alpha / rank
        key = "lora_unet_double_blocks_0_img_attn_proj"
        state = {f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up, f"{key}.alpha": torch.tensor(2.0)}
        update = up @ down * 2.0 / RANK
    else:  # xlabs: the attention processor's proj_lora1
        state = {"double_blocks.0.processor.proj_lora1.down.weight": down, "double_blocks.0.processor.proj_lora1.up.weight": up}
        update = up @ down
    path = tmp_path / f"{fmt}.safetensors"
    save_file(state, path)
    return path, update


def effective_weight(layer):
    x = torch.eye(layer.in_features)
    return (layer(x) - layer.base_layer.bias).T


@pytest.mark.parametrize("fmt", ["diffusers", "kohya", "xlabs"])
def test_each_format_adds_its_scaled_update(fmt, tmp_path):
    pipe = X2IPipeline.from_pretrained("mini", "mini", "mini")
    base = pipe.flux.transformer.transformer_blocks[0].attn.to_out[0].weight.detach().clone()
    path, update = lora_file(tmp_path, fmt)
    pipe.load_flux_lora(path, scale=0.5)
    layer = pipe.flux.transformer.transformer_blocks[0].attn.to_out[0]  # now wrapped by peft
    with torch.no_grad():
        torch.testing.assert_close(effective_weight(layer), base + 0.5 * update, atol=1e-5, rtol=1e-4)


def test_a_flux_lora_sits_beside_the_edit_lora_each_at_its_strength(tmp_path):
    from x2i.inference.lora import set_lora_scale

    pipe = X2IPipeline.from_pretrained("mini", "mini", "mini", lora="mini", lora_scale=0.25, flux_loras=[(lora_file(tmp_path, "kohya")[0], 0.5)])
    assert sorted(pipe.flux.get_active_adapters()) == ["flux-lora-0", "x2i"]
    layer = pipe.flux.transformer.transformer_blocks[0].attn.to_out[0]
    scaling = dict(layer.scaling)
    set_lora_scale(pipe.flux, 1.0)  # the edit LoRA to 1: the FLUX LoRA keeps 0.5
    assert layer.scaling["x2i"] == pytest.approx(4 * scaling["x2i"]) and layer.scaling["flux-lora-0"] == scaling["flux-lora-0"]


def test_a_lora_for_another_flux_is_one_line(tmp_path):
    pipe = X2IPipeline.from_pretrained("mini", "mini", "mini")
    path, _ = lora_file(tmp_path, "kohya", inner=3072)  # FLUX.1's width
    with pytest.raises(X2IError, match="was made for a FLUX of another width"):
        pipe.load_flux_lora(path)


def test_the_command_line_takes_flux_loras_on_x2i_and_on_the_teacher(tmp_path, capsys, monkeypatch):
    import numpy as np
    from PIL import Image

    path, _ = lora_file(tmp_path, "xlabs")
    plain, styled = tmp_path / "plain.png", tmp_path / "styled.png"
    base = ["generate", "--prompt", "a red circle on the left", "--steps", "2"]
    assert main([*base, "--out", str(plain)]) == 0
    assert main([*base, "--flux-lora", str(path), "--flux-lora-scale", "40", "--out", str(styled)]) == 0
    assert np.abs(np.asarray(Image.open(plain), dtype=int) - np.asarray(Image.open(styled), dtype=int)).mean() > 1
    assert main([*base, "--flux-lora", str(path), "--flux-lora-scale", "1", "--flux-lora-scale", "2", "--out", str(styled)]) == 2
    assert "2 --flux-lora-scale for 1 --flux-lora" in capsys.readouterr().err

    import x2i.inference.lora
    import x2i.inference.pipeline

    loaded = []
    for module in (x2i.inference.lora, x2i.inference.pipeline):
        real = module.load_flux_loras
        monkeypatch.setattr(module, "load_flux_loras", lambda flux, loras, real=real: loaded.append(list(loras)) or real(flux, loras))
    cases = tmp_path / "cases.jsonl"
    assert main(["mini", "make-cases", "--out", str(cases), "--n", "1", "--tasks", "text2image", "--langs", "en"]) == 0
    assert main(["eval", str(cases), "--steps", "1", "--flux-lora", str(path)]) == 0
    assert loaded == [[(str(path), 1.0)], [(str(path), 1.0)]]  # the teacher's FLUX, then the student's


def test_a_schnell_shaped_flux_runs_with_an_official_shaped_alignnet_and_a_community_lora(tiny_models, tmp_path):
    """FLUX.1-schnell's shape (no guidance embedding, a fixed timestep shift), read through an
    AlignNet padded as the official ones (512 tokens), 4 steps; guidance changes nothing there, and a
    community LoRA loads onto it as onto dev."""
    import numpy as np

    from x2i.inference.alignnet import AlignNet
    from x2i.inference.request import Request
    from x2i.tiny_models import build_tiny_flux

    schnell = build_tiny_flux(tmp_path / "schnell", schnell=True)
    AlignNet(num_hidden_states=3, hidden_size=32, joint_attention_dim=32, pooled_projection_dim=16, pad_to=512).save_pretrained(tmp_path / "a")
    pipe = X2IPipeline.from_pretrained(tiny_models["mllm"], schnell, tmp_path / "a")
    assert not pipe.flux.transformer.config.guidance_embeds and pipe.encode([Request("a red circle")]).prompt_embeds.shape[1] == 512

    def draw(**kw):
        return np.asarray(pipe(Request("a red circle"), height=32, width=32, num_inference_steps=4, show_progress=False, **kw)[0], dtype=int)

    assert np.array_equal(draw(guidance_scale=0.0), draw(guidance_scale=3.5))
    before = draw()
    path, _ = lora_file(tmp_path, "xlabs", inner=32)
    pipe.load_flux_lora(path, scale=30.0)
    assert np.abs(draw() - before).mean() > 0
