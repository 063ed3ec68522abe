"""`x2i mini transfer`: does the attention-distillation distance predict what the student draws?

For fresh cases of every task and language, the teacher reads the English caption of the case's
target scene and the student reads the case's request (by the road asked for); both see the same
noise at t = 1, as in distillation, and the terms are averaged per block kind. Only image-stream
terms are compared: text terms pair T5 and MLLM tokens that read the same caption words, which
exist for English captions alone. Beside each line: the judged score of the student's pictures of
the same cases, and over the lines, the rank correlation of distance and score.

A diagnostic only: nothing here is ever a training signal.
"""

from __future__ import annotations

import random
from collections import defaultdict

import torch
from scipy.stats import spearmanr
from tqdm.auto import tqdm

from x2i.inference.conditioning import FluxConditioning
from x2i.inference.request import Request
from x2i.mini.eval import case_inputs, run_student
from x2i.mini.language import caption
from x2i.training.loss import AttentionTaps, FluxInputs, distillation_loss

KINDS = ("double_image", "single_image")


def line_of(case: dict) -> str:
    """The line a case reports under: its task, and its language where the task has text."""
    return case["task"] + (f" {case['lang']}" if case["task"] in ("text2image", "imagetext2image") else "")


@torch.no_grad()
def transfer(pipeline, teacher, cases: list[dict], seed: int, steps: int = 20, condition_on: str | None = None,
             batch: int = 32, progress: bool = True) -> dict:
    """Per line: the mean term of each block kind (teacher on the target's English caption, student on
    the request, same noise at t = 1), the judged score and n; and `spearman`, the rank correlation
    over lines of the summed distance and the score (negative: a smaller distance, a better picture)."""
    flux, transformer = pipeline.flux, pipeline.flux.transformer
    by_line = defaultdict(list)
    for i, case in enumerate(cases):
        by_line[line_of(case)].append((i, case))
    taps = AttentionTaps(transformer)
    sums = defaultdict(lambda: dict.fromkeys(KINDS, 0.0))
    try:
        for line, part in tqdm([(line, part[s : s + batch]) for line, part in by_line.items() for s in range(0, len(part), batch)],
                               desc="distances", disable=not progress):
            inputs = [case_inputs(c, random.Random(seed + i)) for i, c in part]
            captions = [caption(c["expect"], "en", random.Random(seed + i)) for i, c in part]
            embeds, pooled, _ = teacher.encode_prompt(captions, captions, device=transformer.device, max_sequence_length=teacher.tokenizer_2.model_max_length)
            student = pipeline.encode([Request(text, images) for text, images in inputs], condition_on)
            generators = [torch.Generator().manual_seed(seed + i) for i, _ in part]
            latents, ids = flux.prepare_latents(len(part), transformer.config.in_channels // 4, 64, 64, transformer.dtype, transformer.device, generators)
            guidance = torch.full((len(part),), 3.5, device=transformer.device) if transformer.config.guidance_embeds else None
            shared = FluxInputs(latents, ids, torch.ones(len(part), device=transformer.device), guidance)
            result = distillation_loss(transformer, taps, shared, FluxConditioning(embeds, pooled), student, terms="image")
            for kind in KINDS:  # each term is a batch mean: weigh it by the batch
                sums[line][kind] += float(result.sums[kind]) / result.counts[kind] * len(part)
    finally:
        taps.remove()
    correct = defaultdict(list)
    for r in run_student(pipeline, cases, seed, steps, batch, progress, condition_on):
        correct[line_of(r["case"])].append(r["correct"])
    report = {line: {**{k: round(sums[line][k] / len(part), 4) for k in KINDS}, "score": round(sum(correct[line]) / len(part), 4), "n": len(part)}
              for line, part in by_line.items()}
    distance = [sum(report[line][k] for k in KINDS) for line in report]
    rho = spearmanr(distance, [r["score"] for r in report.values()]).statistic if len(report) > 2 else float("nan")
    return {"lines": report, "spearman": round(float(rho), 4)}
