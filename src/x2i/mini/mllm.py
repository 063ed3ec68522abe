"""The mini MLLM: a Qwen2.5-VL that understands the mini world, trained here from scratch.

It is the real `Qwen2_5_VLForConditionalGeneration` with a byte-level BPE tokenizer trained on the
world's five languages, saved so that `x2i.encoders.load_encoder` loads it exactly as it loads the
real model. It learns by next-token prediction on the assistant's answer, with every request put
to it through the same `Qwen2_5_VLEncoder.chat` / `format_prompt` that X2I uses, so the hidden
states X2I reads come from prompts in the format it was trained on. The tasks:

- text2image:       a caption in any of the five languages  -> the scene in canonical English
- image2image:      one image                                -> its scene
- imagetext2image:  an image + an edit instruction (any lang) -> the edited scene
- multiimage2image: two single-object images                 -> the scene holding both
- question:         an image + a question                    -> a short answer
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import Qwen2VLImageProcessorPil

from x2i.mini.training import train_loop
from x2i.encoders.qwen2_5_vl import Qwen2_5_VLEncoder, load_processor
from x2i.mini.language import WORDS, caption, describe, edit
from x2i.mini.world import COLORS, IMAGE_SIZE, LANGUAGES, POSITIONS, SHAPES, SIZES, combine, random_edit, random_object, random_scene, render
from x2i.options import option
from x2i.request import Request
from x2i.tiny import QWEN_VL_CHAT_TEMPLATE, build_qwen2_5_vl, build_qwen_tokenizer, save_qwen2_5_vl

# The training mix: the world's tasks, and questions about an image (an MLLM-only task).
TRAINING_MIX = {"text2image": 4, "image2image": 1, "imagetext2image": 3, "multiimage2image": 1, "question": 1}


@dataclass
class MLLMConfig:
    seed: int = option(0, "seed of the tokenizer, the initialisation and the data")
    steps: int = option(5000, "training steps")
    batch: int = option(32, "requests per step")
    lr: float = option(1e-3, "learning rate")
    warmup: int = option(200, "warm-up steps")
    hidden_size: int = option(128, "language model width")
    num_layers: int = option(4, "language model layers")
    vision_depth: int = option(2, "vision tower blocks")
    vision_hidden_size: int = option(64, "vision tower width")
    patch_size: int = option(8, "64 px images -> 8x8 patches -> 16 image tokens after 2x2 merging")
    vocab_size: int = option(2000, "BPE vocabulary over the five languages")
    probe_weight: float = option(1.0, "weight of the scene probe's loss next to the answer's (0: no probe)")
    probe_tokens: int = option(6, "prompt tokens the probe reads: the chat template's closing ones")


def question(scene: dict, rng: random.Random) -> tuple[str, str]:
    """An English question about the scene and its short answer."""
    objects = scene["objects"]
    obj = rng.choice(objects)
    name = f"{obj['color']} {obj['shape']}"
    kind = rng.choice(("count", "color", "shape", "where", "size"))
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
    """One training request (of `task`, or one drawn by TASKS' weights) and the answer to give."""
    request, answer, _ = sample_with_scene(rng, task)
    return request, answer


def sample_with_scene(rng: random.Random, task: str | None = None) -> tuple[Request, str, dict]:
    """A request, its answer, and the scene it is about (the result, for edits and pairs)."""
    task = task or rng.choices(list(TRAINING_MIX), weights=list(TRAINING_MIX.values()))[0]
    lang = rng.choice(LANGUAGES)
    scene = random_scene(rng)
    if task == "text2image":
        return Request(caption(scene, lang, rng)), describe(scene), scene
    if task == "image2image":
        return Request("", [render(scene, rng)]), describe(scene), scene
    if task == "imagetext2image":
        text, result = edit(scene, random_edit(scene, rng), lang, rng)
        return Request(text, [render(scene, rng)]), describe(result), result
    if task == "multiimage2image":
        a, b = ({"objects": [random_object(rng, p)]} for p in rng.sample(POSITIONS, 2))
        both = combine([a, b])
        return Request("", [render(a, rng), render(b, rng)]), describe(both), both
    q, answer = question(scene, rng)
    return Request(q, [render(scene, rng)]), answer, scene


# ---- the scene probe -----------------------------------------------------------------------------
# A 4-layer MLLM does not, by itself, place what it is about to say at the same prompt positions for
# an image as for a caption (large MLLMs do, which is what X2I relies on). A linear probe, used in
# training only and then thrown away, asks the last layer at the prompt's final tokens (the chat
# template's closing tokens, the same whatever the input) to hold the scene the answer describes.

OBJECT_CLASSES = [(s, c, z) for s in SHAPES for c in COLORS for z in SIZES]  # per position; 0 = empty


def scene_targets(scene: dict) -> list[int]:
    """One class per position: 0 for empty, else 1 + the (shape, color, size) index."""
    targets = [0] * len(POSITIONS)
    for obj in scene["objects"]:
        targets[POSITIONS.index(obj["position"])] = 1 + OBJECT_CLASSES.index((obj["shape"], obj["color"], obj["size"]))
    return targets


def build_mini_tokenizer(config: MLLMConfig):
    """Byte-level BPE over the chat texts of many examples, all five languages included."""
    rng = random.Random(config.seed)
    corpus = [QWEN_VL_CHAT_TEMPLATE]
    for _ in range(4000):
        lang = rng.choice(LANGUAGES)
        scene = random_scene(rng)
        text, result = edit(scene, random_edit(scene, rng), lang, rng)
        corpus += [str({"Text input": caption(scene, lang, rng)}), text, describe(result), question(scene, rng)[0]]
    return build_qwen_tokenizer(corpus, vocab_size=config.vocab_size)


def answer_labels(encoder: Qwen2_5_VLEncoder, inputs, answers: list[str]) -> torch.Tensor:
    """Labels for next-token loss on each answer and its <|im_end|> only. Rows are left-padded and
    end with the answer, <|im_end|> and a newline."""
    tokenizer = encoder.processor.tokenizer
    labels = torch.full_like(inputs["input_ids"], -100)
    for i, answer in enumerate(answers):
        n = len(tokenizer(answer + "<|im_end|>").input_ids)
        labels[i, -1 - n : -1] = inputs["input_ids"][i, -1 - n : -1]
    return labels


def train_mllm(config: MLLMConfig, out: str | Path, progress: bool = True) -> Path:
    torch.manual_seed(config.seed)
    tokenizer = build_mini_tokenizer(config)
    model = build_qwen2_5_vl(
        tokenizer,
        num_layers=config.num_layers,
        hidden_size=config.hidden_size,
        vision_depth=config.vision_depth,
        vision_hidden_size=config.vision_hidden_size,
        patch_size=config.patch_size,
        seed=config.seed,
    )
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=config.patch_size, merge_size=2, min_pixels=IMAGE_SIZE**2, max_pixels=IMAGE_SIZE**2
    )
    out = save_qwen2_5_vl(model, tokenizer, image_processor, out)  # the processor comes back as X2I loads it
    encoder = Qwen2_5_VLEncoder(model, load_processor(out))
    model.train().requires_grad_(True)
    probe = torch.nn.Linear(config.hidden_size, len(POSITIONS) * (1 + len(OBJECT_CLASSES)))

    rng = random.Random(config.seed + 1)

    def step(_):
        requests, answers, scenes = zip(*(sample_with_scene(rng) for _ in range(config.batch)))
        inputs = encoder.prepare(requests, answers=answers)
        labels = answer_labels(encoder, inputs, answers)
        result = model(**inputs, position_ids=encoder.position_ids(inputs), labels=labels, use_cache=False, output_hidden_states=True)
        loss = result.loss
        if config.probe_weight:
            loss = loss + config.probe_weight * probe_loss(probe, result.hidden_states[-1], labels, scenes, config.probe_tokens)
        return loss, {}

    train_loop("mini MLLM", config.steps, [*model.parameters(), *probe.parameters()], step, lr=config.lr, warmup=config.warmup,
               clip=list(model.parameters()), progress=progress)
    model.eval()
    return save_qwen2_5_vl(model, tokenizer, image_processor, out)


