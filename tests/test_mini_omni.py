"""The mini Qwen2.5-Omni: the real thinker class, built on a mini Qwen2.5-VL, loaded as the real
one loads; in its first stage only its ears learn, so text and images read exactly as in the
Qwen2.5-VL it came from; in the second its language model listens too, and its eyes never learn."""

import random
import tempfile

import numpy as np
import pytest
import torch
from transformers import AutoImageProcessor

from x2i.architectures import save_qwen2_5_omni
from x2i.errors import X2IError
from x2i.inference.encoders.qwen2_5_omni import Qwen2_5OmniEncoder
from x2i.inference.loaders import load_encoder
from x2i.inference.locations import locate
from x2i.inference.request import Request
from x2i.mini.examples import sample_with_scene
from x2i.mini.mllm import MLLMConfig, batch_loss, micro_batches, train_only
from x2i.mini.omni import (
    CHUNK_SECONDS,
    WHAT_IS_SAID,
    OmniConfig,
    build_omni,
    language_weights,
    listening_example,
    spoken_example,
    train_omni,
)
from x2i.mini.readout import english_word_ids, object_tokens
from x2i.mini.world import IMAGE_SIZE, random_scene, render
from x2i.training.loop import made_ahead, train_loop


@pytest.fixture(scope="module")
def omni(tiny_models, tmp_path_factory):
    config = OmniConfig(vision_language=str(tiny_models["mllm"]), hear_batch=2, hear_steps=2, listen_steps=0, audio_layers=1,
                        audio_width=32, hear_hub_weight=0)  # the tiny tokenizer has no one-token English words: the hub is tested below
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


def test_listening_trains_the_language_model_beside_the_ears_and_never_the_eyes(omni, tmp_path, monkeypatch):
    heard = load_encoder(omni).model.state_dict()
    config = OmniConfig(hear_from=str(omni), seed=1, hear_batch=4, hear_steps=0, listen_steps=2, hear_hub_weight=0, listen_ears_lr=3e-3)
    groups = []
    monkeypatch.setattr("x2i.training.loop.train_loop", lambda *args, **kw: groups.extend(map(dict, args[2])) or train_loop(*args, **kw))
    listened = load_encoder(train_omni(config, tmp_path / "listened", progress=False)).model.state_dict()
    changed = {name.removeprefix("model.").split(".")[0] for name in heard if not torch.equal(heard[name], listened[name])}
    assert changed == {"audio_tower", "language_model", "lm_head"}  # the vision tower as it was
    assert [g.get("lr") for g in groups] == [3e-3, None]  # the ears at their own rate, the language model at --listen-lr
    assert len(groups[0]["params"]) == sum(name.startswith("model.audio_tower.") for name in heard)
    examples = [listening_example(random.Random(k)) for k in range(40)]
    kept = [e for e in examples if not e.request.audio]  # the Qwen2.5-VL's own tasks, with and without pictures
    assert 10 <= len(kept) <= 30 and any(e.request.images for e in kept) and any(not e.request.images for e in kept)


def test_batches_made_ahead_are_those_made_in_turn_and_no_more():
    ahead_rng, in_turn_rng = random.Random(5), random.Random(5)

    def make(rng):
        return [spoken_example(rng, rng.random() < 0.25) for _ in range(2)]

    with made_ahead(lambda: make(ahead_rng), 3) as ahead:
        made = [ahead() for _ in range(3)]
    wanted = [make(in_turn_rng) for _ in range(3)]
    for got, want in zip(made, wanted):
        assert [e.answer for e in got] == [e.answer for e in want]
        assert all(np.array_equal(g.request.audio[0].samples, w.request.audio[0].samples) for g, w in zip(got, want))
    assert ahead_rng.getstate() == in_turn_rng.getstate()  # three made, none for a step that never comes: a later stage's data as in turn


def test_recognition_asks_for_the_words_and_the_task_for_the_scene():
    rng = random.Random(2)
    heard, task = spoken_example(rng, recognize=True), spoken_example(rng, recognize=False)
    assert heard.request.text == WHAT_IS_SAID and heard.answer != task.answer
    assert task.request.text == "" and task.answer.startswith(("a ", "an "))


