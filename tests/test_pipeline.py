import json
import shutil

import numpy as np
import pytest
import torch
from conftest import random_image

from x2i.errors import X2IError
from x2i.inference.alignnet import AlignNet
from x2i.inference.loaders import load_flux
from x2i.inference.pipeline import X2IPipeline
from x2i.inference.request import Request

SMALL = dict(height=32, width=32, num_inference_steps=3)


def pixels(images):
    return [np.asarray(im) for im in images]


def test_same_seed_same_image_other_seed_other_image(pipeline):
    request = Request("a red circle")
    a = pixels(pipeline(request, seed=7, **SMALL))
    b = pixels(pipeline(request, seed=7, **SMALL))
    c = pixels(pipeline(request, seed=8, **SMALL))
    assert np.array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_sizes_and_number_of_images(pipeline):
    images = pipeline(Request("two squares", [random_image(4)]), height=32, width=48, num_inference_steps=2, num_images_per_prompt=3)
    assert [im.size for im in images] == [(48, 32)] * 3
    assert not np.array_equal(*pixels(images[:2]))


def test_the_request_conditions_the_image(pipeline):
    a = pixels(pipeline(Request("a red circle"), seed=0, **SMALL))[0]
    b = pixels(pipeline(Request("a blue square"), seed=0, **SMALL))[0]
    assert not np.array_equal(a, b)


def test_flux_runs_as_diffusers_flux_pipeline_with_alignnet_conditioning(pipeline):
    """X2I adds nothing to FLUX's own loop: the same tensors through FluxPipeline give the same image."""
    request = Request("a green triangle")
    ours = pixels(pipeline(request, seed=3, **SMALL))[0]
    cond = pipeline.encode([request])
    direct = pipeline.flux(
        prompt_embeds=cond.prompt_embeds,
        pooled_prompt_embeds=cond.pooled_prompt_embeds,
        generator=torch.Generator().manual_seed(3),
        guidance_scale=3.5,
        **SMALL,
    ).images[0]
    assert np.array_equal(ours, np.asarray(direct))


def test_t5_and_clip_are_never_loaded(pipeline, tiny_models, tmp_path):
    assert pipeline.flux.text_encoder is None and pipeline.flux.text_encoder_2 is None
    # A FLUX directory that lists T5 and CLIP (here pointing at folders that do not even exist) loads
    # without them.
    flux_dir = tmp_path / "flux-with-text-encoders"
    shutil.copytree(tiny_models["flux"], flux_dir)
    index = json.loads((flux_dir / "model_index.json").read_text())
    index.update(text_encoder=["transformers", "CLIPTextModel"], text_encoder_2=["transformers", "T5EncoderModel"])
    (flux_dir / "model_index.json").write_text(json.dumps(index))
    flux = load_flux(flux_dir)
    assert flux.text_encoder is None and flux.text_encoder_2 is None


def test_sizes_flux_cannot_take(pipeline):
    for h, w in [(33, 32), (32, 30), (0, 32)]:
        with pytest.raises(X2IError, match="multiples of 4"):
            pipeline(Request("x"), height=h, width=w, num_inference_steps=1)


def test_alignnet_that_does_not_fit(pipeline):
    wrong_mllm = AlignNet(num_hidden_states=7, hidden_size=32, joint_attention_dim=32, pooled_projection_dim=16)
    with pytest.raises(X2IError, match="reads 7 hidden states of size 32, but the MLLM gives 3"):
        X2IPipeline(pipeline.encoder, wrong_mllm, pipeline.flux)
    wrong_flux = AlignNet(num_hidden_states=3, hidden_size=32)
    with pytest.raises(X2IError, match="joint_attention_dim 32"):
        X2IPipeline(pipeline.encoder, wrong_flux, pipeline.flux)


def test_load_flux_rejects_other_directories(tiny_models, tmp_path):
    with pytest.raises(X2IError, match="no model_index.json"):
        load_flux(tiny_models["mllm"])
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(X2IError, match="not a FLUX one"):
        load_flux(tmp_path)


def test_prompts_are_padded_as_the_alignnet_was_trained(pipeline):
    config = {**pipeline.alignnet.config, "pad_to": 300}
    padded = X2IPipeline(pipeline.encoder, AlignNet.from_config(config), pipeline.flux)
    assert padded.encode([Request("a red circle")]).prompt_embeds.shape[1] == 300
    unpadded = X2IPipeline(pipeline.encoder, AlignNet.from_config(config), pipeline.flux, pad_to=0)
    n = unpadded.encode([Request("a red circle")]).prompt_embeds.shape[1]
    assert 0 < n < 300
    # a batch whose prompts are longer than pad_to keeps them whole
    short = X2IPipeline(pipeline.encoder, AlignNet.from_config(config), pipeline.flux, pad_to=n + 5)
    long_text = "a red circle " * 30
    out = short.encode([Request("a red circle"), Request(long_text)])
    assert out.prompt_embeds.shape[1] == unpadded.encode([Request(long_text)]).prompt_embeds.shape[1] > n + 5
