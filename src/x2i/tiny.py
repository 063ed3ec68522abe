"""Tiny, randomly initialised models of the real classes, built locally (no hub).

They exercise exactly the code paths of the full-size models — the same transformers and diffusers
classes, saved to disk and loaded back through the public loaders — at a size that runs in
seconds on a CPU. Their outputs mean nothing; they are for tests, benchmarks and a smoke run.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from x2i.alignnet import AlignNet

# Qwen2-VL's own chat template (vision placeholders, default system prompt).
QWEN_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def build_bpe_tokenizer(special_tokens: list[str], corpus: list[str] | None = None, vocab_size: int = 512, **kwargs):
    """A byte-level BPE tokenizer in Qwen2's format (the tokenizer of all three readers), trained on
    `corpus` (bytes only when empty); `special_tokens[0]` pads."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus or [], trainer=trainer)
    return Qwen2TokenizerFast(
        tokenizer_object=tok,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token=special_tokens[0],
        padding_side="left",  # X2I's AlignNet was trained on left-padded prompts
        **kwargs,
    )


def build_qwen_tokenizer(corpus: list[str] | None = None, vocab_size: int = 512):
    """Qwen2.5-VL's tokenizer format, with its chat template."""
    return build_bpe_tokenizer(
        QWEN_SPECIAL_TOKENS, corpus, vocab_size,
        additional_special_tokens=QWEN_SPECIAL_TOKENS[1:], chat_template=QWEN_VL_CHAT_TEMPLATE,
    )


def mrope_section(hidden_size: int, num_heads: int) -> list[int]:
    """M-RoPE splits each head's rotary half into temporal, height and width sections."""
    half = hidden_size // num_heads // 2
    height_width = (half - half // 4) // 2
    return [half - 2 * height_width, height_width, height_width]


def build_qwen2_5_vl(
    tokenizer,
    num_layers: int = 2,
    hidden_size: int = 32,
    vision_depth: int = 1,
    vision_hidden_size: int = 32,
    patch_size: int = 14,
    seed: int = 0,
):
    """A randomly initialised Qwen2.5-VL of the given size whose special tokens are `tokenizer`'s."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    num_heads = 4
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            num_key_value_heads=num_heads // 2,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope_section(hidden_size, num_heads)},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=vision_depth,
            hidden_size=vision_hidden_size,
            intermediate_size=2 * vision_hidden_size,
            num_heads=2,
            out_hidden_size=hidden_size,
            patch_size=patch_size,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=4 * patch_size,
            fullatt_block_indexes=list(range(vision_depth)),  # images are small: no windowed attention
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def save_qwen2_5_vl(model, tokenizer, image_processor, path: str | Path, video_pixels: int | None = None) -> Path:
    """Save so that `load_encoder(path)` loads it as it loads the real Qwen2.5-VL.

    The parts are saved one by one because transformers cannot save a Qwen2.5-VL processor whose
    video processor is x2i's (torchvision's needs the CUDA torch build here). `video_pixels` bounds
    the video frames' size (small for tiny models; the real default is 128-768 x 28 x 28)."""
    from x2i.encoders.video_processor import QwenVideoProcessor

    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    image_processor.save_pretrained(path)
    if video_pixels:
        QwenVideoProcessor(image_processor, video_pixels, video_pixels).save_pretrained(path)
    return Path(path)


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
    from transformers import GotOcr2ImageProcessorPil, InternVLConfig, InternVLForConditionalGeneration

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
    from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration, Qwen2VLImageProcessorPil, WhisperFeatureExtractor

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
    save_qwen2_5_vl(model, tokenizer, image_processor, path, video_pixels=28 * 28)
    # Qwen2.5-Omni hears 16 kHz, 128 mel bins; its checkpoint keeps the image processor's and the
    # feature extractor's settings in one preprocessor_config.json.
    config_file = Path(path) / "preprocessor_config.json"
    settings = json.loads(config_file.read_text())
    settings.update(WhisperFeatureExtractor(feature_size=128, chunk_length=30).to_dict())
    config_file.write_text(json.dumps(settings, indent=2))
    return Path(path)


def build_flux_transformer(
    latent_channels: int, num_layers: int, num_single_layers: int, num_attention_heads: int, attention_head_dim: int,
    joint_attention_dim: int, pooled_projection_dim: int, guidance_embeds: bool, axes_dims_rope: tuple[int, int, int],
):
    """A randomly initialised `FluxTransformer2DModel` for latents of `latent_channels`, packed 2x2."""
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=4 * latent_channels,
        num_layers=num_layers,
        num_single_layers=num_single_layers,
        attention_head_dim=attention_head_dim,
        num_attention_heads=num_attention_heads,
        joint_attention_dim=joint_attention_dim,
        pooled_projection_dim=pooled_projection_dim,
        guidance_embeds=guidance_embeds,
        axes_dims_rope=axes_dims_rope,
    )


def build_flux_vae(block_out_channels: tuple[int, ...], latent_channels: int, norm_num_groups: int, sample_size: int, **factors):
    """A randomly initialised FLUX-style `AutoencoderKL` (no quant convs); each block halves the size
    but the last."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(block_out_channels),
        up_block_types=("UpDecoderBlock2D",) * len(block_out_channels),
        block_out_channels=block_out_channels,
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=norm_num_groups,
        sample_size=sample_size,
        use_quant_conv=False,
        use_post_quant_conv=False,
        **factors,
    )


def build_tiny_flux(path: str | Path, seed: int = 0, joint_attention_dim: int = 32, pooled_projection_dim: int = 16) -> Path:
    """Save a tiny random FLUX pipeline (transformer, VAE, scheduler; no T5/CLIP) to `path`."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    torch.manual_seed(seed)
    transformer = build_flux_transformer(4, 1, 1, 2, 16, joint_attention_dim, pooled_projection_dim, guidance_embeds=True, axes_dims_rope=(4, 4, 8))
    vae = build_flux_vae((8, 16), 4, 4, 32, shift_factor=0.0609, scaling_factor=1.5035)
    # FLUX.1-dev's scheduler settings: resolution-dependent shift of the timesteps.
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
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
