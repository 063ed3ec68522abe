"""The mini MLLM: a Qwen2.5-VL that understands the mini world, trained here from scratch.

It is the real `Qwen2_5_VLForConditionalGeneration` with a byte-level BPE tokenizer trained on the
world's five languages, saved so that `x2i.load_encoder` loads it exactly as it loads the real
model. It is made in the three stages real MLLMs are made in (Qwen2.5-VL, LLaVA), the last twice,
then the vision tower alone on clips and pages:

1. language model: next-token prediction on text of the world in five languages (captions, half
   of them beside a translation as parallel text on the web is, edit instructions, questions);
2. vision-language alignment: the vision tower learns to caption images (in English) for the
   frozen language model;
3. instruction tuning, everything trained, on the world's tasks (`x2i.mini.examples`) put through
   the same `Qwen2_5_VLEncoder.chat` / `format_prompt` that X2I uses;
4. stage 3 again, on a mix weighted toward edits and conversations (`EDIT_MIX`: most of all, edits
   of two objects that keep one as it was, and questions about one of two objects), at a lower
   rate; on a made model (`start_from`) it may first deepen the language model (`deepen`);
5. watching and reading (`WATCH_MIX`): clips ("draw the last frame") and documents (a page
   showing a caption in any language -> its scene), beside the image tasks, training the vision
   tower only (`watch_mix="look"`: the same stage weighted to edits, `LOOK_MIX`, for a model that
   already watches). The language model stays frozen, as in stage 2, so text reads exactly as before and
   an AlignNet distilled on the model's text stays valid;
6. reading (`READ_MIX`, off unless `read_steps`): stage 5 weighted to pages, with the semantic hub
   on each word's tokens; with `read_language_lr` the language model learns too, on pages and their
   text transcribed (`page text`, OCR as real MLLMs are tuned on it) beside every other task
   (`READ_LANGUAGE_MIX`).

Two training-only objectives stand in for properties measured in large MLLMs that a 4-layer model
does not get by itself (docs/mini-world.md): the semantic hub (`x2i.mini.readout.hub_loss`: an
object's image tokens and caption words, in any language, read out as its English words through
the LM head) and the scene probe (the prompt's closing tokens hold what the answer will say).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from transformers import (
    AutoTokenizer,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
)

from x2i.architectures import (
    QWEN_VL_CHAT_TEMPLATE,
    build_qwen2_5_vl,
    build_qwen_tokenizer,
    save_qwen2_5_vl,
)
from x2i.errors import X2IError
from x2i.inference.encoders.qwen2_5_vl import Qwen2_5_VLEncoder
from x2i.inference.locations import locate
from x2i.mini.examples import (
    EDIT_MIX,
    LOOK_MIX,
    READ_LANGUAGE_MIX,
    READ_MIX,
    TRAINING_MIX,
    WATCH_MIX,
    Example,
    caption_example,
    question,
    sample_with_scene,
    text_document,
)
from x2i.mini.language import CJK, caption, describe, edit, words
from x2i.mini.media import PAGE
from x2i.mini.readout import english_word_ids, hub_loss, object_tokens
from x2i.mini.world import (
    ATTRIBUTES,
    COLORS,
    IMAGE_SIZE,
    LANGUAGES,
    POSITIONS,
    SHAPES,
    SIZES,
    random_edit,
    random_scene,
)
from x2i.options import option
from x2i.training.loop import train_stage

EDIT_STEPS = 1500  # stage 4's steps in the recipe from scratch (a made model runs it only when asked)
# Stage 5's mixes, by `watch_mix`: what the stage is called, and what it draws.
STAGE5_MIXES = {"watch": ("watching and reading", WATCH_MIX), "look": ("looking again", LOOK_MIX)}


@dataclass
class MLLMConfig:
    seed: int = option(0, "seed of the tokenizer, the initialisation and the data")
    text_steps: int = option(1500, "stage 1: language-model steps on text in the five languages")
    caption_steps: int = option(1000, "stage 2: captioning steps with the language model frozen")
    steps: int = option(3500, "stage 3: instruction-tuning steps on the world's tasks")
    edit_steps: int | None = option(None, "stage 4: instruction-tuning steps weighted toward edits and conversations "
                                    f"(default: {EDIT_STEPS}, or none on --start-from; 0: none)")
    edit_lr: float = option(3e-4, "stage 4's learning rate (its warm-up: half of --warmup)")
    watch_steps: int = option(1200, "stage 5: clips and documents, the vision tower only (0: none)")
    watch_lr: float = option(1e-3, "stage 5's learning rate")
    watch_mix: str = option("watch", "stage 5's mix: watch (clips and pages beside the image tasks) or look (weighted to "
                            "edits, for a model that already watches: --start-from)", choices=tuple(STAGE5_MIXES))
    read_steps: int = option(0, "stage 6: reading pages, the semantic hub on each word's tokens; the vision tower only "
                             "unless --read-language-lr (0: none)")
    read_batch: int = option(16, "stage 6's requests per step")
    read_lr: float = option(1e-3, "stage 6's learning rate")
    read_language_lr: float = option(0.0, "stage 6's learning rate for the language model (0: frozen, text reads as before; "
                                     "else it learns too, on pages and their text transcribed beside every other task, as real "
                                     "MLLMs are tuned on OCR, and its AlignNet, LightControl and LoRA must be made again)")
    start_from: str = option("", "a mini MLLM made by stages 1-4 (a directory, or mini: the shipped one): run only the stages "
                             "after 3 on it (stage 4 when --edit-steps is given)")
    add_layers: tuple[int, ...] = option((), "with --start-from: deepen its language model before stage 4, a copy of each of "
                                         "these layers (0-based) inserted after it that starts as the identity", nargs="*")
    batch: int = option(32, "texts or requests per step")
    lr: float = option(1e-3, "learning rate (each stage: warm-up, then cosine decay)")
    warmup: int = option(200, "warm-up steps of each stage")
    hidden_size: int = option(128, "language model width")
    num_layers: int = option(6, "language model layers")
    vision_depth: int = option(4, "vision tower blocks")
    vision_hidden_size: int = option(128, "vision tower width")
    patch_size: int = option(8, "64 px images -> 8x8 patches -> 16 image tokens after 2x2 merging")
    vocab_size: int = option(2000, "BPE vocabulary over the five languages")
    hub_weight: float = option(1.0, "weight of the semantic-hub readout objective, stages 2 to 4 (0: none)")
    hub_layers: int = option(2, "the last layers the semantic-hub objective reads")
    probe_weight: float = option(1.0, "weight of the scene probe's loss next to the answer's, stages 3 and 4 (0: no probe)")
    probe_tokens: int = option(6, "prompt tokens the probe reads: the chat template's closing ones")


# ---- the scene probe -----------------------------------------------------------------------------
# A 4-layer MLLM does not, by itself, place what it is about to say at the same prompt positions for
# an image as for a caption. Large MLLMs do: the image's and the question's information flows to the
# prompt's last positions in the middle layers, before the answer (Zhang et al., "Cross-modal
# Information Flow in Multimodal Large Language Models", CVPR 2025). A linear probe, used in
# training only and then thrown away, asks the last layer at the prompt's final tokens (the chat
# template's closing tokens, the same whatever the input) to hold the scene the answer describes.

LENGTH_GROUPS = 4  # micro-batches of similar length per step (`batch_loss`)
OBJECT_CLASSES = [(s, c, z) for s in SHAPES for c in COLORS for z in SIZES]  # per position; 0 = empty


def scene_probe(hidden_size: int) -> torch.nn.Linear:
    """A new probe from a hidden state to one class per position (`scene_targets`)."""
    return torch.nn.Linear(hidden_size, len(POSITIONS) * (1 + len(OBJECT_CLASSES)))


def scene_targets(scene: dict) -> list[int]:
    """One class per position: 0 for empty, else 1 + the (shape, color, size) index."""
    targets = [0] * len(POSITIONS)
    for obj in scene["objects"]:
        targets[POSITIONS.index(obj["position"])] = 1 + OBJECT_CLASSES.index((obj["shape"], obj["color"], obj["size"]))
    return targets


def build_mini_tokenizer(config: MLLMConfig):
    """Byte-level BPE over the chat texts of many examples, all five languages included.

    Chinese is written without spaces, so on a corpus this small and repetitive BPE would merge
    whole phrases across words (一个大红 | 色圆形在左边). Real MLLM tokenizers see so much text that
    their merges follow words (一个 / 大 / 红色 / 圆形). So the corpus's Chinese is cut into words
    (`language.words`) for training only: merges are learned within words, and on unsegmented text
    the tokenizer then splits as real ones do."""
    rng = random.Random(config.seed)
    corpus = [QWEN_VL_CHAT_TEMPLATE]
    for _ in range(4000):
        lang = rng.choice(LANGUAGES)
        scene = random_scene(rng)
        text, result = edit(scene, random_edit(scene, rng), lang, rng)
        corpus += [str({"Text input": caption(scene, lang, rng)}), text, describe(result), question(scene, rng)[0]]
    corpus = [CJK.sub(lambda run: "\n".join(words(run.group())), text) for text in corpus]
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
    if config.add_layers and not config.start_from:
        raise X2IError("--add-layers deepens a model already made: give --start-from (a new model takes --num-layers)")
    torch.manual_seed(config.seed)
    if config.start_from:
        start = locate(config.start_from, "mllm")  # a directory, or mini: the shipped one
        tokenizer = AutoTokenizer.from_pretrained(start)
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(start)
        deepen(model, config.add_layers)  # before anything is written: a bad layer index leaves --out as it was
    else:
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
    # Scenes (64 x 64) are read at their size, and a document page (PAGE) at its own.
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=model.config.vision_config.patch_size, merge_size=2, min_pixels=IMAGE_SIZE**2, max_pixels=PAGE[0] * PAGE[1]
    )
    out = save_qwen2_5_vl(model, tokenizer, image_processor, out, video_pixels=IMAGE_SIZE**2)  # the processor comes back as X2I loads it
    encoder = Qwen2_5_VLEncoder(model, Qwen2_5_VLEncoder.load_processor(out))
    word_ids = english_word_ids(tokenizer) if config.hub_weight else None
    if not config.start_from:
        train_language_and_tasks(model, tokenizer, encoder, config, word_ids, progress)
    edit_steps = config.edit_steps if config.edit_steps is not None else (0 if config.start_from else EDIT_STEPS)
    if edit_steps:
        # Stage 4: stage 3 again, weighted toward what stage 3 leaves most often wrong (EDIT_MIX), at
        # a lower learning rate, from seeds of its own and with a new probe.
        torch.manual_seed(config.seed + 4)
        probe = scene_probe(model.config.text_config.hidden_size)
        rng, params = random.Random(config.seed + 4004), train_only(model, model.parameters())
        train_stage("mini MLLM 4/5 edits", edit_steps, [*params, *probe.parameters()], tasks(encoder, rng, EDIT_MIX, config.batch),
                    lambda batch: batch_loss(model, batch, config, word_ids, probe if config.probe_weight else None),
                    lr=config.edit_lr, warmup=config.warmup // 2, clip=params, progress=progress)
    if config.watch_steps:
        # Stage 5: the vision tower learns clips and pages beside the images it already reads.
        rng, (name, mix) = random.Random(config.seed + 5005), STAGE5_MIXES[config.watch_mix]
        vision = train_only(model, model.model.visual.parameters())
        train_stage(f"mini MLLM 5/5 {name}", config.watch_steps, vision, tasks(encoder, rng, mix, config.batch),
                    lambda batch: batch_loss(model, batch), lr=config.watch_lr, warmup=config.warmup // 2, clip=vision, progress=progress)
    if config.read_steps:
        # Stage 6: reading. Trained through the frozen LM on a page's scene alone, the tower does not
        # learn glyphs; each word's tokens read out as its English word (as an image's object tokens
        # do, stages 2-4) give it a signal per word.
        # With --read-language-lr the language model learns too (with a new scene probe, as in stage 4).
        rng = random.Random(config.seed + 6006)
        word_ids = word_ids or english_word_ids(tokenizer)  # made above unless hub_weight is 0
        vision = list(model.model.visual.parameters())
        language = [*model.model.language_model.parameters(), *model.lm_head.parameters()] if config.read_language_lr else []
        trained = train_only(model, [*vision, *language])
        groups, mix, probe = [{"params": vision, "lr": config.read_lr}], READ_MIX, None
        if language:
            torch.manual_seed(config.seed + 6)
            probe = scene_probe(model.config.text_config.hidden_size)
            groups.append({"params": [*language, *probe.parameters()], "lr": config.read_language_lr})
            mix = READ_LANGUAGE_MIX
        train_stage("mini MLLM 6 reading", config.read_steps, groups, tasks(encoder, rng, mix, config.read_batch),
                    lambda batch: batch_loss(model, batch, config, word_ids, probe if config.probe_weight else None),
                    lr=config.read_lr, warmup=config.warmup // 4, clip=trained, progress=progress)
    model.eval()
    return save_qwen2_5_vl(model, tokenizer, image_processor, out, video_pixels=IMAGE_SIZE**2)


def train_only(model, params) -> list[torch.nn.Parameter]:
    """`params` (the model's, or beside it) trainable and the rest of the model frozen, in training mode."""
    params = list(params)
    model.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    model.train()
    return params


def train_language_and_tasks(model, tokenizer, encoder: Qwen2_5_VLEncoder, config: MLLMConfig, word_ids, progress: bool) -> None:
    """Stages 1 to 3."""
    probe = scene_probe(config.hidden_size)
    rng = random.Random(config.seed + 1)

    def texts():
        inputs = tokenizer([text_document(rng) for _ in range(config.batch)], padding=True, return_tensors="pt")
        return inputs, encoder.position_ids(inputs), inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)

    def language_loss(batch):
        inputs, position_ids, labels = batch
        return model(**inputs, position_ids=position_ids, labels=labels, use_cache=False).loss, {}

    language, vision = list(model.model.language_model.parameters()) + list(model.lm_head.parameters()), list(model.model.visual.parameters())
    stages = [
        ("mini MLLM 1/5 language", config.text_steps, language, texts, language_loss),
        ("mini MLLM 2/5 captions", config.caption_steps, vision,  # the language model frozen
         lambda: micro_batches(encoder, [caption_example(rng) for _ in range(config.batch)]),
         lambda batch: batch_loss(model, batch, config, word_ids)),
        ("mini MLLM 3/5 instructions", config.steps, [*model.parameters(), *probe.parameters()], tasks(encoder, rng, TRAINING_MIX, config.batch),
         lambda batch: batch_loss(model, batch, config, word_ids, probe if config.probe_weight else None)),
    ]
    for desc, steps, params, make, loss in stages:
        train_only(model, params)
        trained = [p for p in model.parameters() if p.requires_grad]
        train_stage(desc, steps, params, make, loss, lr=config.lr, warmup=min(config.warmup, steps // 10), clip=trained, progress=progress)


def tasks(encoder, rng: random.Random, mix: dict, batch: int):
    """Stages 3 to 6: a batch of requests drawn by `mix`, as micro-batches."""
    return lambda: micro_batches(encoder, [sample_with_scene(rng, mix=mix) for _ in range(batch)])


def deepen(model, after: tuple[int, ...]) -> None:
    """Depth up-scaling (as SOLAR 10.7B was made): a copy of each language-model layer in `after`
    inserted after it, its attention output and MLP down-projection zeroed, so that the model
    computes exactly what it did and training can use the new depth. The mini MLLM's edits need the
    kept object's size before the answer's first word (benchmarks/edit_errors.py)."""
    if not after:
        return
    layers, depth = [], len(model.model.language_model.layers)
    if any(not 0 <= i < depth for i in after):
        raise X2IError(f"--add-layers {' '.join(map(str, after))}: the language model's layers are 0 to {depth - 1}")
    for i, layer in enumerate(model.model.language_model.layers):
        layers.append(layer)
        if i in after:
            extra = copy.deepcopy(layer)
            torch.nn.init.zeros_(extra.self_attn.o_proj.weight)
            torch.nn.init.zeros_(extra.mlp.down_proj.weight)
            layers.append(extra)
    for i, layer in enumerate(layers):
        layer.self_attn.layer_idx = i  # the KV cache is indexed by it
    model.model.language_model.layers = torch.nn.ModuleList(layers)
    model.config.text_config.num_hidden_layers = len(layers)
    model.config.text_config.layer_types = ["full_attention"] * len(layers)


class MicroBatch(NamedTuple):
    """Requests of similar length with their answers, ready for the model (`micro_batches`)."""

    examples: list[Example]
    inputs: dict
    position_ids: torch.Tensor
    labels: torch.Tensor
    located: list  # `object_tokens`: where the requests show each object


def micro_batches(encoder, examples: list[Example], groups: int = LENGTH_GROUPS) -> list[MicroBatch]:
    """The data side of a step (`train_stage`'s `make`). Requests differ in
    length several-fold (a caption; a two-turn conversation with images), and a batch is left-padded
    to its longest: so it runs as `groups` micro-batches of similar length, about a third fewer
    tokens computed."""
    order = list(range(len(examples)))
    if groups > 1:
        lengths = encoder.prepare([e.request for e in examples], answers=[e.answer for e in examples])["attention_mask"].sum(1)
        order.sort(key=lambda i: int(lengths[i]))
    size, batches = -(-len(order) // groups), []
    for start in range(0, len(order), size):
        group = [examples[i] for i in order[start : start + size]]
        inputs = encoder.prepare([e.request for e in group], answers=[e.answer for e in group])
        labels = answer_labels(encoder, inputs, [e.answer for e in group])
        batches.append(MicroBatch(group, inputs, encoder.position_ids(inputs), labels, object_tokens(encoder, inputs, group, answered=True)))
    return batches


def batch_loss(model, batch: list[MicroBatch], config: MLLMConfig | None = None, word_ids=None, probe=None,
               bf16: bool = False) -> tuple[torch.Tensor, dict]:
    """The model on a batch (its micro-batches): next-token loss on the answers, plus the semantic-hub
    objective on the objects the requests show (`word_ids`: None for none) and, with `probe`, the
    scene probe (their weights and layers from `config`). Each term is weighted by its micro-batch's
    share of the whole batch: the whole batch's loss, up to rounding. `bf16`: the model runs under
    bf16 autocast (mixed precision; the weights and their updates stay float32)."""
    terms = {"answer": [], "hub": [], "probe": []}  # (value, weight) per micro-batch
    for group, inputs, position_ids, labels, located in batch:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            result = model(**inputs, position_ids=position_ids, labels=labels, use_cache=False, output_hidden_states=True)
        terms["answer"].append((result.loss, int((labels[:, 1:] != -100).sum())))  # the model's loss: a mean over answer tokens
        if word_ids and located:  # a mean over the objects' tokens and words
            hub = hub_loss(model, result.hidden_states, located, word_ids, config.hub_layers)
            terms["hub"].append((hub, sum(len(positions) * sum(a in obj for a in ATTRIBUTES) for _, positions, obj in located)))
        if probe is not None:  # a mean over rows
            scenes = [e.scene for e in group]
            terms["probe"].append((probe_loss(probe, result.hidden_states[-1], labels, scenes, config.probe_tokens), len(group)))
    mean = {name: sum(v * w for v, w in parts) / sum(w for _, w in parts) for name, parts in terms.items() if parts}
    loss, shown = mean["answer"], {}
    for name in ("hub", "probe"):
        if name in mean:
            loss, shown[name] = loss + getattr(config, f"{name}_weight") * mean[name], f"{mean[name].item():.3f}"
    return loss, shown


def probe_loss(probe: torch.nn.Linear, last_hidden: torch.Tensor, labels: torch.Tensor, scenes, tokens: int) -> torch.Tensor:
    """Cross-entropy of the scene read from each of the prompt's last `tokens` positions."""
    answer_start = (labels != -100).int().argmax(dim=1)  # first answer token in each (left-padded) row
    offsets = torch.arange(-tokens, 0)
    rows = torch.arange(len(scenes))[:, None]
    states = last_hidden[rows, answer_start[:, None] + offsets]  # [B, tokens, H]
    logits = probe(states).view(len(scenes), tokens, len(POSITIONS), -1)
    targets = torch.tensor([scene_targets(s) for s in scenes])[:, None, :].expand(-1, tokens, -1)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 2), targets.flatten())
