"""The requests the mini MLLM learns from and is measured on, each with the answer it should give.

The world's tasks put through `x2i.Request`, as X2I puts them to any MLLM:

- text2image:       a caption in any of the five languages  -> the scene in canonical English
- image2image:      one image                                -> its scene
- imagetext2image:  an image + an edit instruction (any lang) -> the edited scene
- multiimage2image: two single-object images                 -> the scene holding both
- conversation:     a caption and its answer, then the picture + an edit instruction -> the edited scene
                    (two turns, as `x2i.Session` puts them; real MLLMs are tuned on multi-turn chats)
- question:         an image + a question                    -> a short answer
- page text:        a page + "what does the page say?"        -> its words as written (OCR)
- video2image:      a clip (and "draw the last frame", or nothing) -> the scene of its last frame
- document2image:   a page showing a caption (any lang)     -> the scene
- audio2image:      a caption spoken (any lang)              -> the scene (the mini Qwen2.5-Omni)

and, for the first two stages of the recipe, captioned images and short texts of the world.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from x2i.inference.request import Request
from x2i.media import Audio, Video
from x2i.mini.language import (
    WORDS,
    attribute_spans,
    caption,
    caption_with_spans,
    describe,
    edit,
)
from x2i.mini.media import (
    CLIP_FPS,
    LAST_FRAME,
    clip_frames,
    speak_words,
    spoken_span,
    typeset,
)
from x2i.mini.world import (
    EDIT_OPS,
    LANGUAGES,
    POSITIONS,
    combine,
    random_edit,
    random_object,
    random_scene,
    render,
)

# The instruction-tuning mix: the world's tasks, and questions about an image (an MLLM-only task).
TRAINING_MIX = {"text2image": 3, "image2image": 2, "imagetext2image": 4, "multiimage2image": 1, "conversation": 1, "question": 1}
# Stage 4's: weighted toward what is still wrong after stage 3, reasoning over an image and an
# instruction — most of all (benchmarks/edit_errors.py) edits of two objects that keep one of them as
# it was (`hard edit`: remove, move, resize; an answer names the kept object's size first) and
# questions about one of two objects (`two-object question`) — with clips beside them.
HARD_EDIT_OPS = ("remove", "move", "resize")
EDIT_MIX = {"text2image": 2, "image2image": 1, "imagetext2image": 2, "hard edit": 4, "multiimage2image": 1, "conversation": 2,
            "question": 1, "two-object question": 2, "video2image": 1}
# Watching and reading (the vision tower only): clips and documents, with the image tasks beside them.
WATCH_MIX = {"video2image": 3, "document2image": 4, "image2image": 1, "imagetext2image": 2, "multiimage2image": 1, "conversation": 1}
# Looking again (the vision tower only, for a model that already watches): weighted to edits, whose
# answers still miss most often the size or place of the object the edit leaves alone.
LOOK_MIX = {"imagetext2image": 6, "image2image": 1, "multiimage2image": 1, "video2image": 1, "conversation": 2, "document2image": 1}
# Reading (the vision tower only, the semantic hub on each page word's tokens): pages, with clips and images beside them.
READ_MIX = {"document2image": 6, "video2image": 1, "image2image": 1, "imagetext2image": 1, "multiimage2image": 1}
# Reading with the language model trained too: pages, and their text transcribed (`page text`), beside
# every task the language model must keep.
READ_PAGE = "what does the page say?"
READ_LANGUAGE_MIX = {"document2image": 6, "page text": 3, "video2image": 1, "image2image": 1, "imagetext2image": 2, "hard edit": 2,
                     "multiimage2image": 1, "text2image": 2, "conversation": 1, "question": 1, "two-object question": 1}
# The sound tokens heard as an object's words end (25 a second: 3) stand for a caption's last token for it.
OBJECT_END_SECONDS = 0.12


class Example(NamedTuple):
    """A request put to the MLLM, the answer it should give, the scene that answer describes, and
    what the request shows: (object, ("image", k)) for an object in its k-th image, (object,
    ("text", (start, end))) for an object whose words are those characters of its text, (object,
    ("page", boxes)) for one attribute of an object (the object given by that attribute alone) whose
    word is typeset in those boxes of the request's one image, a page, and for a whole object over
    all of its words' boxes; (attribute, ("sound", (start, end))) likewise for a word said in those
    seconds of the request's one sound, and (object, ("sound", (start, end))) for the last sound
    tokens heard as an object's words end."""

    request: Request
    answer: str
    scene: dict
    shown: list[tuple[dict, tuple]]


QUESTION_KINDS = ("count", "color", "shape", "where", "size")


def question(scene: dict, rng: random.Random, kind: str | None = None) -> tuple[str, str]:
    """An English question about the scene (of `kind`, or one drawn from QUESTION_KINDS) and its short answer."""
    objects = scene["objects"]
    obj = rng.choice(objects)
    name = f"{obj['color']} {obj['shape']}"
    kind = kind or rng.choice(QUESTION_KINDS)
    if kind == "count":
        return "how many objects are there?", ("one", "two")[len(objects) - 1]
    if kind == "color":
        return f"what color is the {obj['shape']} {WORDS['en']['position'][obj['position']][0]}?", obj["color"]
    if kind == "shape":
        return f"what shape is {WORDS['en']['position'][obj['position']][0]}?", obj["shape"]
    if kind == "where":
        return f"where is the {name}?", WORDS["en"]["position"][obj["position"]][0]
    return f"is the {name} small or large?", obj["size"]


