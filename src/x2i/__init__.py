"""X2I: let a FLUX DiT understand anything a multimodal LLM understands.

Names are imported on first use, so `x2i --help` and `from x2i.errors import X2IError` stay fast
and do not pull in torch, transformers and diffusers.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "AlignNet": "x2i.inference.alignnet",
    "AlignNetOutput": "x2i.inference.alignnet",
    "Audio": "x2i.media",
    "Video": "x2i.media",
    "InternVLEncoder": "x2i.inference.encoders",
    "Qwen2_5OmniEncoder": "x2i.inference.encoders",
    "PRESETS": "x2i.inference.alignnet",
    "EncoderOutput": "x2i.inference.encoders",
    "LightControl": "x2i.inference.lightcontrol",
    "MLLMEncoder": "x2i.inference.encoders",
    "Qwen2_5_VLEncoder": "x2i.inference.encoders",
    "load_encoder": "x2i.inference.loaders",
    "X2IError": "x2i.errors",
    "X2IPipeline": "x2i.inference.pipeline",
    "Request": "x2i.inference.request",
    "Session": "x2i.inference.session",
    "format_prompt": "x2i.inference.request",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'x2i' has no attribute {name!r}")
