"""Attention distillation: the loss that pulls FLUX-conditioned-by-MLLM toward FLUX-conditioned-by-T5.

For each tapped attention output (reference notes, section 4): z-score over channels (unbiased
std), divide by the temperature, softmax over channels, and take KL(p_student || p_teacher),
summed over tokens and divided by the batch. Always in fp32: the original computed it in bf16 and
silently skipped the terms that came out non-finite.
"""

from __future__ import annotations

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
