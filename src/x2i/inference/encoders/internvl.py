"""InternVL (2.5 and 3; transformers' `-hf` layout) as X2I's reader: text and images.

The authors' InternVL2.5 AlignNets were trained on the prompt WITHOUT a chat template: the raw
dict string, tokenized by the model's tokenizer (reference notes, section 3). Images go before it
as InternVL places them: one `<image>` line each, which the processor expands to `<img>`, the
context tokens of every tile (dynamic tiling plus a thumbnail) and `</img>`.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import (
    AutoImageProcessor,
    AutoTokenizer,
    InternVLForConditionalGeneration,
    InternVLProcessor,
)

from x2i.inference.encoders.base import MLLMEncoder
from x2i.inference.encoders.video_processor import TorchvisionFreeVideo
from x2i.inference.request import Request, format_prompt


class _Processor(TorchvisionFreeVideo, InternVLProcessor):
    """InternVL's processor without its video processor (which needs torchvision)."""


class InternVLEncoder(MLLMEncoder):
    family = "internvl"
    name = "InternVL"
    model_class = InternVLForConditionalGeneration

    @classmethod
    def load_processor(cls, path: str | Path) -> InternVLProcessor:
        tokenizer = AutoTokenizer.from_pretrained(path)
        image_processor = AutoImageProcessor.from_pretrained(path, backend="pil")
        config_file = Path(path) / "processor_config.json"
        settings = json.loads(config_file.read_text()) if config_file.is_file() else {}
        return _Processor(image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                          image_seq_length=settings.get("image_seq_length", 256))

    def prompt_text(self, request: Request, answer: str | None = None) -> str:
        """Earlier turns (each with its answer, on a line of its own), then this request."""
        parts = []
        for turn, reply in [*request.history, (request, answer)]:
            parts.append("".join(f"{self.processor.image_token}\n" for _ in turn.images) + format_prompt(turn))
            if reply is not None:
                parts.append(reply)
        return "\n".join(parts) if request.history else "".join(parts)