def test_spoken_languages_are_drawn_by_their_weights_and_bad_weights_are_one_line():
    only_chinese = language_weights("zh=1,en=0")
    said = [spoken_example(random.Random(k), recognize=True, languages=only_chinese).answer for k in range(8)]
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in text) for text in said)  # every caption said in Chinese
    assert language_weights("en=1,zh=1,fr=1,de=1,es=1") == dict.fromkeys(("en", "zh", "fr", "de", "es"), 1.0)
    for bad in ("zh", "xx=1", "zh=-1", "en=0", "zh=a"):
        with pytest.raises(X2IError, match="--spoken-languages"):
            language_weights(bad)


def test_each_spoken_word_has_the_sound_tokens_heard_while_it_is_said(omni):
    encoder = load_encoder(omni)
    example = sample_with_scene(random.Random(3), "audio2image")
    inputs = encoder.prepare([example.request], answers=[example.answer])
    located = object_tokens(encoder, inputs, [example], answered=True)
    sound = (inputs["input_ids"][0] == encoder.model.config.audio_token_id).nonzero().flatten().tolist()
    per_second = len(sound) / example.request.audio[0].duration
    assert 24 <= per_second <= 26  # Qwen2.5-Omni's 25 sound tokens a second
    assert len(located) == len(example.shown) >= 4
    assert [obj for obj, _ in example.shown if len(obj) > 1] == example.scene["objects"]  # each object whole once, as its words end
    words_begin = []  # where each word of the object being said begins
    for (_, positions, obj), (said, (kind, (start, end))) in zip(located, example.shown):
        assert kind == "sound" and obj == said
        first, last = sound.index(positions[0]), sound.index(positions[-1])
        assert positions == sound[first : last + 1]
        assert abs(first - start * per_second) <= 1 and abs(last + 1 - end * per_second) <= 1
        if len(obj) == 1:
            words_begin.append(first)
        else:  # the object's last 3 sound tokens: after every word of it began
            assert len(positions) == 3 and words_begin and first > max(words_begin)
            words_begin = []


def test_the_semantic_hub_reaches_the_ears_through_each_spoken_word():
    model, tokenizer = build_omni(OmniConfig(audio_layers=1, audio_width=32))  # on the shipped mini Qwen2.5-VL: one-token words
    encoder = Qwen2_5OmniEncoder(model, Qwen2_5OmniEncoder.load_processor(
        save_qwen2_5_omni(model, tokenizer, AutoImageProcessor.from_pretrained(locate("mini", "mllm"), backend="pil"),
                          tempfile.mkdtemp(), video_pixels=IMAGE_SIZE**2, chunk_length=CHUNK_SECONDS)))
    ears = train_only(model, model.model.audio_tower.parameters())
    batch = micro_batches(encoder, [sample_with_scene(random.Random(k), "audio2image") for k in range(2)], groups=1)
    loss, shown = batch_loss(model, batch, MLLMConfig(), english_word_ids(tokenizer))
    without, _ = batch_loss(model, batch, MLLMConfig(hub_weight=0), None)
    assert float(shown["hub"]) > 1 and loss.item() == pytest.approx(without.item() + float(shown["hub"]), abs=1e-3)
    loss.backward()
    unreached = [name for name, p in model.model.audio_tower.named_parameters() if p.grad is None or not p.grad.any()]
    assert unreached == ["audio_bos_eos_token.weight"]  # every weight the sound passes through (that one, Qwen2.5-Omni's, is unused)
    assert ears and not model.lm_head.weight.requires_grad
    model.zero_grad()
    mixed, mixed_shown = batch_loss(model, batch, MLLMConfig(), english_word_ids(tokenizer), bf16=True)
    assert mixed.dtype == torch.float32 and mixed.item() == pytest.approx(loss.item(), rel=0.02)  # bf16 autocast: the same loss, roughly
    assert float(mixed_shown["hub"]) == pytest.approx(float(shown["hub"]), rel=0.02)
    mixed.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.model.audio_tower.parameters() if p.grad is not None)
    assert sum(p.grad is not None and bool(p.grad.any()) for p in model.model.audio_tower.parameters()) == len(ears) - 1
