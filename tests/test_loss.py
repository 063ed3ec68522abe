import math

import pytest
import torch

from x2i.errors import X2IError
from x2i.training.loss import attention_kd_loss, attention_kd_term


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


# ---- the distillation loss on a real (tiny) FluxTransformer2DModel ----------------------------

from typing import NamedTuple  # noqa: E402

from diffusers import FluxTransformer2DModel  # noqa: E402

from x2i.inference.conditioning import FluxConditioning  # noqa: E402
from x2i.training.loss import AttentionTaps, FluxInputs, distillation_loss  # noqa: E402


def tiny_transformer():
    torch.manual_seed(0)
    return FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=2, num_single_layers=3, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=12, pooled_projection_dim=6, axes_dims_rope=(2, 2, 4), guidance_embeds=True,
    ).requires_grad_(False).eval()


class Batch(NamedTuple):
    inputs: FluxInputs
    teacher: FluxConditioning
    student: FluxConditioning


def make_batch(student_text_len=7) -> Batch:
    g = torch.Generator().manual_seed(1)
    latents, img_ids = torch.randn(2, 16, 16, generator=g), torch.zeros(16, 3)
    img_ids[:, 1], img_ids[:, 2] = torch.arange(16) // 4, torch.arange(16) % 4
    inputs = FluxInputs(latents, img_ids, timestep=torch.full((2,), 0.7), guidance=torch.full((2,), 3.5))
    teacher = FluxConditioning(torch.randn(2, 7, 12, generator=g), torch.randn(2, 6, generator=g))
    student = FluxConditioning(torch.randn(2, student_text_len, 12, generator=g).requires_grad_(True), torch.randn(2, 6, generator=g).requires_grad_(True))
    return Batch(inputs, teacher, student)


class Result(NamedTuple):
    loss: torch.Tensor
    counts: dict
    text_grad: torch.Tensor
    pooled_grad: torch.Tensor
    fires: int  # how often block 0's attention ran


def run_step(transformer, batch: Batch, terms="padded", text_pairs=None, checkpointing=False) -> Result:
    """One distillation step through `distillation_loss`, then backward."""
    if checkpointing:
        transformer.enable_gradient_checkpointing()
    taps = AttentionTaps(transformer, temperature=3.0)
    fires = []
    transformer.transformer_blocks[0].attn.register_forward_hook(lambda *_: fires.append(1))
    result = distillation_loss(transformer, taps, batch.inputs, batch.teacher, batch.student, terms, text_pairs)
    result.loss.backward()
    taps.clear()
    taps.remove()
    return Result(result.loss.detach(), result.counts, batch.student.prompt_embeds.grad.clone(), batch.student.pooled_prompt_embeds.grad.clone(), len(fires))


def collected_outputs(transformer, conditioning: FluxConditioning, inputs: FluxInputs):
    """Every block's attention output, gathered the plain way (a list), for the reference loss."""
    outputs = []
    handles = [b.attn.register_forward_hook(lambda m, a, o: outputs.extend(o if isinstance(o, tuple) else (o,)))
               for b in list(transformer.transformer_blocks) + list(transformer.single_transformer_blocks)]
    with torch.no_grad():
        inputs.run(transformer, conditioning)
    for h in handles:
        h.remove()
    return outputs


def test_distillation_loss_is_the_method_loss_over_every_block():
    transformer, batch = tiny_transformer(), make_batch()
    result = run_step(transformer, batch)
    # image + text stream per double block; each single block's joint output counted as its text and image parts
    assert result.counts == {"double_image": 2, "double_text": 2, "single_image": 3, "single_text": 3}
    teacher = collected_outputs(transformer, batch.teacher, batch.inputs)
    student = collected_outputs(transformer, batch.student, batch.inputs)
    assert len(teacher) == 2 * 2 + 3
    assert torch.allclose(result.loss, attention_kd_loss(teacher, student, 3.0), rtol=1e-5)


