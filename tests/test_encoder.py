import json

import pytest
import torch

from conftest import random_image
from x2i.loaders import load_encoder
from x2i.errors import X2IError
from x2i.request import Request, format_prompt


def requests_of_every_kind():
    return [
        Request("a red circle on the left"),
        Request("make the square blue", [random_image(1)]),
        Request("", [random_image(2), random_image(3, size=(56, 28))]),
        Request("ein großes grünes Dreieck oben, und ein kleiner Kreis"),
    ]


def reference_hidden_states(encoder, inputs):
    """What the original X2I code did: generate() and keep the hidden states of its first step."""
    out = encoder.model.generate(
        **inputs, max_new_tokens=2, do_sample=False, output_hidden_states=True, return_dict_in_generate=True
    )
    return torch.stack(out.hidden_states[0], dim=1)


@pytest.mark.parametrize("pad_to", [None, 512])
def test_one_pass_equals_the_first_step_of_generate(encoder, pad_to):
    requests = requests_of_every_kind()
    ours = encoder.encode(requests, pad_to=pad_to)
    reference = reference_hidden_states(encoder, encoder.prepare(requests, pad_to=pad_to))
    assert ours.hidden_states.shape == reference.shape
    assert ours.hidden_states.shape[:2] == (4, encoder.num_hidden_states)
    if pad_to:
        assert ours.hidden_states.shape[2] == pad_to
    torch.testing.assert_close(ours.hidden_states, reference, rtol=0, atol=1e-6)


def test_batching_does_not_change_a_prompts_states(encoder):
    requests = requests_of_every_kind()
    batch = encoder.encode(requests)
    for i, request in enumerate(requests):
        alone = encoder.encode([request])
        n = alone.hidden_states.shape[2]
        assert batch.attention_mask[i].sum() == n
        # left padding: the prompt sits at the end of the batched sequence
        torch.testing.assert_close(batch.hidden_states[i, :, -n:], alone.hidden_states[0], rtol=1e-4, atol=1e-5)


def test_prompts_are_left_padded_and_formatted_as_in_training(encoder):
    requests = [Request("a red circle"), Request("two large purple squares side by side please")]
    inputs = encoder.prepare(requests)
    mask = inputs["attention_mask"]
    assert mask[0, 0] == 0 and mask[0, -1] == 1 and mask[1].all()
    text = encoder.processor.tokenizer.decode(inputs["input_ids"][0][mask[0].bool()])
    assert format_prompt(requests[0]) in text
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")


def test_image_tokens_are_typed_for_m_rope(encoder):
    inputs = encoder.prepare([Request("recolor it", [random_image(1)])])
    image_token = encoder.model.config.image_token_id
    is_image = inputs["input_ids"] == image_token
    assert is_image.sum() > 0
    assert torch.equal(inputs["mm_token_type_ids"].bool(), is_image)
    # M-RoPE: image tokens get 2-D positions, so the position rows differ there
    positions = encoder.position_ids(inputs)
    assert positions.shape[0] == 4
    assert not torch.equal(positions[2][is_image], positions[3][is_image])


def test_images_change_the_states(encoder):
    a = encoder.encode([Request("describe", [random_image(1)])]).hidden_states
    b = encoder.encode([Request("describe", [random_image(2)])]).hidden_states
    assert a.shape == b.shape and not torch.allclose(a, b)


def test_format_prompt():
    assert format_prompt(Request("a cat's hat")) == (
        "{'Text input': \"a cat's hat\", 'Instruction editing description': 'no', 'image input': 'no'}"
    )
    assert format_prompt(Request("make it red", [random_image(0)])) == (
        "{'Text input': 'no', 'Instruction editing description': 'make it red', 'image input': 'yes'}"
    )
    assert format_prompt(Request("", [random_image(0)])) == (
        "{'Text input': 'no', 'Instruction editing description': 'no', 'image input': 'yes'}"
    )


def test_empty_request():
    with pytest.raises(X2IError, match="empty request"):
        Request("   ")


def test_load_encoder_rejects_other_directories(tmp_path, tiny_models):
    with pytest.raises(X2IError, match="no config.json"):
        load_encoder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(X2IError, match="'llama' model; supported MLLM families: qwen2_5_vl"):
        load_encoder(tmp_path)
    with pytest.raises(X2IError, match="no config.json"):
        load_encoder(tiny_models["flux"])
