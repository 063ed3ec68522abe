import math

import pytest
import torch

from x2i.distill import attention_kd_loss, attention_kd_term
from x2i.errors import X2IError


def reference_term(teacher, student, temperature):
    """The method's term written out with plain loops over batch and tokens, in float64."""
    total = 0.0
    for b in range(teacher.shape[0]):
        for n in range(teacher.shape[1]):
            def probs(x):
                x = x.double()
                z = (x - x.mean()) / (1e-7 + x.std(unbiased=True))
                return torch.softmax(z / temperature, dim=0)

            p_s, p_t = probs(student[b, n]), probs(teacher[b, n])
            total += float((p_s * (p_s.log() - p_t.log())).sum())
    return total / teacher.shape[0]


def test_term_matches_the_method_exactly():
    g = torch.Generator().manual_seed(0)
    teacher, student = torch.randn(3, 5, 16, generator=g), torch.randn(3, 5, 16, generator=g)
    assert math.isclose(attention_kd_term(teacher, student, 3.0).item(), reference_term(teacher, student, 3.0), rel_tol=1e-5)
    assert attention_kd_term(teacher, teacher, 3.0).abs().item() < 1e-6


def test_loss_is_the_sum_of_terms_and_computed_in_fp32():
    g = torch.Generator().manual_seed(1)
    teachers = [torch.randn(2, 4, 8, generator=g) for _ in range(3)]
    students = [torch.randn(2, 4, 8, generator=g, requires_grad=True) for _ in range(3)]
    loss = attention_kd_loss(teachers, students)
    assert loss.dtype == torch.float32
    assert math.isclose(loss.item(), sum(reference_term(t, s.detach(), 3.0) for t, s in zip(teachers, students)), rel_tol=1e-5)
    loss.backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in students)
    bf16 = attention_kd_loss([t.bfloat16() for t in teachers], [s.detach().bfloat16() for s in students])
    assert bf16.dtype == torch.float32


def test_non_finite_loss_stops_with_a_clear_error():
    teacher = torch.randn(1, 2, 8)
    student = torch.randn(1, 2, 8)
    student[0, 0, 0] = float("nan")
    with pytest.raises(X2IError, match="distillation loss is nan"):
        attention_kd_loss([teacher], [student])
