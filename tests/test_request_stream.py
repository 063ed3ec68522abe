"""An AlignNet whose stream is "request": FLUX reads only the request's own tokens (its text, media
and answers), not the chat template, the dict around the text or padding."""

import dataclasses

import pytest
import torch
from conftest import random_image

from x2i.errors import X2IError
from x2i.inference.alignnet import AlignNet
from x2i.inference.conditioning import condition, request_stream, stream_positions
from x2i.inference.pipeline import X2IPipeline
from x2i.inference.request import Request


def own_text(encoder, requests, answers=None):
    """Each row's request tokens: (how many are media tokens, the text of the others)."""
    inputs = encoder.prepare(requests, pad_to=96, answers=answers)
    mask = encoder.request_tokens(requests, inputs, answers)
    assert not (mask & (inputs["attention_mask"] == 0)).any()  # never padding
    media = encoder.model.config.image_token_id
    rows = []
    for ids, keep in zip(inputs["input_ids"], mask):
        ids = ids[keep]
        rows.append((int((ids == media).sum()), encoder.processor.tokenizer.decode(ids[ids != media])))
    return rows


def test_the_request_tokens_are_its_text_media_and_answers_only(encoder):
    image = random_image(1)
    requests = [
        Request("a cat's red hat"),
        Request("make it blue", [image]),
        Request("", [image, random_image(2)]),
        Request("now smaller", history=[(Request("一个红色圆形"), "a red circle")]),
    ]
    image_tokens = int((encoder.prepare([Request("", [image])])["input_ids"] == encoder.model.config.image_token_id).sum())
    assert own_text(encoder, requests) == [
        (0, "a cat's red hat"),
        (image_tokens, "make it blue"),
        (2 * image_tokens, ""),
        (0, "一个红色圆形a red circlenow smaller"),
    ]
    # with an answer after the prompt (the prompt+answer road), the answer is the request's too
    assert own_text(encoder, [Request("a hat")], answers=["a red hat"]) == [(0, "a hata red hat")]