def probe_loss(probe: torch.nn.Linear, last_hidden: torch.Tensor, labels: torch.Tensor, scenes, tokens: int) -> torch.Tensor:
    """Cross-entropy of the scene read from each of the prompt's last `tokens` positions."""
    answer_start = (labels != -100).int().argmax(dim=1)  # first answer token in each (left-padded) row
    offsets = torch.arange(-tokens, 0)
    rows = torch.arange(len(scenes))[:, None]
    states = last_hidden[rows, answer_start[:, None] + offsets]  # [B, tokens, H]
    logits = probe(states).view(len(scenes), tokens, len(POSITIONS), -1)
    targets = torch.tensor([scene_targets(s) for s in scenes])[:, None, :].expand(-1, tokens, -1)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 2), targets.flatten())


def answer(encoder: Qwen2_5_VLEncoder, request: Request, max_new_tokens: int = 48) -> str:
    """The mini MLLM's greedy answer to a request (to check what it understood)."""
    return encoder.answer([request], max_new_tokens)[0]


def answer_accuracy(encoder: Qwen2_5_VLEncoder, n: int = 100, seed: int = 777) -> dict[str, float]:
    """Exact-match accuracy of the greedy answers on `n` fresh requests per task."""
    rng = random.Random(seed)
    return {
        task: sum(answer(encoder, request) == expected for request, expected in (sample_example(rng, task) for _ in range(n))) / n
        for task in TRAINING_MIX
    }
