"""What a user asks for, and the one prompt format the MLLM sees in training and at inference."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from x2i.errors import X2IError
from x2i.media import Audio, Video

Media = Image.Image | Audio | Video
REQUEST_KINDS = ("english", "other_language", "media")  # what X2IPipeline's condition_on="auto" tells apart
# What AlignNet can read of a request: its states, the MLLM's answer, or both; "auto" picks by kind.
ROADS = ("prompt", "answer", "prompt+answer")
CONDITION_ON = ("auto", *ROADS)


@dataclass
class Request:
    """One generation request: text in any language, and images, sound clips and video clips
    (`media`, in the order the model reads them, before the text), or any mix of these.

    `history`: the earlier turns of a conversation, each a request and the model's answer to it; the
    MLLM reads them before this one (x2i.Session keeps them)."""

    text: str = ""
    media: list[Media] = field(default_factory=list)
    history: list[tuple[Request, str]] = field(default_factory=list)

    def __post_init__(self):
        self.text = (self.text or "").strip()
        self.media = list(self.media)
        for item in self.media:
            if not isinstance(item, (Image.Image, Audio, Video)):
                raise X2IError(f"a request takes PIL images, x2i.Audio and x2i.Video, not {type(item).__name__}")
        if not self.text and not self.media:
            raise X2IError("empty request: give a prompt, one or more images, sound or video clips, or both")

    @property
    def turns(self) -> list[tuple[Request, str | None]]:
        """The earlier turns and their answers, then this one (no answer yet)."""
        return [*self.history, (self, None)]

    def all_media(self) -> list[Media]:
        """Every input the model reads, earlier turns' first, in reading order."""
        return [item for turn, _ in self.turns for item in turn.media]

    @property
    def images(self) -> list[Image.Image]:
        return [m for m in self.media if isinstance(m, Image.Image)]

    @property
    def audio(self) -> list[Audio]:
        return [m for m in self.media if isinstance(m, Audio)]

    @property
    def videos(self) -> list[Video]:
        return [m for m in self.media if isinstance(m, Video)]


def prompt_fields(request: Request) -> dict[str, str]:
    """The user turn as AlignNet was trained on it (reference notes, section 3): the caption (or,
    with images, the edit instruction) in a small dict. Sound and video count as inputs like images:
    the text then says what to do with them."""
    if request.media:
        return {"Text input": "no", "Instruction editing description": request.text or "no", "image input": "yes"}
    return {"Text input": request.text, "Instruction editing description": "no", "image input": "no"}


def format_prompt(request: Request) -> str:
    """The dict's string, which the MLLM reads. Training and inference both call this function, so
    they cannot drift apart."""
    return str(prompt_fields(request))


def user_text_span(request: Request) -> tuple[int, int] | None:
    """Where the user's own text is in `format_prompt(request)` (start, end), None when it has none:
    the rest of the string is the same for every request."""
    if not request.text:
        return None
    fields = prompt_fields(request)
    key = "Instruction editing description" if request.media else "Text input"
    start = str(fields).index(f"{key!r}: ") + len(repr(key)) + 2  # the key comes before any user text
    return start + 1, start + len(repr(fields[key])) - 1  # inside the quotes


def request_kind(request: Request) -> str:
    """"media" (images, sound, video, or earlier turns), else "english" or "other_language" text."""
    if request.all_media() or request.history:
        return "media"
    import py3langid  # a language identifier whose model ships inside the package

    return "english" if py3langid.classify(request.text)[0] == "en" else "other_language"
