"""X2I: let a FLUX DiT understand anything a multimodal LLM understands.

Names are imported on first use, so `x2i --help` and `from x2i.errors import X2IError` stay fast
and do not pull in torch, transformers and diffusers.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "AlignNet": "x2i.alignnet",
    "AlignNetOutput": "x2i.alignnet",
    "Audio": "x2i.media",
    "Video": "x2i.media",
    "InternVLEncoder": "x2i.encoders",
    "Qwen2_5OmniEncoder": "x2i.encoders",
    "PRESETS": "x2i.alignnet",
    "EncoderOutput": "x2i.encoders",
    "LightControl": "x2i.lightcontrol",
    "MLLMEncoder": "x2i.encoders",
    "Qwen2_5_VLEncoder": "x2i.encoders",
    "load_encoder": "x2i.loaders",
    "X2IError": "x2i.errors",
    "X2IPipeline": "x2i.pipeline",
    "Request": "x2i.request",
    "Session": "x2i.session",
    "format_prompt": "x2i.request",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'x2i' has no attribute {name!r}")