def sample_example(rng: random.Random, task: str | None = None) -> tuple[Request, str]:
    """One training request (of `task`, or one drawn by TRAINING_MIX's weights) and the answer to give."""
    example = sample_with_scene(rng, task)
    return example.request, example.answer


def sample_with_scene(rng: random.Random, task: str | None = None, lang: str | None = None, mix: dict = TRAINING_MIX) -> Example:
    """A request (of `task`, or one drawn by `mix`'s weights), its answer, the scene it is about
    (the result, for edits and pairs), and where the request shows each object. Besides the world's
    tasks: `question` (about an image), stage 4's `hard edit` and `two-object question` (EDIT_MIX), and
    stage 6's `page text` (a page -> its words as written)."""
    task = task or rng.choices(list(mix), weights=list(mix.values()))[0]
    lang = lang or rng.choice(LANGUAGES)
    scene = random_scene(rng, 2 if task in ("hard edit", "two-object question") else None)
    in_image = [(obj, ("image", 0)) for obj in scene["objects"]]
    if task == "text2image":
        text, spans = caption_with_spans(scene, lang, rng)
        return Example(Request(text), describe(scene), scene, [(obj, ("text", span)) for obj, span in zip(scene["objects"], spans)])
    if task == "image2image":
        return Example(Request("", [render(scene, rng)]), describe(scene), scene, in_image)
    if task in ("imagetext2image", "hard edit"):
        text, result = edit(scene, random_edit(scene, rng, HARD_EDIT_OPS if task == "hard edit" else EDIT_OPS), lang, rng)
        return Example(Request(text, [render(scene, rng)]), describe(result), result, in_image)
    if task == "conversation":  # turn 1 drew the caption; turn 2 edits that picture
        history = [(Request(caption(scene, lang, rng)), describe(scene))]
        text, result = edit(scene, random_edit(scene, rng), lang, rng)
        return Example(Request(text, [render(scene, rng)], history=history), describe(result), result, in_image)
    if task == "multiimage2image":
        a, b = ({"objects": [random_object(rng, p)]} for p in rng.sample(POSITIONS, 2))
        both = combine([a, b])
        return Example(Request("", [render(a, rng), render(b, rng)]), describe(both), both,
                       [(a["objects"][0], ("image", 0)), (b["objects"][0], ("image", 1))])
    if task == "video2image":
        clip = Video.from_frames(clip_frames(scene, rng), CLIP_FPS)
        return Example(Request(rng.choice((LAST_FRAME, LAST_FRAME, "")), [clip]), describe(scene), scene, [])
    if task == "audio2image":
        text, spans = caption_with_spans(scene, lang, rng)
        samples, rate, words = speak_words(text, lang, rng)
        seconds, said = samples.size / rate, []
        for obj, object_span in zip(scene["objects"], spans):
            said += [({attr: obj[attr]}, ("sound", spoken_span(words, span, seconds)))  # each word when it is said
                     for attr, span in attribute_spans(text, object_span, obj, lang)]
            end = spoken_span(words, object_span, seconds)[1]  # and the whole object as its words end, as a caption's last token for it
            said.append((obj, ("sound", (max(0.0, end - OBJECT_END_SECONDS), end))))
        return Example(Request("", [Audio.from_array(samples, rate)]), describe(scene), scene, said)
    if task in ("document2image", "page text"):
        text, spans = caption_with_spans(scene, lang, rng)
        page, boxes = typeset(text, lang, rng)
        on_page = []
        for obj, span in zip(scene["objects"], spans):
            words = [(attr, [b for b in boxes[start:end] if b]) for attr, (start, end) in attribute_spans(text, span, obj, lang)]
            on_page += [({attr: obj[attr]}, ("page", inked)) for attr, inked in words]  # each word where it is typeset
            # and the whole object over all of its words, as an image shows it: the frozen language
            # model binds words spread over several tokens each only as far as their neighbours
            on_page.append((obj, ("page", [b for _, inked in words for b in inked])))
        if task == "page text":  # OCR as real MLLMs are tuned on it: the page's words as they are written
            return Example(Request(READ_PAGE, [page]), text, scene, on_page)
        return Example(Request("", [page]), describe(scene), scene, on_page)
    q, answer = question(scene, rng)
    return Example(Request(q, [render(scene, rng)]), answer, scene, in_image)


def caption_example(rng: random.Random) -> Example:
    """Stage 2: an image and an English caption of it."""
    scene = random_scene(rng)
    return Example(Request("", [render(scene, rng)]), caption(scene, "en", rng), scene, [(obj, ("image", 0)) for obj in scene["objects"]])


def text_document(rng: random.Random) -> str:
    """Stage 1: a short text of the world: a caption (half the time beside its translation into
    another language), then an edit instruction or a question with its answer, or nothing."""
    scene = random_scene(rng)
    lines = [caption(scene, lang, rng) for lang in rng.sample(LANGUAGES, rng.choice((1, 2)))]
    kind = rng.random()
    if kind < 1 / 3:
        lines.append(edit(scene, random_edit(scene, rng), rng.choice(LANGUAGES), rng)[0])
    elif kind < 2 / 3:
        lines.append(" ".join(question(scene, rng)))
    return "\n".join(lines)
