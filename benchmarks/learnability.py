"""How fast can a reader's encoder learn to tell the world's words apart, before a stage is spent on it?

    python benchmarks/learnability.py --probe page-words [--steps 300] [--lr 1e-3]

A linear head on the encoder's tokens, trained with the encoder (everything else frozen, no
language model), on one of:

  page-words    pages of captions (`x2i.mini.media.typeset`): each word's tokens -> its English
                attribute value (16 classes: 3 shapes, 6 colors, 2 sizes, 5 places)
  big-words     one shape or color word (any language) alone on a page in 24-32 px type -> its
                English value (9 classes)
  page-shapes   a scene image pasted somewhere on a page -> its object's shape (3): the control
                (what the tower already reads, through the same page path)
  speech-words  captions spoken (`x2i.mini.media.speak_words`): each word's tokens while it is said
                -> its English attribute value (16 classes), from the mini Omni's new audio encoder
  speech        a caption spoken (`x2i.mini.media.speak`) -> its language, and its first object's
                color and shape, from the mean of the mini Omni's new audio encoder's tokens

It prints the mean loss every 20 steps beside chance (the log of the number of classes) and the
prior (the entropy of the labels seen: what a head that ignores the encoder reaches), so a
diagnosis of "not learning" or "learning slowly" comes in minutes, not a 40-minute stage.
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time

import torch
from PIL import Image, ImageDraw, ImageFont

from x2i.inference.encoders.qwen2_5_vl import Qwen2_5_VLEncoder
from x2i.inference.locations import locate
from x2i.inference.request import Request
from x2i.mini import media
from x2i.mini.examples import sample_with_scene
from x2i.mini.language import caption, word_forms
from x2i.mini.readout import object_tokens, page_cells
from x2i.mini.world import (
    ATTRIBUTES,
    COLORS,
    LANGUAGES,
    SHAPES,
    VALUES,
    random_scene,
    render,
)

BATCH = 16
WORD_CLASSES = [v for a in ATTRIBUTES for v in VALUES[a]]  # the English values a word can have
GRID = (media.PAGE[1] // 16, media.PAGE[0] // 16)  # the mini Qwen2.5-VL's tokens on a page: 16 px each (8 px patches, 2x2 merged)


def word_tokens(encoder, inputs, examples, token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each shown word's tokens are in the encoder's output (every row's `token_id` tokens, one
    after another), and the word's English value (an index into WORD_CLASSES)."""
    mine = inputs["input_ids"] == token_id
    counts = mine.sum(1)
    offsets = torch.cumsum(counts, 0) - counts - mine.int().argmax(1)  # a row's token p is output p + offset
    rows = [(int(offsets[row]) + p, WORD_CLASSES.index(next(iter(obj.values()))))
            for row, positions, obj in object_tokens(encoder, inputs, examples, answered=False) for p in positions]
    return torch.tensor([at for at, _ in rows]), torch.tensor([k for _, k in rows])


