"""What AlignNet reads (condition_on): the request's states, the MLLM's answer read as a prompt, or
both; "auto" by the kind of request, as the AlignNet's own `roads` say."""

import numpy as np
import pytest
import torch
from conftest import random_image

from x2i.errors import X2IError
from x2i.inference.alignnet import AlignNet
from x2i.inference.pipeline import Reading, X2IPipeline
from x2i.inference.request import Request, request_kind
from x2i.inference.session import Session

SMALL = dict(height=32, width=32, num_inference_steps=2)


def same(a, b):
    return torch.equal(a.prompt_embeds, b.prompt_embeds) and torch.equal(a.pooled_prompt_embeds, b.pooled_prompt_embeds)


def with_fixed_answers(pipe, monkeypatch):
    """The pipeline with the MLLM's answers fixed (a tiny random MLLM writes noise), counting calls."""
    calls = []

    def answer(requests, max_new_tokens=128):
        calls.append(len(requests))
        return [f"a large red circle on the left {i}" for i in range(len(requests))]

    monkeypatch.setattr(pipe, "answer", answer)
    pipe.calls = calls
    return pipe


@pytest.fixture
def answering(pipeline, monkeypatch):
    return with_fixed_answers(pipeline, monkeypatch)


def test_the_answer_road_reads_the_answer_as_an_english_prompt(answering):
    request = Request("make it blue", [random_image(3)])
    readings = answering.plan([request], "answer")
    assert readings == [Reading("answer", "a large red circle on the left 0")]
    assert same(answering.encode([request], "answer"), answering.encode([Request(readings[0].answer)], "prompt"))
    assert not same(answering.encode([request], "answer"), answering.encode([request], "prompt"))


def test_prompt_and_answer_are_read_in_one_pass(answering):
    request = Request("ein roter Kreis")
    states = answering.encoder.encode([request], pad_to=answering.pad_to, answers=["a large red circle on the left 0"])
    from x2i.inference.conditioning import condition

    assert same(answering.encode([request], "prompt+answer"), condition(answering.alignnet, states))


def test_a_batch_mixes_roads_and_each_row_reads_its_own(answering):
    requests = [Request("a red circle"), Request("un cercle rouge"), Request("", [random_image(1)])]
    readings = [Reading("prompt"), Reading("answer", "a small blue square"), Reading("prompt+answer", "a red circle")]
    mixed = answering.encode(requests, readings=readings)
    alone = [answering.encode([r], readings=[x]) for r, x in zip(requests, readings)]
    for i, one in enumerate(alone):  # masked pooling: a row does not depend on its batch (up to float sums)
        assert torch.allclose(mixed.pooled_prompt_embeds[i], one.pooled_prompt_embeds[0], atol=1e-5)
    assert answering.calls == []  # readings given: no answer written


def test_an_empty_answer_leaves_the_request_on_the_prompt_road(pipeline, monkeypatch):
    monkeypatch.setattr(pipeline, "answer", lambda requests, max_new_tokens=128: ["" for _ in requests])
    request = Request("a red circle")
    assert pipeline.plan([request], "answer") == [Reading("prompt", "")]
    assert same(pipeline.encode([request], "answer"), pipeline.encode([request], "prompt"))


def test_auto_takes_the_road_the_alignnet_names_for_each_kind(pipeline, answering, monkeypatch):
    assert answering.alignnet.config.roads is None  # like the official checkpoints: the prompt road throughout
    assert [x.road for x in answering.plan([Request("un cercle rouge"), Request("", [random_image(1)])])] == ["prompt", "prompt"]
    roads = {"english": "prompt", "other_language": "answer", "media": "prompt+answer"}
    alignnet = AlignNet.from_config({**pipeline.alignnet.config, "roads": roads})
    alignnet.load_state_dict(pipeline.alignnet.state_dict())
    answering = with_fixed_answers(X2IPipeline(pipeline.encoder, alignnet, pipeline.flux), monkeypatch)
    requests = [Request("a large red circle on the left"), Request("一个大红色圆形在左边"), Request("ein roter Kreis links"),
                Request("", [random_image(1)])]
    assert [x.road for x in answering.plan(requests)] == ["prompt", "answer", "answer", "prompt+answer"]
    assert answering.calls == [3]  # one batched answer for the three that need one
    assert [x.road for x in answering.plan(requests, "prompt")] == ["prompt"] * 4  # told: no auto


def test_request_kinds():
    assert request_kind(Request("a small blue square at the top")) == "english"
    assert [request_kind(Request(t)) for t in ("un petit carré bleu en haut", "ein kleines blaues Quadrat oben",
                                               "un cuadrado azul pequeño arriba", "顶部有一个小蓝色正方形")] == ["other_language"] * 4
    assert request_kind(Request("a red circle", [random_image(1)])) == "media"
    assert request_kind(Request("now make it blue", history=[(Request("a red circle"), "a red circle")])) == "media"


def test_roads_are_checked(pipeline, tiny_models):
    with pytest.raises(X2IError, match="condition_on must be one of auto, prompt, answer, prompt\\+answer"):
        pipeline(Request("x"), condition_on="answers", **SMALL)
    with pytest.raises(X2IError, match="condition_on must be one of"):
        X2IPipeline(pipeline.encoder, pipeline.alignnet, pipeline.flux, condition_on="both")
    with pytest.raises(X2IError, match="AlignNet roads must map english, other_language, media"):
        AlignNet(num_hidden_states=3, hidden_size=8, roads={"chinese": "answer"})
    with pytest.raises(X2IError, match="AlignNet roads must map"):
        AlignNet(num_hidden_states=3, hidden_size=8, roads={"media": "caption"})


def test_a_road_saves_with_the_alignnet(tmp_path):
    roads = {"english": "prompt", "other_language": "answer", "media": "answer"}
    AlignNet(num_hidden_states=3, hidden_size=8, joint_attention_dim=16, pooled_projection_dim=8, roads=roads).save_pretrained(tmp_path)
    assert AlignNet.from_pretrained(tmp_path).config.roads == roads


def test_a_session_keeps_the_answer_its_road_wrote(answering):
    session = Session(answering, answer_tokens=8, condition_on="answer", show_progress=False, **SMALL)
    made = session.send("a red circle")
    assert answering.calls == [1]  # one answer per turn: the road's, not a second one for the history
    assert session.history[0].answer == "a large red circle on the left 0" and len(made) == 1
    session.condition_on = "prompt"
    session.send("make it blue")
    assert answering.calls == [1, 1] and session.history[1].answer == "a large red circle on the left 0"


def test_the_answer_road_makes_other_pictures_than_the_prompt_road(answering):
    request = Request("un cercle rouge")
    a = np.asarray(answering(request, condition_on="prompt", seed=1, **SMALL)[0])
    b = np.asarray(answering(request, condition_on="answer", seed=1, **SMALL)[0])
    assert not np.array_equal(a, b)
