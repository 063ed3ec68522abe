"""The Qwen2.5-VL encoder's prompt format and positions (one-pass equality and batching for every
reader are in test_readers.py)."""

import json

import pytest
import torch
from conftest import random_image

from x2i.errors import X2IError
from x2i.inference.loaders import load_encoder
from x2i.inference.request import Request, format_prompt


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
