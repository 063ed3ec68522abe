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


# ---- taps on a real (tiny) FluxTransformer2DModel ----------------------------------------------

from diffusers import FluxTransformer2DModel  # noqa: E402

from x2i.distill import AttentionTaps  # noqa: E402


def tiny_transformer():
    torch.manual_seed(0)
    return FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=2, num_single_layers=3, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=12, pooled_projection_dim=6, axes_dims_rope=(2, 2, 4), guidance_embeds=True,
    ).requires_grad_(False).eval()


def run_pair(transformer, student_text_len=7, checkpointing=False):
    """Teacher then student through the taps; returns (loss, number of terms, grad of the student's
    conditioning)."""
    g = torch.Generator().manual_seed(1)
    latents, img_ids = torch.randn(2, 16, 16, generator=g), torch.zeros(16, 3)
    img_ids[:, 1], img_ids[:, 2] = torch.arange(16) // 4, torch.arange(16) % 4
    teacher_text, teacher_pooled = torch.randn(2, 7, 12, generator=g), torch.randn(2, 6, generator=g)
    student_text = torch.randn(2, student_text_len, 12, generator=g).requires_grad_(True)
    student_pooled = torch.randn(2, 6, generator=g).requires_grad_(True)
    t, guidance = torch.full((2,), 0.7), torch.full((2,), 3.5)
    if checkpointing:
        transformer.enable_gradient_checkpointing()
    taps = AttentionTaps(transformer, temperature=3.0)
    fires = []
    transformer.transformer_blocks[0].attn.register_forward_hook(lambda *_: fires.append(1))
    with torch.no_grad(), taps.teacher(16):
        transformer(latents, encoder_hidden_states=teacher_text, pooled_projections=teacher_pooled, timestep=t,
                    img_ids=img_ids, txt_ids=torch.zeros(7, 3), guidance=guidance)
    with taps.student(16):
        transformer(latents, encoder_hidden_states=student_text, pooled_projections=student_pooled, timestep=t,
                    img_ids=img_ids, txt_ids=torch.zeros(student_text_len, 3), guidance=guidance)
    loss, terms = taps.loss, taps.num_terms
    loss.backward()
    taps.remove()
    run_pair.fires = len(fires)
    return loss.detach(), terms, student_text.grad.clone(), student_pooled.grad.clone()


def collected_outputs(transformer, encoder_hidden_states, pooled, **kwargs):
    """Every block's attention output, gathered the plain way (a list), for the reference loss."""
    outputs = []
    handles = [b.attn.register_forward_hook(lambda m, a, o: outputs.extend(o if isinstance(o, tuple) else (o,)))
               for b in list(transformer.transformer_blocks) + list(transformer.single_transformer_blocks)]
    transformer(encoder_hidden_states=encoder_hidden_states, pooled_projections=pooled, **kwargs)
    for h in handles:
        h.remove()
    return outputs


def test_taps_give_the_method_loss_over_every_block():
    transformer = tiny_transformer()
    loss, terms, _, _ = run_pair(transformer)
    assert terms == 2 * 2 + 3  # image + text stream per double block, one joint term per single block

    g = torch.Generator().manual_seed(1)
    latents, img_ids = torch.randn(2, 16, 16, generator=g), torch.zeros(16, 3)
    img_ids[:, 1], img_ids[:, 2] = torch.arange(16) // 4, torch.arange(16) % 4
    teacher_text, teacher_pooled = torch.randn(2, 7, 12, generator=g), torch.randn(2, 6, generator=g)
    student_text, student_pooled = torch.randn(2, 7, 12, generator=g), torch.randn(2, 6, generator=g)
    common = dict(hidden_states=latents, timestep=torch.full((2,), 0.7), img_ids=img_ids, txt_ids=torch.zeros(7, 3), guidance=torch.full((2,), 3.5))
    with torch.no_grad():
        teacher = collected_outputs(transformer, teacher_text, teacher_pooled, **common)
        student = collected_outputs(transformer, student_text, student_pooled, **common)
    assert len(teacher) == terms
    assert torch.allclose(loss, attention_kd_loss(teacher, student, 3.0), rtol=1e-5)


def test_taps_are_correct_under_gradient_checkpointing():
    """Recomputation fires the hooks again: the loss must not double and the gradients must match."""
    plain = run_pair(tiny_transformer())
    assert run_pair.fires == 2  # teacher, student
    checkpointed = run_pair(tiny_transformer(), checkpointing=True)
    assert run_pair.fires == 3  # teacher, student, and again when the backward pass recomputes the block
    assert checkpointed[1] == plain[1]
    assert torch.allclose(checkpointed[0], plain[0], rtol=1e-6)
    assert torch.allclose(checkpointed[2], plain[2], atol=1e-6) and plain[2].abs().sum() > 0
    assert torch.allclose(checkpointed[3], plain[3], atol=1e-6) and plain[3].abs().sum() > 0


def test_taps_compare_image_tokens_when_text_lengths_differ():
    """T5 (7 tokens) vs a longer MLLM prompt (11): no text-stream terms; joint outputs cut to image tokens."""
    loss, terms, text_grad, _ = run_pair(tiny_transformer(), student_text_len=11)
    assert terms == 2 + 3
    assert torch.isfinite(loss) and text_grad.abs().sum() > 0


def test_taps_ignore_plain_forwards():
    transformer = tiny_transformer()
    taps = AttentionTaps(transformer)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        transformer(torch.randn(1, 16, 16, generator=g), encoder_hidden_states=torch.randn(1, 7, 12, generator=g),
                    pooled_projections=torch.randn(1, 6, generator=g), timestep=torch.ones(1), img_ids=torch.zeros(16, 3),
                    txt_ids=torch.zeros(7, 3), guidance=torch.ones(1))
    assert taps.loss is None and taps.num_terms == 0 and taps.teacher_outputs == {}
