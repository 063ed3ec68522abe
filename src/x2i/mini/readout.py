"""Reading the scene out of an MLLM's hidden states through its own LM head (the "logit lens").

Large MLLMs hold what they read and see in one English-leaning space: in their middle and late
layers, the states of words in other languages and of image tokens that show an object decode
through the LM head to the English words for it (Wu et al., "The Semantic Hub Hypothesis: Language
Models Share Semantic Representations Across Languages and Modalities", ICLR 2025; Neo et al.,
"Towards Interpreting Visual Information Processing in Vision-Language Models", ICLR 2025). X2I's
transfer from English captions to other languages and to images rests on it: AlignNet learns to
read English caption states, and meets the same states when the input is French or a picture.

    object_tokens(encoder, inputs, examples)   where each object of each request sits in its tokens
    hub_loss(...)                              the training-only objective that gives the mini MLLM
                                               that property (a 4-layer model does not get it alone)
    readout(encoder, n, seed)                  the measurement: how often each layer's states
                                               read out as the object's English color and shape
                                               (images, captions, pages)
"""

from __future__ import annotations

import math
import random

import torch

from x2i.errors import X2IError
from x2i.mini.examples import Example, sample_with_scene
from x2i.mini.world import (
    ATTRIBUTES,
    CENTERS,
    COLORS,
    HALF_EXTENT,
    IMAGE_SIZE,
    LANGUAGES,
    SHAPES,
    VALUES,
)

# An image token covers an object when it overlaps the object's box by at least this share of the
# box (slivers left out; renders shift objects by up to 1.5 px, and a triangle's pixels sit low).
COVER = 0.05


def image_cells(obj: dict, grid: int) -> list[int]:
    """Row-major indices of the grid x grid image tokens (after the 2x2 merge) covering `obj`."""
    cell = IMAGE_SIZE / grid
    (x, y), half = CENTERS[obj["position"]], HALF_EXTENT[obj["size"]]
    cells = []
    for row in range(grid):
        for col in range(grid):
            dx = min(x + half, (col + 1) * cell) - max(x - half, col * cell)
            dy = min(y + half, (row + 1) * cell) - max(y - half, row * cell)
            if dx > 0 and dy > 0 and dx * dy >= COVER * (2 * half) ** 2:
                cells.append(row * grid + col)
    return cells


def page_cells(boxes, size: tuple[int, int], grid: tuple[int, int]) -> list[int]:
    """Row-major indices of the image tokens (a grid of rows x columns after the 2x2 merge) of a
    page of `size` (width, height) that overlap any of `boxes` (x0, y0, x1, y1 in pixels)."""
    (width, height), (rows, cols) = size, grid
    cell_w, cell_h = width / cols, height / rows
    cells = set()
    for x0, y0, x1, y1 in boxes:
        for row in range(rows):
            for col in range(cols):
                if min(x1, (col + 1) * cell_w) > max(x0, col * cell_w) and min(y1, (row + 1) * cell_h) > max(y0, row * cell_h):
                    cells.add(row * cols + col)
    return sorted(cells)


def sound_tokens(input_ids: torch.Tensor, audio_token: int, seconds: tuple[float, float], duration: float) -> list[int]:
    """Positions of the sound tokens (evenly spread over a sound of `duration` seconds) heard from
    `seconds[0]` to `seconds[1]`."""
    positions = (input_ids == audio_token).nonzero().flatten().tolist()
    per_second = len(positions) / duration
    first = min(int(seconds[0] * per_second), len(positions) - 1)
    return positions[first : max(first + 1, math.ceil(seconds[1] * per_second))]


