"""The mini MLLMs' own answers scored: exact match against the answer the world expects
(`x2i mini answers`), before anything is drawn."""

from __future__ import annotations

import random

from x2i.errors import X2IError
from x2i.media import Audio
from x2i.mini.examples import TRAINING_MIX, sample_with_scene
from x2i.mini.world import LANGUAGES


def greedy_answers(encoder, requests: list, batch: int = 32) -> list[str]:
    """The reader's greedy answers (at most 48 new tokens each), `batch` requests at a time."""
    return [a for start in range(0, len(requests), batch) for a in encoder.answer(requests[start : start + batch], 48)]


def answer_accuracy(encoder, n: int = 100, seed: int = 777, batch: int = 32, tasks: tuple[str, ...] | None = None) -> dict[str, float]:
    """Exact-match accuracy of the greedy answers on `n` fresh requests per line: each task (of
    `tasks`, default all) the reader takes, and each language for the tasks with words in any language."""
    rng = random.Random(seed)
    scores = {}
    hears = Audio in encoder.takes
    if "audio2image" in (tasks or ()) and not hears:
        raise X2IError(f"{encoder.name} does not hear: audio2image needs a reader that does (a Qwen2.5-Omni)")
    for task in tasks or (*TRAINING_MIX, "video2image", "document2image", *(("audio2image",) if hears else ())):
        for lang in LANGUAGES if task in ("text2image", "imagetext2image", "conversation", "document2image", "audio2image") else (None,):
            examples = [sample_with_scene(rng, task, lang) for _ in range(n)]
            answers = greedy_answers(encoder, [e.request for e in examples], batch)
            scores[task + (f" {lang}" if lang else "")] = sum(a == e.answer for a, e in zip(answers, examples)) / n
    return scores
