"""MLLM encoders, one module per family; `x2i.loaders.load_encoder` picks one by the `model_type`
in the model's config.json."""

from __future__ import annotations

from x2i.encoders.base import EncoderOutput, MLLMEncoder
from x2i.encoders.qwen2_5_vl import Qwen2_5_VLEncoder

ENCODERS: dict[str, type[MLLMEncoder]] = {
    Qwen2_5_VLEncoder.family: Qwen2_5_VLEncoder,
}


__all__ = ["ENCODERS", "EncoderOutput", "MLLMEncoder", "Qwen2_5_VLEncoder"]