def vision_probe(kind: str, rng: random.Random):
    """The mini Qwen2.5-VL, its tower, and a function giving one batch: (states, {head: (labels,
    classes)})."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(locate("mini", "mllm"))
    encoder = Qwen2_5_VLEncoder(model, Qwen2_5_VLEncoder.load_processor(locate("mini", "mllm")))

    def tokens(pages):
        inputs = encoder.prepare([Request("", [page]) for page in pages])
        states = torch.cat(list(model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"]).pooler_output))
        return states.view(len(pages), -1, states.shape[-1]), inputs  # [pages, tokens per page, width]

    if kind == "page-words":
        def batch():
            examples = [sample_with_scene(rng, "document2image") for _ in range(BATCH)]
            per_page, inputs = tokens([e.request.images[0] for e in examples])
            at, labels = word_tokens(encoder, inputs, examples, model.config.image_token_id)
            return per_page.flatten(0, 1)[at], {kind: (labels, WORD_CLASSES)}

        return model, model.model.visual, batch

    classes = SHAPES if kind == "page-shapes" else [(a, v) for a in ("shape", "color") for v in VALUES[a]]

    def page():
        paper = Image.new("RGB", media.PAGE, rng.choice(media.PAPER))
        if kind == "page-shapes":
            scene = random_scene(rng, 1)
            x, y = rng.randint(0, media.PAGE[0] - 64), rng.randint(0, media.PAGE[1] - 64)
            paper.paste(render(scene, rng), (x, y))
            return paper, (x, y, x + 64, y + 64), SHAPES.index(scene["objects"][0]["shape"])
        k = rng.randrange(len(classes))
        (attr, value), lang = classes[k], rng.choice(LANGUAGES)
        word = word_forms(lang, attr, value)[0]
        draw = ImageDraw.Draw(paper)
        font = ImageFont.truetype(str(rng.choice(media.fonts(lang))), rng.randint(24, 32))
        _, _, w, h = draw.textbbox((0, 0), word, font=font)
        at = (rng.randint(0, max(0, media.PAGE[0] - w)), rng.randint(0, max(0, media.PAGE[1] - h)))
        draw.text(at, word, font=font, fill=rng.choice(media.INK))
        return paper, draw.textbbox(at, word, font=font), k

    def batch():
        pages = [page() for _ in range(BATCH)]
        per_page, _ = tokens([p for p, _, _ in pages])
        pooled = torch.stack([per_page[j, page_cells([box], media.PAGE, GRID)].mean(0) for j, (_, box, _) in enumerate(pages)])
        return pooled, {kind: (torch.tensor([k for _, _, k in pages]), classes)}

    return model, model.model.visual, batch


def speech_probe(kind: str, rng: random.Random):
    """The mini Qwen2.5-Omni's new audio encoder (as `x2i mini train-mllm --reader qwen2_5_omni`
    builds it), and a function giving one batch: "speech", the mean of each spoken caption's tokens,
    with its language and its first object's color and shape; "speech-words", each word's tokens
    (while it is said) with its English value."""
    from transformers import AutoImageProcessor

    from x2i.architectures import save_qwen2_5_omni
    from x2i.inference.encoders.qwen2_5_omni import Qwen2_5OmniEncoder
    from x2i.media import Audio
    from x2i.mini.omni import CHUNK_SECONDS, OmniConfig, build_omni
    from x2i.mini.world import IMAGE_SIZE

    model, tokenizer = build_omni(OmniConfig())
    image_processor = AutoImageProcessor.from_pretrained(locate("mini", "mllm"), backend="pil")
    encoder = Qwen2_5OmniEncoder(model, Qwen2_5OmniEncoder.load_processor(
        save_qwen2_5_omni(model, tokenizer, image_processor, tempfile.mkdtemp(), video_pixels=IMAGE_SIZE**2, chunk_length=CHUNK_SECONDS)))

    def words():
        examples = [sample_with_scene(rng, "audio2image") for _ in range(BATCH)]
        inputs = encoder.prepare([e.request for e in examples])
        states = model.get_audio_features(inputs["input_features"], inputs["feature_attention_mask"]).last_hidden_state
        at, labels = word_tokens(encoder, inputs, examples, model.config.audio_token_id)
        return states[at], {kind: (labels, WORD_CLASSES)}

    def batch():
        said = [(random_scene(rng), rng.choice(LANGUAGES)) for _ in range(BATCH)]
        inputs = encoder.prepare([Request("", [Audio.from_array(*media.speak(caption(s, lang, rng), lang, rng))]) for s, lang in said])
        states = model.get_audio_features(inputs["input_features"], inputs["feature_attention_mask"]).last_hidden_state
        lengths = (inputs["input_ids"] == model.config.audio_token_id).sum(1).tolist()
        pooled = torch.stack([s.mean(0) for s in states.split(lengths)])
        heads = {"language": ([lang for _, lang in said], LANGUAGES), "color": ([s["objects"][0]["color"] for s, _ in said], COLORS),
                 "shape": ([s["objects"][0]["shape"] for s, _ in said], SHAPES)}
        return pooled, {name: (torch.tensor([classes.index(v) for v in values]), classes) for name, (values, classes) in heads.items()}

    return model, model.model.audio_tower, words if kind == "speech-words" else batch


def prior(counts: torch.Tensor) -> float:
    """The entropy of the labels seen: the best loss a head that ignores its input can reach."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probe", choices=("page-words", "big-words", "page-shapes", "speech", "speech-words"), required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    model, encoder, batch = speech_probe(args.probe, rng) if args.probe.startswith("speech") else vision_probe(args.probe, rng)
    model.requires_grad_(False)
    encoder.requires_grad_(True).train()
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=args.lr, weight_decay=0)
    heads, seen, counts = {}, {}, {}
    start = time.time()
    for step in range(args.steps):
        states, labelled = batch()
        losses = []
        for name, (labels, classes) in labelled.items():
            if name not in heads:  # a linear head per label, made at the first batch
                heads[name] = torch.nn.Linear(states.shape[-1], len(classes))
                optimizer.add_param_group({"params": heads[name].parameters()})
            losses.append(torch.nn.functional.cross_entropy(heads[name](states), labels))
            seen.setdefault(name, []).append((losses[-1].item(), math.log(len(classes))))
            counts[name] = counts.get(name, 0) + torch.bincount(labels, minlength=len(classes))
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 30)
        optimizer.zero_grad()
        sum(losses).backward()
        optimizer.step()
        if (step + 1) % 20 == 0:
            shown = ", ".join(f"{name} {sum(v for v, _ in s[-20:]) / 20:.3f} (chance {s[-1][1]:.3f}, prior {prior(counts[name]):.3f})"
                              for name, s in seen.items())
            print(f"step {step + 1}: {shown}  {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
