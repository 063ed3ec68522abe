"""X2I: let a FLUX DiT understand anything a multimodal LLM understands."""

from x2i.alignnet import PRESETS, AlignNet, AlignNetConfig, AlignNetOutput
from x2i.encoders import EncoderOutput, MLLMEncoder, Qwen2_5_VLEncoder, load_encoder
from x2i.errors import X2IError
from x2i.pipeline import X2IPipeline
from x2i.request import Request, format_prompt

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "AlignNet",
    "AlignNetConfig",
    "AlignNetOutput",
    "EncoderOutput",
    "MLLMEncoder",
    "Qwen2_5_VLEncoder",
    "Request",
    "X2IError",
    "X2IPipeline",
    "format_prompt",
    "load_encoder",
]