def test_distillation_loss_is_correct_under_gradient_checkpointing():
    """Recomputation fires the hooks again: the loss must not double and the gradients must match."""
    plain = run_step(tiny_transformer(), make_batch())
    assert plain.fires == 2  # teacher, student
    checkpointed = run_step(tiny_transformer(), make_batch(), checkpointing=True)
    assert checkpointed.fires == 3  # teacher, student, and again when the backward pass recomputes the block
    assert checkpointed.counts == plain.counts
    assert torch.allclose(checkpointed.loss, plain.loss, rtol=1e-6)
    assert torch.allclose(checkpointed.text_grad, plain.text_grad, atol=1e-6) and plain.text_grad.abs().sum() > 0
    assert torch.allclose(checkpointed.pooled_grad, plain.pooled_grad, atol=1e-6) and plain.pooled_grad.abs().sum() > 0


def test_text_terms_of_different_lengths_are_an_error_never_dropped():
    """T5 (7 tokens) vs a longer MLLM prompt (11): padded pairing refuses; image-only is a choice."""
    transformer = tiny_transformer()
    with pytest.raises(X2IError, match="teacher reads 7 tokens and the student 11"):
        run_step(transformer, make_batch(student_text_len=11), terms="padded")
    image = run_step(transformer, make_batch(student_text_len=11), terms="image")
    assert image.counts == {"double_image": 2, "double_text": 0, "single_image": 3, "single_text": 0}
    assert torch.isfinite(image.loss) and image.text_grad.abs().sum() > 0


def test_word_pairs_compare_each_teacher_token_with_its_student_token():
    transformer = tiny_transformer()
    # Student token 2k+1 reads what teacher token k reads; teacher token 6 has no counterpart.
    pairs = torch.tensor([[1, 3, 5, 7, 9, 11, -1]] * 2)
    batch = make_batch(student_text_len=12)
    words = run_step(transformer, batch, terms="words", text_pairs=pairs)
    assert words.counts == {"double_image": 2, "double_text": 2, "single_image": 3, "single_text": 3}
    # The text terms gather exactly those tokens: a loss computed by hand over them agrees.
    teacher = collected_outputs(transformer, batch.teacher, batch.inputs)
    student = collected_outputs(transformer, batch.student, batch.inputs)
    n, keep = 16, torch.tensor([1, 3, 5, 7, 9, 11])
    expected = sum(attention_kd_term(t, s) for t, s in zip(teacher[0::2][:2], student[0::2][:2]))  # double image
    expected += sum(attention_kd_term(t[:, :6], s[:, keep]) for t, s in zip(teacher[1:4:2], student[1:4:2]))  # double text
    expected += sum(attention_kd_term(t[:, -n:], s[:, -n:]) + attention_kd_term(t[:, :6], s[:, keep]) for t, s in zip(teacher[4:], student[4:]))
    assert torch.allclose(words.loss, expected, rtol=1e-5)
    assert words.text_grad[:, keep].abs().sum() > 0


def test_captions_without_located_words_compare_image_tokens_only():
    """No teacher token has a student token (e.g. captions whose quotes move their characters):
    no text term is made or counted, and the image terms still train."""
    transformer = tiny_transformer()
    result = run_step(transformer, make_batch(student_text_len=12), terms="words", text_pairs=torch.full((2, 7), -1))
    assert result.counts == {"double_image": 2, "double_text": 0, "single_image": 3, "single_text": 0}
    assert torch.isfinite(result.loss) and result.loss > 0


def test_taps_ignore_plain_forwards():
    transformer = tiny_transformer()
    taps = AttentionTaps(transformer)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        transformer(torch.randn(1, 16, 16, generator=g), encoder_hidden_states=torch.randn(1, 7, 12, generator=g),
                    pooled_projections=torch.randn(1, 6, generator=g), timestep=torch.ones(1), img_ids=torch.zeros(16, 3),
                    txt_ids=torch.zeros(7, 3), guidance=torch.ones(1))
    assert taps.result is None and taps.teacher_outputs == {}
