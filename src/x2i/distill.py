"""Attention distillation: the loss that pulls FLUX-conditioned-by-MLLM toward FLUX-conditioned-by-T5.

For each tapped attention output (reference notes, section 4): z-score over channels (unbiased
std), divide by the temperature, softmax over channels, and take KL(p_student || p_teacher),
summed over tokens and divided by the batch. Always in fp32: the original computed it in bf16 and
silently skipped the terms that came out non-finite.
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import torch
import torch.nn.functional as F

from x2i.errors import X2IError


def _zscore(x: torch.Tensor) -> torch.Tensor:
    x = x.float()
    return (x - x.mean(dim=-1, keepdim=True)) / (1e-7 + x.std(dim=-1, keepdim=True))


def attention_kd_term(teacher: torch.Tensor, student: torch.Tensor, temperature: float = 3.0) -> torch.Tensor:
    """One block's term for outputs `[B, N, D]` (the teacher's carries no gradient)."""
    if teacher.shape != student.shape:
        raise ValueError(f"teacher output {tuple(teacher.shape)} and student output {tuple(student.shape)} differ")
    log_p_teacher = F.log_softmax(_zscore(teacher.detach()) / temperature, dim=-1)
    p_student = F.softmax(_zscore(student) / temperature, dim=-1)
    # kl_div(input=log q, target=p) = sum p * (log p - log q) = KL(p || q); batchmean divides by B.
    return F.kl_div(log_p_teacher, p_student, reduction="batchmean")


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


# ---- taps on FLUX's attention modules ------------------------------------------------------------


class AttentionTaps:
    """Forward hooks on the attention module of every FLUX block, for one frozen transformer that
    serves as both teacher and student.

    Run the teacher first inside `teacher()`: each block's attention output is kept, detached. Then
    run the student inside `student()`: as soon as a block's attention produces its output, that
    block's terms are computed against the teacher's and added to `loss`; the student's outputs are
    never collected. Double-stream blocks give an image and a text term; single-stream blocks one
    joint term (text + image tokens).

    Text-stream terms compare T5 token k with MLLM token k, so they need sequences of equal length
    (512 and 512 in the original recipe). When the lengths differ (the mini world: T5 reads 32
    tokens, the MLLM's prompts are longer), only image tokens are compared.

    Gradient checkpointing re-runs each block during the backward pass, which fires the hooks
    again. A hook then recomputes its term (so the recomputed graph matches the first one) but adds
    nothing to `loss`: it only accumulates while `student()` is open, and backward runs after.
    """

    def __init__(self, transformer, temperature: float = 3.0):
        self.temperature = temperature
        self.mode = None
        self.teacher_outputs: dict[int, list[torch.Tensor]] = {}
        self.loss = None
        self.num_terms = 0
        self.num_image_tokens = None
        attentions = [b.attn for b in transformer.transformer_blocks] + [b.attn for b in transformer.single_transformer_blocks]
        self._handles = [a.register_forward_hook(self._hook(i)) for i, a in enumerate(attentions)]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def teacher(self, num_image_tokens: int):
        self.teacher_outputs = {}
        return self._mode("teacher", num_image_tokens)

    def student(self, num_image_tokens: int):
        self.loss, self.num_terms = None, 0
        return self._mode("student", num_image_tokens)

    @contextlib.contextmanager
    def _mode(self, mode: str, num_image_tokens: int):
        self.mode, self.num_image_tokens = mode, num_image_tokens
        try:
            yield
        finally:
            self.mode = None

    def clear(self) -> None:
        """Drop the teacher's outputs (after the backward pass, which may need them again)."""
        self.teacher_outputs, self.loss = {}, None

    def _hook(self, block: int):
        def hook(module, args, output):
            if self.mode == "teacher":
                self.teacher_outputs[block] = [o.detach() for o in (output if isinstance(output, tuple) else (output,))]
                return
            if block not in self.teacher_outputs or (self.mode is None and not torch.is_grad_enabled()):
                return  # a plain forward (sampling, inference): nothing to compare
            terms = [attention_kd_term(t, s, self.temperature) for t, s in self._pairs(self.teacher_outputs[block], output)]
            if self.mode == "student":
                for term in terms:
                    self.loss = term if self.loss is None else self.loss + term
                self.num_terms += len(terms)

        return hook

    def _pairs(self, teacher: list[torch.Tensor], output):
        n = self.num_image_tokens
        if isinstance(output, tuple):  # double-stream block: (image, text)
            image, text = output[:2]
            yield teacher[0], image
            if teacher[1].shape == text.shape:
                yield teacher[1], text
        elif teacher[0].shape == output.shape:  # single-stream block: text tokens, then image tokens
            yield teacher[0], output
        else:
            yield teacher[0][:, -n:], output[:, -n:]
