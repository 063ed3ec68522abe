"""Attention distillation: the loss that pulls FLUX-conditioned-by-MLLM toward FLUX-conditioned-by-T5.

For each tapped attention output (reference notes, section 4): z-score over channels (unbiased
std), divide by the temperature, softmax over channels, and take KL(p_student || p_teacher),
summed over tokens and divided by the batch. Always in fp32: the original computed it in bf16 and
silently skipped the terms that came out non-finite.

`distillation_loss` runs one batch through teacher and student and returns the loss with the
number of terms of each kind. Which terms count is its `terms` argument, never a consequence of
shapes: asking for text terms with sequences of different lengths is an error.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from x2i.errors import X2IError
from x2i.inference.conditioning import FluxConditioning

# Which terms count. "padded": every term, teacher token k against student token k, both sides of
# one length (the release: T5 and the MLLM padded to 512). "words": every image term, and text
# terms between the T5 token and the MLLM token that read the same caption characters (`text_pairs`).
# "image": image tokens only.
TERMS = ("padded", "words", "image")
TERM_KINDS = ("double_image", "double_text", "single_image", "single_text")


def _zscore(x: torch.Tensor) -> torch.Tensor:
    x = x.float()
    return (x - x.mean(dim=-1, keepdim=True)) / (1e-7 + x.std(dim=-1, keepdim=True))


def attention_kd_term(teacher: torch.Tensor, student: torch.Tensor, temperature: float = 3.0, mask: torch.Tensor | None = None) -> torch.Tensor:
    """One block's term for outputs `[B, N, D]` (the teacher's carries no gradient); `mask [B, N]`
    keeps only the tokens that have a counterpart."""
    if teacher.shape != student.shape:
        raise ValueError(f"teacher output {tuple(teacher.shape)} and student output {tuple(student.shape)} differ")
    log_p_teacher = F.log_softmax(_zscore(teacher.detach()) / temperature, dim=-1)
    p_student = F.softmax(_zscore(student) / temperature, dim=-1)
    if mask is None:
        # kl_div(input=log q, target=p) = sum p * (log p - log q) = KL(p || q); batchmean divides by B.
        return F.kl_div(log_p_teacher, p_student, reduction="batchmean")
    per_token = F.kl_div(log_p_teacher, p_student, reduction="none").sum(-1)
    return (per_token * mask).sum() / teacher.shape[0]


def attention_kd_loss(
    teacher_outputs: Sequence[torch.Tensor], student_outputs: Sequence[torch.Tensor], temperature: float = 3.0
) -> torch.Tensor:
    """The summed, equally weighted terms of every tapped block. A non-finite result is an error."""
    if len(teacher_outputs) != len(student_outputs) or not teacher_outputs:
        raise ValueError(f"need equally many block outputs, got {len(teacher_outputs)} and {len(student_outputs)}")
    loss = sum(attention_kd_term(t, s, temperature) for t, s in zip(teacher_outputs, student_outputs))
    check_finite(loss)
    return loss


def check_finite(loss: torch.Tensor) -> None:
    if not torch.isfinite(loss).all():
        raise X2IError(
            f"the distillation loss is {loss.item()}: stopping rather than training on it "
            "(lower the learning rate, or check the inputs for NaN/inf)"
        )


@dataclass
class DistillLoss:
    loss: torch.Tensor  # fp32 scalar, with the student's graph
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TERM_KINDS, 0))  # terms per kind
    sums: dict[str, torch.Tensor | float] = field(default_factory=lambda: dict.fromkeys(TERM_KINDS, 0.0))  # their summed values, detached


@dataclass
class FluxInputs:
    """What teacher and student share in a distillation step: the same noise, time and guidance."""

    latents: torch.Tensor  # packed [B, N, C]
    image_ids: torch.Tensor  # [N, 3]
    timestep: torch.Tensor  # [B], sigma in [0, 1]
    guidance: torch.Tensor | None  # [B] for FLUX models with a guidance embedding

    def run(self, transformer, conditioning: FluxConditioning):
        return transformer(self.latents, timestep=self.timestep, guidance=self.guidance, img_ids=self.image_ids,
                           **conditioning.transformer_kwargs(transformer.dtype, self.latents.shape[1]))


def distillation_loss(
    transformer, taps: AttentionTaps, inputs: FluxInputs, teacher: FluxConditioning, student: FluxConditioning,
    terms: str = "padded", text_pairs: torch.Tensor | None = None,
) -> DistillLoss:
    """One step's loss: the teacher's pass (no gradient), then the student's, compared block by block.

    `terms` (see TERMS) says which outputs are compared; "padded" needs teacher and student text of
    equal length, "words" needs `text_pairs [B, teacher tokens]`: for each teacher text token the
    index of its student token, or -1 where it has none. The loss carries the student's graph:
    call backward on it, then `taps.clear()`."""
    if terms not in TERMS:
        raise ValueError(f"terms must be one of {TERMS}, not {terms!r}")
    if terms == "padded" and teacher.prompt_embeds.shape[1] != student.prompt_embeds.shape[1]:
        raise X2IError(
            f"padded text terms pair teacher token k with student token k, but the teacher reads "
            f"{teacher.prompt_embeds.shape[1]} tokens and the student {student.prompt_embeds.shape[1]}: "
            "give both one length (x2i distill pads T5 and the MLLM to --pad-to), or pair them by words"
        )
    if terms == "words" and (text_pairs is None or text_pairs.shape != teacher.prompt_embeds.shape[:2]):
        raise ValueError("terms='words' needs text_pairs [B, teacher text tokens]")
    num_image_tokens = inputs.latents.shape[1]
    with torch.no_grad(), taps.recording("teacher", terms, num_image_tokens):
        inputs.run(transformer, teacher)
    with taps.recording("student", terms, num_image_tokens, text_pairs) as result:
        inputs.run(transformer, student)
    if result.loss is None:
        raise X2IError("no attention output was compared: the transformer has no tapped blocks")
    check_finite(result.loss)
    return result


class AttentionTaps:
    """Forward hooks on the attention module of every FLUX block, for one frozen transformer that
    serves as both teacher and student (use it through `distillation_loss`).

    While the teacher records, each block's attention output is kept, detached. While the student
    records, as soon as a block's attention produces its output, that block's terms are computed
    against the teacher's and added to the loss; the student's outputs are never collected.

    Gradient checkpointing re-runs each block during the backward pass, which fires the hooks
    again. A hook then recomputes its terms (so the recomputed graph matches the first one) but
    adds nothing: terms accumulate only while the student records, and backward runs after.
    """

    def __init__(self, transformer, temperature: float = 3.0):
        self.temperature = temperature
        self.mode, self.terms, self.num_image_tokens, self.text_pairs, self.compares_text = None, "padded", 0, None, True
        self.teacher_outputs: dict[int, list[torch.Tensor]] = {}
        self.result: DistillLoss | None = None
        double, single = transformer.transformer_blocks, transformer.single_transformer_blocks
        self._handles = [b.attn.register_forward_hook(self._hook(i, "double")) for i, b in enumerate(double)]
        self._handles += [b.attn.register_forward_hook(self._hook(len(double) + i, "single")) for i, b in enumerate(single)]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    @contextlib.contextmanager
    def recording(self, mode: str, terms: str, num_image_tokens: int, text_pairs: torch.Tensor | None = None):
        if mode == "teacher":
            self.teacher_outputs = {}
        self.result = DistillLoss(loss=None)
        self.mode, self.terms, self.num_image_tokens, self.text_pairs = mode, terms, num_image_tokens, text_pairs
        # Text terms exist only where some teacher token has a student token (one check per pass):
        # a batch of captions with no located words compares image tokens only, and says so.
        self.compares_text = terms == "padded" or (terms == "words" and text_pairs is not None and bool((text_pairs >= 0).any()))
        try:
            yield self.result
        finally:
            self.mode = None

    def clear(self) -> None:
        """Drop the teacher's outputs (after the backward pass, which may need them again)."""
        self.teacher_outputs, self.result = {}, None

    def _hook(self, block: int, kind: str):
        def hook(module, args, output):
            outputs = output if isinstance(output, tuple) else (output,)
            if self.mode == "teacher":
                self.teacher_outputs[block] = [o.detach() for o in outputs]
                return
            if block not in self.teacher_outputs or (self.mode is None and not torch.is_grad_enabled()):
                return  # a plain forward (sampling, inference): nothing to compare
            for name, t, s, mask in self._pairs(kind, self.teacher_outputs[block], outputs):
                term = attention_kd_term(t, s, self.temperature, mask)
                if self.mode == "student":
                    self.result.loss = term if self.result.loss is None else self.result.loss + term
                    self.result.counts[name] += 1
                    self.result.sums[name] = self.result.sums[name] + term.detach()  # no device sync per term

        return hook

    def _pairs(self, kind: str, teacher: list[torch.Tensor], student: tuple[torch.Tensor, ...]):
        """(kind of term, teacher output, student output, token mask or None) for one block."""
        n = self.num_image_tokens
        if kind == "double":  # (image stream, text stream)
            yield "double_image", teacher[0], student[0], None
            if self.compares_text:
                yield ("double_text", *self._text(teacher[1], student[1]))
        else:  # single block: text tokens, then image tokens, one joint output
            yield "single_image", teacher[0][:, -n:], student[0][:, -n:], None
            if self.compares_text:
                yield ("single_text", *self._text(teacher[0][:, :-n], student[0][:, :-n]))

    def _text(self, teacher: torch.Tensor, student: torch.Tensor):
        if self.terms == "padded":
            return teacher, student, None
        pairs = self.text_pairs  # "words": the student token of each teacher token, -1 for none
        index = pairs.clamp(min=0)[..., None].expand(-1, -1, student.shape[-1])
        return teacher, student.gather(1, index), (pairs >= 0).to(torch.float32)