def object_tokens(encoder, inputs, examples: list[Example], answered: bool) -> list[tuple[int, list[int], dict]]:
    """(row, token positions, object) for every object the requests show: an image's covering
    tokens; a page's tokens over an attribute's word; a sound's tokens while an attribute's word is
    said; the last token of a caption's words for the object (the causal model's token there has
    read them all). `answered`: the inputs hold the examples' answers after the prompts."""
    image_token = encoder.model.config.image_token_id
    merge = encoder.model.config.vision_config.spatial_merge_size
    grids = inputs.get("image_grid_thw")
    found, image_index = [], 0
    for row, example in enumerate(examples):
        positions = (inputs["input_ids"][row] == image_token).nonzero().flatten().tolist()
        row_grids = grids[image_index : image_index + len(example.request.images)].tolist() if grids is not None else []
        image_index += len(row_grids)
        starts = [sum(t * h * w // merge**2 for t, h, w in row_grids[:k]) for k in range(len(row_grids))]
        in_text = [(obj, where) for obj, (kind, where) in example.shown if kind == "text"]
        for obj, (kind, where) in example.shown:
            if kind == "image":
                cells = image_cells(obj, row_grids[where][2] // merge)
                found.append((row, [positions[starts[where] + c] for c in cells], obj))
            elif kind == "page":
                _, rows, cols = row_grids[0]
                cells = page_cells(where, example.request.images[0].size, (rows // merge, cols // merge))
                found.append((row, [positions[starts[0] + c] for c in cells], obj))
            elif kind == "sound":
                found.append((row, sound_tokens(inputs["input_ids"][row], encoder.model.config.audio_token_id, where,
                                                example.request.audio[0].duration), obj))
        if in_text:
            ends = encoder.caption_tokens(example.request.text, [where[1] for _, where in in_text], inputs["input_ids"].shape[1],
                                          example.answer if answered else None)
            # None: quotes move the caption's characters, no text positions for this request
            found += [(row, [j], obj) for (obj, _), j in zip(in_text, ends or [])]
    return found


def logit_lens(model, hidden: torch.Tensor, last: bool) -> torch.Tensor:
    """Logits of states through the final norm and the LM head (the last layer's states are normed)."""
    return model.lm_head(hidden if last else model.model.language_model.norm(hidden))


def english_word_ids(tokenizer) -> dict[str, int]:
    """The token of each attribute value as an English caption writes it (" red", " circle", ...)."""
    ids = {}
    for attr in ATTRIBUTES:
        for value in VALUES[attr]:
            tokens = tokenizer(" " + value, add_special_tokens=False).input_ids
            if len(tokens) != 1:
                raise X2IError(f"the tokenizer splits ' {value}' into {len(tokens)} tokens; the readout needs one: use a larger vocabulary")
            ids[value] = tokens[0]
    return ids


def hub_loss(model, hidden_states, located, word_ids: dict[str, int], layers: int) -> torch.Tensor:
    """Mean over objects' tokens, the last `layers` layers and the object's English words (shape,
    color, size, place; those of its attributes it has) of -log(the word's probability through the
    LM head): each word must come out, not just the easiest one (a loss on their summed
    probability is met by the size word alone, which leaves color and shape unread)."""
    pairs = [(row, p, word_ids[obj[a]]) for row, positions, obj in located for p in positions for a in ATTRIBUTES if a in obj]
    rows, cols, targets = (torch.tensor(column) for column in zip(*pairs))
    total = len(hidden_states) - 1
    losses = []
    for layer in range(total - layers + 1, total + 1):
        log_probs = logit_lens(model, hidden_states[layer][rows, cols], last=layer == total).log_softmax(-1)
        losses.append(-log_probs.gather(1, targets[:, None]).mean())
    return torch.stack(losses).mean()


@torch.no_grad()
def readout(encoder, n: int = 100, seed: int = 2025) -> dict[str, dict[str, list[float]]]:
    """For images, captions in each language and pages showing them: per layer (0 = embeddings),
    the share of objects whose states, averaged over their tokens (on a page: over the tokens of
    the color's or the shape's word) and read through the LM head, rank the object's color first
    among the six English color words, and its shape among the three."""
    rng = random.Random(seed)
    word_ids = english_word_ids(encoder.processor.tokenizer)
    lines = {"image": [sample_with_scene(rng, "image2image") for _ in range(n)]}
    for lang in LANGUAGES:
        lines[lang] = [sample_with_scene(rng, "text2image", lang) for _ in range(n)]
    for lang in LANGUAGES:
        lines[f"page {lang}"] = [sample_with_scene(rng, "document2image", lang) for _ in range(n)]
    report = {}
    for line, examples in lines.items():
        inputs = encoder.prepare([e.request for e in examples])
        states = encoder.model.model(**inputs, position_ids=encoder.position_ids(inputs), output_hidden_states=True, use_cache=False).hidden_states
        located = object_tokens(encoder, inputs, examples, answered=False)
        if line.startswith("page"):  # on a page, each word's own tokens (not its whole object's words)
            located = [(row, positions, obj) for row, positions, obj in located if len(obj) == 1]
        total = len(states) - 1
        scores = {"color": [], "shape": []}
        for attr, values in (("color", COLORS), ("shape", SHAPES)):
            showing = [(row, positions, obj) for row, positions, obj in located if attr in obj]
            ids = torch.tensor([word_ids[v] for v in values])
            truth = torch.tensor([values.index(obj[attr]) for _, _, obj in showing])
            for layer, hidden in enumerate(states):
                pooled = torch.stack([hidden[row, positions].mean(0) for row, positions, _ in showing])
                best = logit_lens(encoder.model, pooled, last=layer == total)[:, ids].argmax(-1)
                scores[attr].append(round((best == truth).float().mean().item(), 3))
        report[line] = scores
    return report
