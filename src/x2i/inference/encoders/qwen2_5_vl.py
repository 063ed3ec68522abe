"""Qwen2.5-VL as X2I's reader: text, images and video -> all hidden layers, in one forward pass."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from transformers import (
    AutoImageProcessor,
    AutoTokenizer,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
)
from transformers.video_utils import VideoMetadata

from x2i.errors import X2IError
from x2i.inference.encoders.base import ChatTemplateEncoder
from x2i.inference.encoders.video_processor import (
    QwenVideoProcessor,
    TorchvisionFreeVideo,
)
from x2i.media import Video


class QwenVideoInputs:
    """Video for the Qwen family: frames sampled by `x2i.media.Video` at the encoder's fps, made into
    the model's video input by `QwenVideoProcessor` (no torchvision needed)."""

    def media_inputs(self, requests) -> dict:
        inputs = super().media_inputs(requests)
        clips = [m.frames(self.video_fps, self.max_video_frames) for r in requests for m in r.all_media() if isinstance(m, Video)]
        if clips:
            inputs["videos"] = clips
            # The frames' place in time: M-RoPE gives each temporal patch its seconds.
            inputs["video_metadata"] = [VideoMetadata(total_num_frames=len(c), fps=self.video_fps) for c in clips]
            inputs["fps"] = self.video_fps
        return inputs


class _Processor(TorchvisionFreeVideo, Qwen2_5_VLProcessor):
    """Qwen2.5-VL's processor with x2i's torchvision-free video processor in its video slot."""


def load_qwen_parts(path: str | Path):
    """Tokenizer, image processor and video processor of a Qwen-family checkpoint."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.chat_template is None:
        raise X2IError(f"{path} has no chat template; X2I prompts need the model's chat template")
    image_processor = AutoImageProcessor.from_pretrained(path, backend="pil")
    return tokenizer, image_processor, QwenVideoProcessor.from_pretrained(path, image_processor)


class Qwen2_5_VLEncoder(QwenVideoInputs, ChatTemplateEncoder):
    family = "qwen2_5_vl"
    name = "Qwen2.5-VL"
    model_class = Qwen2_5_VLForConditionalGeneration
    takes = (Image.Image, Video)

    @classmethod
    def load_processor(cls, path: str | Path) -> Qwen2_5_VLProcessor:
        tokenizer, image_processor, video_processor = load_qwen_parts(path)
        return _Processor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                          chat_template=tokenizer.chat_template)
