"""AlignNet: all hidden layers of a multimodal LLM -> the conditioning a FLUX DiT expects.

    hidden states [B, C, S, H]   (C = MLLM layers + 1, the embedding output included)
      -> layer fusion            Conv2d(C -> 1, k=5, p=2) over the (token, hidden) plane,
                                 or a learned per-layer scale averaged over layers
      -> LayerNorm(H, eps=1e-6) -> Linear(H -> D) -> GELU -> Linear(D -> D)  = prompt_embeds [B, S, D]
      -> GELU -> Linear(D -> P) -> mean over tokens                          = pooled_prompt_embeds [B, P]

D = 4096 (T5-XXL width) and P = 768 (CLIP pooled width) for FLUX.1. Module names follow the
authors' released checkpoints, so an official state dict loads without renaming.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from x2i.errors import X2IError
from x2i.hub import download, resolve

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class AlignNetConfig:
    num_hidden_states: int  # C: the MLLM's decoder layers + 1
    hidden_size: int  # H: the MLLM's hidden size
    fusion: str = "conv"  # "conv" (Conv2d over layers) or "scale" (learned per-layer scale, mean)
    joint_attention_dim: int = 4096  # D: width of the sequence FLUX reads in place of T5
    pooled_projection_dim: int = 768  # P: width of the vector FLUX reads in place of CLIP
    # "mean" averages over every token, padding included, as the official checkpoints were trained;
    # "masked_mean" averages over real tokens only, so a prompt's vector does not depend on its batch.
    pooling: str = "mean"
    # Prompts were left-padded to this many tokens in training (512 for the official checkpoints);
    # the pipeline pads the same way unless told otherwise. None: pad only to the batch's longest.
    pad_to: int | None = None

    def __post_init__(self):
        if self.fusion not in ("conv", "scale"):
            raise X2IError(f"AlignNet fusion must be 'conv' or 'scale', not {self.fusion!r}")
        if self.pooling not in ("mean", "masked_mean"):
            raise X2IError(f"AlignNet pooling must be 'mean' or 'masked_mean', not {self.pooling!r}")


# The authors' released checkpoints (reference notes, section 2).
PRESETS: dict[str, AlignNetConfig] = {
    "qwen2.5-vl-3b": AlignNetConfig(num_hidden_states=37, hidden_size=2048, pad_to=512),
    "qwen2.5-vl-7b": AlignNetConfig(num_hidden_states=29, hidden_size=3584, pad_to=512),
    "internvl2.5-1b": AlignNetConfig(num_hidden_states=25, hidden_size=896, fusion="scale", pad_to=512),
    "internvl2.5-4b": AlignNetConfig(num_hidden_states=37, hidden_size=2048, pad_to=512),
    "minicpm-o-2.6": AlignNetConfig(num_hidden_states=29, hidden_size=3584, pad_to=512),
}


def preset_config(name: str) -> AlignNetConfig:
    if name not in PRESETS:
        raise X2IError(f"unknown AlignNet preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return AlignNetConfig(**asdict(PRESETS[name]))


@dataclass
class AlignNetOutput:
    prompt_embeds: torch.Tensor  # [B, S, D], replaces T5's sequence
    pooled_prompt_embeds: torch.Tensor  # [B, P], replaces CLIP's pooled vector


class AlignNet(nn.Module):
    def __init__(self, config: AlignNetConfig):
        super().__init__()
        self.config = config
        C, H, D = config.num_hidden_states, config.hidden_size, config.joint_attention_dim
        if config.fusion == "conv":
            self.conv = nn.Conv2d(C, 1, kernel_size=5, padding=2)
        else:
            self.cha_scale = nn.Parameter(torch.ones(1, C, 1, 1))
        self.mlp = nn.Module()
        self.mlp.layernorm = nn.LayerNorm(H, eps=1e-6)
        self.mlp.projector = nn.Sequential(nn.Linear(H, D, bias=False), nn.GELU(), nn.Linear(D, D, bias=False))
        self.mlp.fc = nn.Sequential(nn.GELU(), nn.Linear(D, config.pooled_projection_dim))

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> AlignNetOutput:
        """hidden_states [B, C, S, H]; attention_mask [B, S] (1 = real token), used by masked pooling."""
        if self.config.fusion == "conv":
            fused = self.conv(hidden_states).squeeze(1)
        else:
            fused = (hidden_states * self.cha_scale).mean(dim=1)
        prompt_embeds = self.mlp.projector(self.mlp.layernorm(fused))
        per_token = self.mlp.fc(prompt_embeds)
        if self.config.pooling == "masked_mean" and attention_mask is not None:
            weights = attention_mask.to(per_token.dtype).unsqueeze(-1)
            pooled = (per_token * weights).sum(1) / weights.sum(1).clamp(min=1)
        else:
            pooled = per_token.mean(dim=1)
        return AlignNetOutput(prompt_embeds=prompt_embeds, pooled_prompt_embeds=pooled)

    # ---- our format: config.json + model.safetensors -------------------------------------------

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"_class_name": type(self).__name__, **asdict(self.config)}
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, directory / WEIGHTS_NAME, metadata={"format": "pt"})

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype | None = None) -> AlignNet:
        """Load our format from a local directory or a hub repository id."""
        directory = resolve(path, "AlignNet")
        directory = download(directory, "AlignNet") if isinstance(directory, str) else directory
        config_file, weights_file = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        if not config_file.is_file() or not weights_file.is_file():
            raise X2IError(
                f"{path} is not an AlignNet directory (needs {CONFIG_NAME} and {WEIGHTS_NAME}); "
                "for the authors' .bin checkpoints pass the file itself"
            )
        try:
            raw = json.loads(config_file.read_text())
            if raw.get("_class_name") != "AlignNet":
                raise X2IError(f"{path} is not an AlignNet directory: its {CONFIG_NAME} describes another model")
            config = AlignNetConfig(**{f.name: raw[f.name] for f in fields(AlignNetConfig) if f.name in raw})
            state = load_file(weights_file)
        except (ValueError, TypeError, OSError, SafetensorError) as e:  # bad JSON, bad weights, I/O
            raise X2IError(f"cannot read AlignNet at {directory}: {e}") from e
        model = cls(config)
        _load_checked(model, state, str(directory))
        return model.to(dtype) if dtype is not None else model

    # ---- the authors' released checkpoints ---------------------------------------------------------

    @classmethod
    def from_official(
        cls, checkpoint: str | Path | dict[str, torch.Tensor], preset: str | None = None
    ) -> AlignNet:
        """Load a released `diffusion_pytorch_model.bin` (or its state dict).

        `preset` names the MLLM it was trained for; when left out it is inferred from the shapes.
        Weights keep their values exactly; the module stays float32 unless you cast it.
        """
        config = preset_config(preset) if preset is not None else None
        state = checkpoint if isinstance(checkpoint, dict) else _read_state_dict(Path(checkpoint))
        state = {k.removeprefix("module."): v for k, v in state.items()}
        fitting = presets_fitting(state)
        if preset is None:
            if not fitting:
                raise X2IError(f"{_describe(checkpoint)} fits no AlignNet preset ({_shape_summary(state)})")
            preset = fitting[0]
            config = preset_config(preset)
        if preset not in fitting:
            also = f"; it fits preset {', '.join(fitting)}" if fitting else "; it fits no known preset"
            raise X2IError(
                f"{_describe(checkpoint)} does not fit preset {preset!r}: found {_shape_summary(state)}{also}"
            )
        model = cls(config)
        _load_checked(model, state, _describe(checkpoint))
        return model


def presets_fitting(state: dict[str, torch.Tensor]) -> list[str]:
    """The presets whose every parameter shape matches this (prefix-stripped) state dict."""
    found = {k: tuple(v.shape) for k, v in state.items()}
    return [name for name, config in PRESETS.items() if _expected_shapes(config) == found]


def _expected_shapes(config: AlignNetConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in AlignNet(config).state_dict().items()}


def _shape_summary(state: dict[str, torch.Tensor]) -> str:
    keys = ("conv.weight", "cha_scale", "mlp.layernorm.weight", "mlp.projector.0.weight", "mlp.fc.1.weight")
    shown = [f"{k} {list(state[k].shape)}" for k in keys if k in state]
    return ", ".join(shown) or f"{len(state)} tensors with none of AlignNet's keys"


def _load_checked(model: AlignNet, state: dict[str, torch.Tensor], where: str) -> None:
    expected = _expected_shapes(model.config)
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

