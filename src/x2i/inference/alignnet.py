"""AlignNet: all hidden layers of a multimodal LLM -> the conditioning a FLUX DiT expects.

    hidden states [B, C, S, H]   (C = MLLM layers + 1, the embedding output included)
      -> layer fusion            Conv2d(C -> 1, k=5, p=2) over the (token, hidden) plane,
                                 or a learned per-layer scale averaged over layers
      -> LayerNorm(H, eps=1e-6) -> Linear(H -> D) -> GELU -> Linear(D -> D)  = prompt_embeds [B, S, D]
      -> GELU -> Linear(D -> P) -> mean over tokens                          = pooled_prompt_embeds [B, P]

D = 4096 (T5-XXL width) and P = 768 (CLIP pooled width) for FLUX.1. Module names follow the
authors' released checkpoints, so an official state dict loads without renaming. AlignNet is a
diffusers `ModelMixin` + `ConfigMixin`: `save_pretrained`, `from_pretrained` (local or hub), `dtype`,
`device` behave as for any diffusers model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME
from huggingface_hub import ModelCard
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from x2i.errors import X2IError
from x2i.inference.locations import locate, unreachable
from x2i.inference.request import REQUEST_KINDS, ROADS

# The authors' released checkpoints (reference notes, section 2), and the MLLM family each reads.
PRESETS: dict[str, dict] = {
    "qwen2.5-vl-3b": dict(num_hidden_states=37, hidden_size=2048, pad_to=512),
    "qwen2.5-vl-7b": dict(num_hidden_states=29, hidden_size=3584, pad_to=512),
    "internvl2.5-1b": dict(num_hidden_states=25, hidden_size=896, fusion="scale", pad_to=512),
    "internvl2.5-4b": dict(num_hidden_states=37, hidden_size=2048, pad_to=512),
    "minicpm-o-2.6": dict(num_hidden_states=29, hidden_size=3584, pad_to=512),
}
STREAMS = ("all", "request")  # which of AlignNet's tokens FLUX reads (see AlignNet)
PRESET_FAMILIES = {"qwen2.5-vl-3b": "qwen2_5_vl", "qwen2.5-vl-7b": "qwen2_5_vl", "internvl2.5-1b": "internvl",
                   "internvl2.5-4b": "internvl", "minicpm-o-2.6": "minicpmo"}


def preset_config(name: str) -> dict:
    if name not in PRESETS:
        raise X2IError(f"unknown AlignNet preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return dict(PRESETS[name])


@dataclass
class AlignNetOutput:
    prompt_embeds: torch.Tensor  # [B, S, D], replaces T5's sequence
    pooled_prompt_embeds: torch.Tensor  # [B, P], replaces CLIP's pooled vector


class AlignNet(ModelMixin, ConfigMixin):
    """Arguments (saved in config.json):

    num_hidden_states  C: the MLLM's decoder layers + 1
    hidden_size        H: the MLLM's hidden size
    fusion             "conv" (Conv2d over layers) or "scale" (learned per-layer scale, mean)
    joint_attention_dim, pooled_projection_dim
                       D and P: the widths FLUX reads in place of T5 and CLIP
    pooling            "mean" averages every token, padding included, as the official checkpoints
                       were trained; "masked_mean" real tokens only, so a prompt's vector does not
                       depend on its batch
    pad_to             prompts were left-padded to this many tokens in training (512 for the
                       official checkpoints); the pipeline pads the same way. None: to the longest
    refiner_layers     x2i's option, off in the release: bidirectional transformer layers over the
                       fused tokens (before the MLP), so that a word's state can take in what comes
                       after it, which a causal MLLM cannot
    roads              what X2IPipeline's condition_on="auto" reads for each kind of request
                       ({"english": ..., "other_language": ..., "media": ...}, each "prompt",
                       "answer" or "prompt+answer"), chosen by measuring this AlignNet with its MLLM;
                       None (the official checkpoints): the prompt road, as the paper measured
    stream             which of its tokens FLUX reads: "all" (every one, the chat template and
                       padding included, as the official checkpoints were trained) or "request"
                       (x2i's option: only the request's own tokens — its text, media and answers —
                       so FLUX's text stream is as long as the request, not the template)
    closing_tokens     with stream "request": FLUX also reads the prompt's last N tokens (the chat
                       template's closing ones, where a causal MLLM has read the whole prompt)
    registers          with stream "request": N learned tokens FLUX reads before the request's,
                       in place of the T5 padding that FLUX attends to in its teacher's stream
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        num_hidden_states: int,
        hidden_size: int,
        fusion: str = "conv",
        joint_attention_dim: int = 4096,
        pooled_projection_dim: int = 768,
        pooling: str = "mean",
        pad_to: int | None = None,
        refiner_layers: int = 0,
        refiner_heads: int = 4,
        roads: dict | None = None,
        stream: str = "all",
        closing_tokens: int = 0,
        registers: int = 0,
    ):
        super().__init__()
        if stream not in STREAMS:
            raise X2IError(f"AlignNet stream must be 'all' or 'request', not {stream!r}")
        if (closing_tokens or registers) and stream != "request" or min(closing_tokens, registers) < 0:
            raise X2IError("AlignNet closing_tokens and registers (at least 0) go with stream 'request' only")
        if roads and not (set(roads) <= set(REQUEST_KINDS) and set(roads.values()) <= set(ROADS)):
            raise X2IError(f"AlignNet roads must map {', '.join(REQUEST_KINDS)} to prompt, answer or prompt+answer, not {roads!r}")
        if fusion not in ("conv", "scale"):
            raise X2IError(f"AlignNet fusion must be 'conv' or 'scale', not {fusion!r}")
        if pooling not in ("mean", "masked_mean"):
            raise X2IError(f"AlignNet pooling must be 'mean' or 'masked_mean', not {pooling!r}")
        C, H, D = num_hidden_states, hidden_size, joint_attention_dim
        if fusion == "conv":
            self.conv = nn.Conv2d(C, 1, kernel_size=5, padding=2)
        else:
            self.cha_scale = nn.Parameter(torch.ones(1, C, 1, 1))
        if refiner_layers:
            layer = nn.TransformerEncoderLayer(H, refiner_heads, 2 * H, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
            self.refiner = nn.TransformerEncoder(layer, refiner_layers, enable_nested_tensor=False)
        self.mlp = nn.Module()
        self.mlp.layernorm = nn.LayerNorm(H, eps=1e-6)
        self.mlp.projector = nn.Sequential(nn.Linear(H, D, bias=False), nn.GELU(), nn.Linear(D, D, bias=False))
        self.mlp.fc = nn.Sequential(nn.GELU(), nn.Linear(D, pooled_projection_dim))
        if registers:
            self.register_tokens = nn.Parameter(torch.randn(registers, D) * 0.02)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> AlignNetOutput:
        """hidden_states [B, C, S, H]; attention_mask [B, S] (1 = real token), used by masked pooling
        and the refiner."""
        if self.config.fusion == "conv":
            fused = self.conv(hidden_states).squeeze(1)
        else:
            fused = (hidden_states * self.cha_scale).mean(dim=1)
        if self.config.refiner_layers:
            padding = None if attention_mask is None else attention_mask == 0
            fused = self.refiner(fused, src_key_padding_mask=padding)
        prompt_embeds = self.mlp.projector(self.mlp.layernorm(fused))
        per_token = self.mlp.fc(prompt_embeds)
        if self.config.pooling == "masked_mean" and attention_mask is not None:
            weights = attention_mask.to(per_token.dtype).unsqueeze(-1)
            pooled = (per_token * weights).sum(1) / weights.sum(1).clamp(min=1)
        else:
            pooled = per_token.mean(dim=1)
        return AlignNetOutput(prompt_embeds=prompt_embeds, pooled_prompt_embeds=pooled)

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype | None = None, **kwargs) -> AlignNet:
        """Our format (diffusers': config.json + diffusion_pytorch_model.safetensors) from a local
        directory or a hub repository id; errors say what is wrong in one line."""
        location = locate(path, "alignnet")
        if isinstance(location, Path):
            config_file = location / cls.config_name
            if not config_file.is_file() or not (location / SAFETENSORS_WEIGHTS_NAME).is_file():
                raise X2IError(
                    f"{path} is not an AlignNet directory (needs {cls.config_name} and {SAFETENSORS_WEIGHTS_NAME}); "
                    "for the authors' .bin checkpoints pass the file itself"
                )
            try:
                class_name = json.loads(config_file.read_text()).get("_class_name")
            except ValueError as e:
                raise X2IError(f"cannot read AlignNet at {path}: {config_file} is not valid JSON ({e})") from e
            if class_name != cls.__name__:
                raise X2IError(f"{path} is not an AlignNet directory: its {cls.config_name} describes a {class_name}")
        try:
            model = super().from_pretrained(location, torch_dtype=dtype, **kwargs)
        except (OSError, ValueError, RuntimeError, TypeError, SafetensorError) as e:  # bad weights, shapes, I/O, hub
            if isinstance(location, str):
                raise unreachable("alignnet", location, e) from e
            raise X2IError(f"cannot read AlignNet at {path}: {str(e).strip().splitlines()[0]}") from e
        if isinstance(location, Path) and (location / "README.md").is_file():
            model.card = ModelCard.load(location / "README.md")
        return model

    # ---- its model card: how it was made, carried wherever the weights go ----------------------

    card: ModelCard | None = None  # set by `x2i distill` (x2i.inference.model_card), read back by from_pretrained

    def save_pretrained(self, save_directory: str | Path, **kwargs) -> None:
        """diffusers' save_pretrained, and the AlignNet's card as README.md when it has one."""
        super().save_pretrained(save_directory, **kwargs)
        if self.card is not None:
            self.card.save(Path(save_directory) / "README.md")

    def push_to_hub(self, repo_id: str, commit_message: str = "Upload AlignNet", private: bool | None = None, token: str | None = None,
                    create_pr: bool = False, **kwargs):
        """Upload the weights, config and this AlignNet's own card (diffusers' push_to_hub would
        write a generic card in its place)."""
        import tempfile

        from huggingface_hub import create_repo, upload_folder

        repo_id = create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder)
            return upload_folder(repo_id=repo_id, folder_path=folder, token=token, commit_message=commit_message, create_pr=create_pr)

    # ---- the authors' released checkpoints -----------------------------------------------------

    @classmethod
    def from_official(
        cls, checkpoint: str | Path | dict[str, torch.Tensor], preset: str | None = None, family: str | None = None
    ) -> AlignNet:
        """Load a released `diffusion_pytorch_model.bin` (or its state dict).

        `preset` names the MLLM it was trained for. When left out it is inferred from the shapes,
        and where presets share shapes (qwen2.5-vl-3b and internvl2.5-4b; qwen2.5-vl-7b and
        minicpm-o-2.6) from `family`, the reading MLLM's `model_type`; otherwise you are asked.
        Weights keep their values exactly; the module stays float32 unless you cast it.
        """
        if preset is not None:
            preset_config(preset)  # an unknown name is the first thing to say
        state = checkpoint if isinstance(checkpoint, dict) else _read_state_dict(Path(checkpoint))
        state = {k.removeprefix("module."): v for k, v in state.items()}
        fitting = presets_fitting(state)
        if preset is None:
            if not fitting:
                raise X2IError(f"{_describe(checkpoint)} fits no AlignNet preset ({_shape_summary(state)})")
            of_family = [p for p in fitting if PRESET_FAMILIES[p] == family]
            if len(fitting) > 1 and len(of_family) != 1:
                raise X2IError(f"{_describe(checkpoint)} fits presets {', '.join(fitting)}: say which MLLM it was made for "
                               "(preset=..., or --alignnet-preset)")
            preset = of_family[0] if of_family else fitting[0]
        if preset not in fitting:
            also = f"; it fits preset {', '.join(fitting)}" if fitting else "; it fits no known preset"
            raise X2IError(
                f"{_describe(checkpoint)} does not fit preset {preset!r}: found {_shape_summary(state)}{also}"
            )
        model = cls(**preset_config(preset))
        _load_checked(model, state, _describe(checkpoint))
        return model


