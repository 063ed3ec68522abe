"""The mini Qwen2.5-Omni: the real thinker class, built on a mini Qwen2.5-VL, loaded as the real
one loads; only its ears learn, so text and images read exactly as in the Qwen2.5-VL it came from."""

import random

import pytest
import torch

from x2i.inference.loaders import load_encoder
from x2i.inference.request import Request
from x2i.mini.examples import sample_with_scene
from x2i.mini.omni import (
    WHAT_IS_SAID,
    OmniConfig,
    build_omni,
    spoken_example,
    train_omni,
)
from x2i.mini.world import random_scene, render


@pytest.fixture(scope="module")
def omni(tiny_models, tmp_path_factory):
    config = OmniConfig(vision_language=str(tiny_models["mllm"]), hear_batch=2, align_steps=2, hear_steps=2, audio_layers=1, audio_width=32)
    return train_omni(config, tmp_path_factory.mktemp("omni") / "omni", progress=False)


def test_it_loads_as_the_real_thinker_and_hears(omni):
    encoder = load_encoder(omni)
    assert type(encoder.model).__name__ == "Qwen2_5OmniThinkerForConditionalGeneration"
    rng = random.Random(0)
    a, b = (sample_with_scene(rng, "audio2image").request for _ in range(2))
    states = [encoder.encode([r]).hidden_states[0, -1, -1] for r in (a, b)]
    assert not torch.allclose(*states)  # what is said reaches the last state


def test_text_and_images_read_as_in_the_qwen2_5_vl_it_came_from(omni, tiny_models):
    ears, eyes = load_encoder(omni), load_encoder(tiny_models["mllm"])
    image = render(random_scene(random.Random(1)), random.Random(1))
    for request in (Request("a red circle on the left"), Request("make it blue", [image]), Request("", [image, image])):
        assert ears.prompt_text(request) == eyes.prompt_text(request)
        torch.testing.assert_close(ears.encode([request]).hidden_states, eyes.encode([request]).hidden_states, rtol=0, atol=0)


def test_only_the_ears_learned(omni, tiny_models):
    trained, source = load_encoder(omni).model.state_dict(), load_encoder(tiny_models["mllm"]).model.state_dict()
    built = OmniConfig(vision_language=str(tiny_models["mllm"]), audio_layers=1, audio_width=32)
    untrained = build_omni(built)[0].state_dict()
    ears = [name for name in trained if name.startswith("model.audio_tower.")]
    assert ears and any(not torch.equal(trained[name], untrained[name]) for name in ears)
    for name, value in source.items():
        if "attn.qkv" not in name:  # the Omni vision tower keeps q, k and v apart
            assert torch.equal(trained[name][: len(value)], value), name


def test_recognition_asks_for_the_words_and_the_task_for_the_scene():
    rng = random.Random(2)
    heard, task = spoken_example(rng, recognize=True), spoken_example(rng, recognize=False)
    assert heard.request.text == WHAT_IS_SAID and heard.answer != task.answer
    assert task.request.text == "" and task.answer.startswith(("a ", "an "))
