"""MLLM encoders, one module per family, picked by the `model_type` in the model's config.json."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from x2i.encoders.base import EncoderOutput, MLLMEncoder
from x2i.encoders.qwen2_5_vl import Qwen2_5_VLEncoder
from x2i.errors import X2IError
from x2i.hub import resolve, unreachable

ENCODERS: dict[str, type[MLLMEncoder]] = {
    Qwen2_5_VLEncoder.family: Qwen2_5_VLEncoder,
}


def load_encoder(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> MLLMEncoder:
    """Load the MLLM at `path` (a local directory or a hub id) with the encoder for its family."""
    model_type = _model_type(path)
    if model_type not in ENCODERS:
        raise X2IError(
            f"{path} is a {model_type!r} model; supported MLLM families: {', '.join(ENCODERS)}"
        )
    return ENCODERS[model_type].from_pretrained(path, device=device, dtype=dtype)


def _model_type(path: str | Path) -> str:
    location = resolve(path, "MLLM")
    if isinstance(location, str):  # a hub id
        from transformers import AutoConfig

        try:
            return AutoConfig.from_pretrained(location).model_type
        except Exception as e:  # offline, unknown repo, gated repo
            raise unreachable("MLLM", location, e) from e
    config_file = location / "config.json"
    if not config_file.is_file():
        raise X2IError(f"{path} is not an MLLM directory: it has no config.json")
    try:
        return json.loads(config_file.read_text())["model_type"]
    except (ValueError, KeyError) as e:
        raise X2IError(f"{config_file} is not a transformers model config ({e})") from e


__all__ = ["ENCODERS", "EncoderOutput", "MLLMEncoder", "Qwen2_5_VLEncoder", "load_encoder"]
