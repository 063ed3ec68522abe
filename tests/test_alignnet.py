import pickle

import pytest
import torch
import torch.nn.functional as F

from x2i.errors import X2IError
from x2i.inference.alignnet import PRESETS, AlignNet, presets_fitting

# Parameter counts of the released checkpoints (reference notes, section 2), in millions.
RELEASED_PARAMS_M = {
    "qwen2.5-vl-3b": 28.3,
    "qwen2.5-vl-7b": 34.6,
    "internvl2.5-4b": 28.3,
    "internvl2.5-1b": 23.6,
    "minicpm-o-2.6": 34.6,
}


def reference_alignnet(state, hidden_states):
    """The method's formula with plain functional ops, independent of the AlignNet module."""
    s = {k: v.float() for k, v in state.items()}
    x = hidden_states.float()
    if "conv.weight" in s:
        x = F.conv2d(x, s["conv.weight"], s["conv.bias"], padding=2)[:, 0]
    else:
        x = (x * s["cha_scale"]).mean(1)
    x = F.layer_norm(x, x.shape[-1:], s["mlp.layernorm.weight"], s["mlp.layernorm.bias"], eps=1e-6)
    seq = F.linear(F.gelu(F.linear(x, s["mlp.projector.0.weight"])), s["mlp.projector.2.weight"])
    pooled = F.linear(F.gelu(seq), s["mlp.fc.1.weight"], s["mlp.fc.1.bias"]).mean(1)
    return seq, pooled


def official_state_dict(preset, seed=0, prefix="module."):
    """A state dict laid out like the authors' release: bf16, DDP's `module.` prefix."""
    g = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in AlignNet(**PRESETS[preset]).state_dict().items()}
    return {prefix + k: (torch.randn(shape, generator=g) * 0.02).to(torch.bfloat16) for k, shape in shapes.items()}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_sizes_match_the_release(preset):
    with torch.device("meta"):
        model = AlignNet(**PRESETS[preset])
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(n - RELEASED_PARAMS_M[preset]) < 0.05


def test_custom_size_output_shapes():
    out = AlignNet(num_hidden_states=5, hidden_size=24, joint_attention_dim=40, pooled_projection_dim=12)(torch.randn(3, 5, 9, 24))
    assert out.prompt_embeds.shape == (3, 9, 40)
    assert out.pooled_prompt_embeds.shape == (3, 12)


@pytest.mark.parametrize("preset", ["qwen2.5-vl-7b", "internvl2.5-1b"])
def test_from_official_matches_the_formula(tmp_path, preset):
    state = official_state_dict(preset)
    path = tmp_path / "diffusion_pytorch_model.bin"
    torch.save(state, path)

    model = AlignNet.from_official(path, preset=preset)
    config = PRESETS[preset]
    hidden = torch.randn(2, config["num_hidden_states"], 7, config["hidden_size"])
    out = model(hidden)
    seq, pooled = reference_alignnet({k.removeprefix("module."): v for k, v in state.items()}, hidden)
    torch.testing.assert_close(out.prompt_embeds, seq, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.pooled_prompt_embeds, pooled, rtol=1e-5, atol=1e-5)
    # bf16 values are kept exactly (float32 holds every bf16 number)
    loaded = model.state_dict()["mlp.projector.0.weight"]
    assert torch.equal(loaded.to(torch.bfloat16), state["module.mlp.projector.0.weight"])


def test_from_official_infers_the_preset_and_accepts_unprefixed_keys():
    state = official_state_dict("internvl2.5-1b", prefix="")
    model = AlignNet.from_official(state)
    assert model.config.fusion == "scale" and model.config.num_hidden_states == 25


def test_checkpoint_that_does_not_fit_names_shapes_and_the_fitting_preset():
    state = official_state_dict("qwen2.5-vl-7b")
    with pytest.raises(X2IError) as err:
        AlignNet.from_official(state, preset="qwen2.5-vl-3b")
    message = str(err.value)
    assert "[1, 29, 5, 5]" in message and "[3584]" in message
    assert "qwen2.5-vl-7b" in message and "minicpm-o-2.6" in message
    assert "\n" not in message


def test_checkpoint_fitting_no_preset():
    state = official_state_dict("qwen2.5-vl-7b")
    state["module.mlp.layernorm.weight"] = torch.zeros(100)
    with pytest.raises(X2IError, match="fits no"):
        AlignNet.from_official(state)


def test_unknown_preset():
    with pytest.raises(X2IError, match="unknown AlignNet preset 'qwen9'"):
        AlignNet.from_official(official_state_dict("qwen2.5-vl-7b"), preset="qwen9")


class _Payload:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_pickled_code_is_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps({"conv.weight": _Payload()}))
    with pytest.raises(X2IError, match="cannot read AlignNet checkpoint"):
        AlignNet.from_official(path)
    assert not (tmp_path / "PWNED").exists()