def presets_fitting(state: dict[str, torch.Tensor]) -> list[str]:
    """The presets whose every parameter shape matches this (prefix-stripped) state dict."""
    found = {k: tuple(v.shape) for k, v in state.items()}
    return [name for name, config in PRESETS.items() if _expected_shapes(config) == found]


def _expected_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in AlignNet(**config).state_dict().items()}


def _shape_summary(state: dict[str, torch.Tensor]) -> str:
    keys = ("conv.weight", "cha_scale", "mlp.layernorm.weight", "mlp.projector.0.weight", "mlp.fc.1.weight")
    shown = [f"{k} {list(state[k].shape)}" for k in keys if k in state]
    return ", ".join(shown) or f"{len(state)} tensors with none of AlignNet's keys"


def _load_checked(model: AlignNet, state: dict[str, torch.Tensor], where: str) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))
        wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        extra = sorted(set(found) - set(expected))
        detail = "; ".join(
            part
            for part in (
                f"missing {missing[:3]}" if missing else "",
                f"unexpected {extra[:3]}" if extra else "",
                ", ".join(f"{k} is {list(found[k])} not {list(expected[k])}" for k in wrong[:3]),
            )
            if part
        )
        raise X2IError(f"AlignNet weights in {where} do not fit its config: {detail}")
    model.load_state_dict(state, strict=True)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise X2IError(f"AlignNet checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        # weights_only: a checkpoint is data, never code to unpickle.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types for a corrupt or hostile file
        raise X2IError(
            f"cannot read AlignNet checkpoint {path}: it is corrupt or holds more than tensors "
            f"({type(e).__name__}); x2i loads only plain tensor state dicts"
        ) from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise X2IError(f"{path} is not a state dict of tensors")
    return state


def _describe(checkpoint) -> str:
    return "the given state dict" if isinstance(checkpoint, dict) else str(checkpoint)

