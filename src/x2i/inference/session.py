"""Conversations: each turn reads the earlier ones, and edits the last picture made.

As in the release's multi-turn demo, the MLLM reads the chat history (each earlier user turn with
its inputs, and the model's answer to it) before the new turn. From the second turn on, the last
picture made is the new turn's first input image, so "now make it blue" is an edit of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from PIL import Image

from x2i.inference.request import Request
from x2i.media import Audio, Video


@dataclass
class Turn:
    request: Request  # what the MLLM read in this turn (its history aside)
    answer: str  # the MLLM's answer to it (empty when answers are off)
    images: list[Image.Image]  # the pictures made


class Session:
    """A conversation with an `X2IPipeline`.

    `answer_tokens`: the MLLM answers each turn (greedy, at most this many tokens; the release kept
    64) and later turns read the answer; 0 keeps no answers. A turn whose road already made an
    answer (`condition_on` "answer" or "prompt+answer", or "auto" choosing one) keeps that answer
    instead of writing another. `keep_history=False` makes every turn read only its own inputs and
    the last picture. `condition_on` and other keyword arguments (seed, height, width,
    num_inference_steps, ...) go to every pipeline call.
    """

    def __init__(self, pipe, answer_tokens: int = 64, keep_history: bool = True, condition_on: str | None = None, **generation):
        self.pipe = pipe
        self.answer_tokens = answer_tokens
        self.condition_on = condition_on
        self.keep_history = keep_history
        self.generation = generation
        self.history: list[Turn] = []

    def reset(self) -> None:
        self.history = []

    @property
    def last_image(self) -> Image.Image | None:
        return self.history[-1].images[0] if self.history else None

    def request(self, text: str = "", media: Sequence[Image.Image | Audio | Video] = ()) -> Request:
        """The request the next turn makes: the last picture first, then the new inputs; with the
        earlier turns as its history."""
        inputs = ([self.last_image] if self.last_image is not None else []) + list(media)
        history = [(turn.request, turn.answer) for turn in self.history] if self.keep_history else []
        return Request(text, inputs, history=history)

    def send(self, text: str = "", media: Sequence[Image.Image | Audio | Video] = (), **generation) -> list[Image.Image]:
        """One turn: the pictures it makes. `media`: the turn's inputs (images, and sound and video
        clips for readers that take them); keyword arguments override the session's for this turn."""
        request = self.request(text, media)
        reading = self.pipe.plan([request], self.condition_on)[0]
        # A LightControl branch keeps an input picture; a first turn of text alone has none to keep.
        unkept = {"lightcontrol_scale": 0.0} if self.pipe.lightcontrol is not None and not request.images else {}
        made = self.pipe(request, readings=[reading], **{**self.generation, **generation, **unkept})
        answer = reading.answer
        if answer is None:  # the prompt road wrote no answer
            answer = self.pipe.answer([request], self.answer_tokens)[0] if self.answer_tokens else ""
        self.history.append(Turn(Request(request.text, request.media), answer if self.answer_tokens else "", made))
        return made