def test_corrupt_and_missing_checkpoints(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(X2IError, match="cannot read"):
        AlignNet.from_official(bad)
    with pytest.raises(X2IError, match="does not exist"):
        AlignNet.from_official(tmp_path / "missing.bin")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("refiner_layers", [0, 1])
def test_save_and_load_round_trip_exactly(tmp_path, dtype, refiner_layers):
    config = dict(num_hidden_states=4, hidden_size=16, joint_attention_dim=32, pooled_projection_dim=8, pooling="masked_mean",
                  refiner_layers=refiner_layers)
    model = AlignNet(**config).to(dtype)
    model.save_pretrained(tmp_path / "a")
    again = AlignNet.from_pretrained(tmp_path / "a", dtype=dtype)
    assert {k: again.config[k] for k in config} == config and again.dtype == dtype
    for (k, v), (k2, v2) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and v.dtype == v2.dtype and torch.equal(v, v2)
    hidden = torch.randn(2, 4, 6, 16, dtype=dtype)
    assert torch.equal(model(hidden).prompt_embeds, again(hidden).prompt_embeds)


def test_from_pretrained_rejects_what_is_not_an_alignnet(tmp_path):
    with pytest.raises(X2IError, match="is not an AlignNet directory"):
        AlignNet.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{broken")
    (tmp_path / "diffusion_pytorch_model.safetensors").write_bytes(b"junk")
    with pytest.raises(X2IError, match="cannot read AlignNet"):
        AlignNet.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"_class_name": "FluxTransformer2DModel"}')
    with pytest.raises(X2IError, match="describes a FluxTransformer2DModel"):
        AlignNet.from_pretrained(tmp_path)
    AlignNet(num_hidden_states=2, hidden_size=8).save_config(tmp_path)
    with pytest.raises(X2IError, match="cannot read AlignNet"):  # the config is right, the weights are junk
        AlignNet.from_pretrained(tmp_path)


def test_masked_mean_pools_real_tokens_only():
    config = dict(num_hidden_states=2, hidden_size=8, joint_attention_dim=16, pooled_projection_dim=4, pooling="masked_mean")
    model = AlignNet(**config)
    hidden = torch.randn(1, 2, 6, 8)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1]])
    out = model(hidden, attention_mask=mask)
    per_token = model.mlp.fc(out.prompt_embeds)
    torch.testing.assert_close(out.pooled_prompt_embeds, per_token[:, 2:].mean(1))
    # the official "mean" pooling counts the padding too
    official = AlignNet(**{**config, "pooling": "mean"})
    official.load_state_dict(model.state_dict())
    torch.testing.assert_close(official(hidden, attention_mask=mask).pooled_prompt_embeds, per_token.mean(1))


def test_presets_fitting_tells_apart_fusions():
    assert presets_fitting({k[7:]: v for k, v in official_state_dict("qwen2.5-vl-3b").items()}) == [
        "qwen2.5-vl-3b",
        "internvl2.5-4b",
    ]


def test_presets_sharing_shapes_ask_which_unless_the_mllm_says():
    state = official_state_dict("qwen2.5-vl-3b")
    with pytest.raises(X2IError, match="fits presets qwen2.5-vl-3b, internvl2.5-4b: say which MLLM"):
        AlignNet.from_official(state)
    assert AlignNet.from_official(state, family="qwen2_5_vl").config.num_hidden_states == 37
    assert AlignNet.from_official(state, preset="internvl2.5-4b").config.fusion == "conv"


def test_refiner_is_off_in_the_presets_and_reads_both_directions():
    with torch.device("meta"):
        assert not any(k.startswith("refiner") for preset in PRESETS for k in AlignNet(**PRESETS[preset]).state_dict())
    torch.manual_seed(0)
    plain = AlignNet(num_hidden_states=2, hidden_size=8, joint_attention_dim=16, pooled_projection_dim=4)
    refined = AlignNet(num_hidden_states=2, hidden_size=8, joint_attention_dim=16, pooled_projection_dim=4, refiner_layers=1)
    hidden, later = torch.randn(1, 2, 10, 8), torch.randn(1, 2, 10, 8)
    later[:, :, :5] = hidden[:, :, :5]  # the same first 5 tokens, different later ones
    # The conv sees +-2 tokens: token 0 cannot tell the two apart; with the refiner it can.
    assert torch.equal(plain(hidden).prompt_embeds[0, 0], plain(later).prompt_embeds[0, 0])
    assert not torch.allclose(refined(hidden).prompt_embeds[0, 0], refined(later).prompt_embeds[0, 0])
    # Padding is masked out of the refiner's attention ("scale" fusion mixes no tokens by itself).
    scaled = AlignNet(num_hidden_states=2, hidden_size=8, joint_attention_dim=16, pooled_projection_dim=4, fusion="scale", refiner_layers=1)
    mask = torch.tensor([[0, 0] + [1] * 8])
    noisy = hidden.clone()
    noisy[:, :, :2] = 100.0
    torch.testing.assert_close(scaled(hidden, mask).prompt_embeds[0, 2:], scaled(noisy, mask).prompt_embeds[0, 2:])
    assert not torch.allclose(scaled(hidden).prompt_embeds[0, 2:], scaled(noisy).prompt_embeds[0, 2:])  # unmasked, it reaches them
