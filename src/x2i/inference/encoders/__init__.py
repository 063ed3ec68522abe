"""MLLM encoders, one module per family; `x2i.inference.loaders.load_encoder` picks one by the `model_type`
in the model's config.json. The protocol they share is in `base.py` and docs/architecture.md."""

from __future__ import annotations

from x2i.inference.encoders.base import EncoderOutput, MLLMEncoder
from x2i.inference.encoders.internvl import InternVLEncoder
from x2i.inference.encoders.qwen2_5_omni import Qwen2_5OmniEncoder
from x2i.inference.encoders.qwen2_5_vl import Qwen2_5_VLEncoder

ENCODERS: dict[str, type[MLLMEncoder]] = {
    Qwen2_5_VLEncoder.family: Qwen2_5_VLEncoder,
    InternVLEncoder.family: InternVLEncoder,
    Qwen2_5OmniEncoder.family: Qwen2_5OmniEncoder,
    "qwen2_5_omni": Qwen2_5OmniEncoder,  # the whole Omni checkpoint: its thinker loads alone
}


__all__ = ["ENCODERS", "EncoderOutput", "InternVLEncoder", "MLLMEncoder", "Qwen2_5OmniEncoder", "Qwen2_5_VLEncoder"]
