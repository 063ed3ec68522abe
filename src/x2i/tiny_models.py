"""Tiny, randomly initialised models of the real classes, built locally (no hub), for tests.

They exercise exactly the code paths of the full-size models — the same transformers and diffusers
classes, saved to disk and loaded back through the public loaders — at a size that runs in
seconds on a CPU. Their outputs mean nothing; they are for tests, benchmarks and a smoke run.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from x2i.architectures import (
    build_bpe_tokenizer,
    build_flux_transformer,
    build_flux_vae,
    build_qwen2_5_vl,
    build_qwen_tokenizer,
    mrope_section,
    save_qwen2_5_omni,
    save_qwen2_5_vl,
)
from x2i.inference.alignnet import AlignNet


def build_tiny_qwen2_5_vl(path: str | Path, seed: int = 0, num_layers: int = 2, hidden_size: int = 32) -> Path:
    """Save a tiny random Qwen2.5-VL (model + processor) to `path`; load it like the real one."""
    from transformers import Qwen2VLImageProcessorPil

    tokenizer = build_qwen_tokenizer()
    model = build_qwen2_5_vl(tokenizer, num_layers=num_layers, hidden_size=hidden_size, seed=seed)
    # Small images keep the vision tower cheap: at most 4x4 patches of 14 px, merged 2x2.
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=56 * 56)
    return save_qwen2_5_vl(model, tokenizer, image_processor, path, video_pixels=28 * 28)


# InternVL's -hf tokenizer names its image tokens; the processor reads them from these attributes.
INTERNVL_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}


def build_tiny_internvl(path: str | Path, seed: int = 0, num_layers: int = 2, hidden_size: int = 32) -> Path:
    """Save a tiny random InternVL (InternVL2.5/3 architecture, the transformers `-hf` layout: a
    vision transformer, pixel-shuffle projector and a Qwen2 language model) with its processor."""
    from transformers import (
        GotOcr2ImageProcessorPil,
        InternVLConfig,
        InternVLForConditionalGeneration,
    )

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *INTERNVL_TOKENS.values()]
    tokenizer = build_bpe_tokenizer(specials, extra_special_tokens=INTERNVL_TOKENS)
    image_size, patch_size = 56, 14  # 4x4 patches per tile, pixel-shuffled to 2x2 = 4 tokens
    image_seq_length = (image_size // patch_size) ** 2 // 4
    config = InternVLConfig(
        vision_config=dict(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
            image_size=[image_size, image_size], patch_size=[patch_size, patch_size],
        ),
        text_config=dict(
            model_type="qwen2", vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
            bos_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        ),
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=image_seq_length,
        downsample_ratio=0.5,
    )
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config).eval()
    # Dynamic tiling as InternVL2.5 does it (tiles of the model's image size plus a thumbnail), at most 4 tiles.
    image_processor = GotOcr2ImageProcessorPil(size={"height": image_size, "width": image_size}, crop_to_patches=True, max_patches=4)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    image_processor.save_pretrained(path)
    (Path(path) / "processor_config.json").write_text(json.dumps({"image_seq_length": image_seq_length}))
    return Path(path)


OMNI_TOKENS = {
    "image_token": "<|IMAGE|>", "audio_token": "<|AUDIO|>", "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>", "vision_eos_token": "<|vision_eos|>",
    "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>",
}

# Qwen2.5-Omni's chat template: its system prompt, and a placeholder per image, sound and video.
OMNI_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of "
    "perceiving auditory and visual inputs, as well as generating text and speech.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'audio' %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'video' %}<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_qwen2_5_omni(path: str | Path, seed: int = 0, num_layers: int = 2, hidden_size: int = 32) -> Path:
    """Save a tiny random Qwen2.5-Omni thinker (audio encoder, vision encoder, language model; no
    talker) with its processor parts: tokenizer, image processor, Whisper feature extractor."""
    from transformers import (
        Qwen2_5OmniThinkerConfig,
        Qwen2_5OmniThinkerForConditionalGeneration,
        Qwen2VLImageProcessorPil,
    )

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *OMNI_TOKENS.values()]
    tokenizer = build_bpe_tokenizer(specials, extra_special_tokens=OMNI_TOKENS, chat_template=OMNI_CHAT_TEMPLATE)
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in OMNI_TOKENS.items()}
    num_heads = 4
    config = Qwen2_5OmniThinkerConfig(
        audio_config=dict(
            num_mel_bins=128, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32, d_model=16,
            output_dim=hidden_size, n_window=50,
        ),
        vision_config=dict(
            depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden_size,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[0],
        ),
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=2, max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section(hidden_size, num_heads)},
        ),
        audio_token_index=ids["audio_token"], image_token_index=ids["image_token"], video_token_index=ids["video_token"],
        audio_start_token_id=ids["audio_bos_token"], audio_end_token_id=ids["audio_eos_token"],
        vision_start_token_id=ids["vision_bos_token"], user_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2_5OmniThinkerForConditionalGeneration(config).eval()
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28, max_pixels=56 * 56)
    return save_qwen2_5_omni(model, tokenizer, image_processor, path, video_pixels=28 * 28)


def build_tiny_flux(path: str | Path, seed: int = 0, joint_attention_dim: int = 32, pooled_projection_dim: int = 16, schnell: bool = False) -> Path:
    """Save a tiny random FLUX pipeline (transformer, VAE, scheduler; no T5/CLIP) to `path`, shaped as
    FLUX.1-dev (a guidance embedding; timesteps shifted by resolution) or, with `schnell`, as
    FLUX.1-schnell (no guidance embedding; a fixed shift of 1)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    torch.manual_seed(seed)
    transformer = build_flux_transformer(4, 1, 1, 2, 16, joint_attention_dim, pooled_projection_dim, guidance_embeds=not schnell, axes_dims_rope=(4, 4, 8))
    vae = build_flux_vae((8, 16), 4, 4, 32, shift_factor=0.0609, scaling_factor=1.5035)
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=1.0 if schnell else 3.0, use_dynamic_shifting=not schnell, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096,
    )
    pipe = FluxPipeline(
        scheduler=scheduler, vae=vae, transformer=transformer,
        text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
    )
    pipe.save_pretrained(path)
    return Path(path)


READERS = {"qwen2_5_vl": build_tiny_qwen2_5_vl, "internvl": build_tiny_internvl, "qwen2_5_omni": build_tiny_qwen2_5_omni}


def build_tiny_models(directory: str | Path, seed: int = 0, reader: str = "qwen2_5_vl") -> dict[str, Path]:
    """A matching tiny MLLM (of the `reader` family), FLUX and (random) AlignNet under `directory`:
    mllm/, flux/, alignnet/."""
    directory = Path(directory)
    mllm = READERS[reader](directory / "mllm", seed=seed, num_layers=2, hidden_size=32)
    flux = build_tiny_flux(directory / "flux", seed=seed, joint_attention_dim=32, pooled_projection_dim=16)
    torch.manual_seed(seed)
    alignnet = AlignNet(num_hidden_states=3, hidden_size=32, joint_attention_dim=32, pooled_projection_dim=16, pooling="masked_mean")
    alignnet.save_pretrained(directory / "alignnet")
    return {"mllm": mllm, "flux": flux, "alignnet": directory / "alignnet"}