def test_the_stream_keeps_each_rows_tokens_in_order_at_its_end():
    mask = torch.tensor([[0, 1, 0, 1, 1], [0, 0, 1, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    embeds = torch.arange(15.0).reshape(3, 5, 1)
    stream, kept = request_stream(embeds, mask)
    assert stream.shape == (3, 4, 1)
    assert stream[..., 0].tolist() == [[0, 1, 3, 4], [0, 0, 0, 7], [10, 11, 12, 13]]
    assert kept.tolist() == [[False, True, True, True], [False, False, False, True], [True] * 4]
    assert stream_positions(mask).tolist() == [[-1, 1, -1, 2, 3], [-1, -1, 3, -1, -1], [0, 1, 2, 3, -1]]


@pytest.fixture(scope="module")
def request_pipeline(tiny_models):
    pipe = X2IPipeline.from_pretrained(tiny_models["mllm"], tiny_models["flux"], tiny_models["alignnet"])
    config = dict(pipe.alignnet.config)
    config.update(stream="request", refiner_layers=1)
    torch.manual_seed(0)
    pipe.alignnet = AlignNet(**{k: v for k, v in config.items() if not k.startswith("_")}).eval()
    return pipe


def test_flux_reads_only_the_request_and_a_picture_does_not_depend_on_its_neighbours(request_pipeline):
    pipe = request_pipeline
    short, long = Request("a red circle"), Request("a big blue square at the top and a small green star", [random_image(3)])
    alone = pipe.encode([short], "prompt")
    both = pipe.encode([short, long], "prompt")
    words = len(pipe.encoder.processor.tokenizer(" red circle").input_ids) + 1  # "a", " red circle"
    assert alone.text_mask.all() and alone.prompt_embeds.shape[1] == words
    assert both.text_mask[0].sum() == words and both.prompt_embeds.shape[1] > words
    transformer, n = pipe.flux.transformer, 16
    latents = torch.randn(1, n, transformer.config.in_channels, generator=torch.Generator().manual_seed(0))
    ids = torch.zeros(n, 3)

    def velocity(conditioning, rows):
        kwargs = conditioning.transformer_kwargs(transformer.dtype, n)
        return transformer(latents.expand(rows, -1, -1), timestep=torch.full((rows,), 0.5), img_ids=ids,
                           guidance=torch.full((rows,), 3.5) if transformer.config.guidance_embeds else None, **kwargs).sample
    # the short request's velocity alone and beside a longer one (which pads its stream): the same
    torch.testing.assert_close(velocity(both, 2)[:1], velocity(alone, 1), atol=1e-5, rtol=1e-4)
    images = pipe([short, long], height=32, width=32, num_inference_steps=2, condition_on="prompt")
    assert len(images) == 2


def test_the_stream_needs_the_request_tokens(request_pipeline):
    states = request_pipeline.encoder.encode([Request("a red circle")])
    with pytest.raises(ValueError, match="request_tokens=True"):
        condition(request_pipeline.alignnet, states)
    with pytest.raises(X2IError, match="stream must be"):
        AlignNet(num_hidden_states=3, hidden_size=8, stream="some")
    with pytest.raises(X2IError, match="with stream 'request' only"):
        AlignNet(num_hidden_states=3, hidden_size=8, registers=2)


def test_registers_and_closing_tokens_join_the_stream_and_survive_saving(request_pipeline, tmp_path):
    encoder, base = request_pipeline.encoder, request_pipeline.alignnet
    config = {k: v for k, v in base.config.items() if not k.startswith("_")}
    alignnet = AlignNet(**{**config, "closing_tokens": 2, "registers": 3}).eval()
    states = encoder.encode([Request("a red circle"), Request("make it blue", [random_image(1)])], request_tokens=True)
    conditioning = condition(alignnet, states)
    own = states.request_mask.sum(1)
    assert conditioning.text_mask.sum(1).tolist() == (own + 2 + 3).tolist()  # no request ends its prompt
    assert torch.equal(conditioning.prompt_embeds[:, :3], alignnet.register_tokens.expand(2, -1, -1))
    alignnet.save_pretrained(tmp_path)
    loaded = AlignNet.from_pretrained(tmp_path).eval()
    assert (loaded.config.registers, loaded.config.closing_tokens) == (3, 2)
    torch.testing.assert_close(condition(loaded, states).prompt_embeds, conditioning.prompt_embeds)


def test_distillation_pairs_words_with_their_places_in_the_request_stream():
    """With --stream request, a T5 word is paired with the place its MLLM token takes in FLUX's
    shorter stream."""
    from x2i.training.distill import DistillConfig, load_models, make_inputs, with_defaults

    config = with_defaults(DistillConfig(prompts="-", out="-", pad_to=128))
    models = load_models(config, torch.device("cpu"))
    captions = ["a red circle on the left", "a big blue square"]
    *_, states, pairs = make_inputs(models, config, captions, [1, 2], torch.device("cpu"))
    streamed = dataclasses.replace(config, stream="request")
    *_, request_states, request_pairs = make_inputs(models, streamed, captions, [1, 2], torch.device("cpu"))
    positions = stream_positions(request_states.request_mask | (torch.arange(128) >= 128 - config.closing_tokens))
    for row in range(2):
        words = pairs[row][pairs[row] >= 0]
        assert torch.equal(request_pairs[row][request_pairs[row] >= 0], positions[row, words])
        assert request_states.request_mask[row, words].all()  # every paired word is a request token
    registers = dataclasses.replace(streamed, registers=3)
    *_, registers_pairs = make_inputs(models, registers, captions, [1, 2], torch.device("cpu"))
    assert torch.equal(registers_pairs, torch.where(request_pairs >= 0, request_pairs + 3, -1))  # after the registers
    with pytest.raises(X2IError, match="--prompt-dropout"):
        from x2i.training.distill import distill

        distill(dataclasses.replace(streamed, prompt_dropout=0.5, prompts="p.txt", out="o"))
