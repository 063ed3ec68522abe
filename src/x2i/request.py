"""What a user asks for, and the one prompt format the MLLM sees in training and at inference."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from x2i.errors import X2IError


@dataclass
class Request:
    """One generation request: text in any language, images, or both (image + instruction)."""

    text: str = ""
    images: list[Image.Image] = field(default_factory=list)

    def __post_init__(self):
        self.text = (self.text or "").strip()
        if not self.text and not self.images:
            raise X2IError("empty request: give a prompt, one or more images, or both")


def format_prompt(request: Request) -> str:
    """The user turn as AlignNet was trained on it (reference notes, section 3).

    The caption (or, with images, the edit instruction) is wrapped as the string of a small dict.
    Training and inference both call this function, so they cannot drift apart.
    """
    if request.images:
        fields = {
            "Text input": "no",
            "Instruction editing description": request.text or "no",
            "image input": "yes",
        }
    else:
        fields = {"Text input": request.text, "Instruction editing description": "no", "image input": "no"}
    return str(fields)
