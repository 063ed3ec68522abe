"""The real model classes at any size, configured and saved as their full-size checkpoints are.

Qwen2.5-VL (`Qwen2_5_VLForConditionalGeneration`) with a byte-level BPE tokenizer in Qwen2's
format and its chat template, FLUX's `FluxTransformer2DModel` and `AutoencoderKL`. The mini world's
recipes train them (x2i.mini); `x2i.tiny_models` saves random tiny ones for tests and smoke runs.
"""

from __future__ import annotations

from pathlib import Path

import torch

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
    return qwen_tokenizer(tok, special_tokens[0], **kwargs)


def qwen_tokenizer(tok, pad_token: str, **kwargs):
    """A `tokenizers` tokenizer as a Qwen2 tokenizer (ends turns with <|im_end|>, pads on the left)."""
    from transformers import Qwen2TokenizerFast

    return Qwen2TokenizerFast(
        tokenizer_object=tok,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token=pad_token,
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
    from x2i.inference.encoders.video_processor import QwenVideoProcessor

    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    image_processor.save_pretrained(path)
    if video_pixels:
        QwenVideoProcessor(image_processor, video_pixels, video_pixels).save_pretrained(path)
    return Path(path)


def save_qwen2_5_omni(model, tokenizer, image_processor, path: str | Path, video_pixels: int, chunk_length: int = 30) -> Path:
    """Save a Qwen2.5-Omni thinker so that `load_encoder(path)` loads it as it loads the real one:
    Qwen2.5-Omni hears 16 kHz through 128 mel bins, in windows of `chunk_length` seconds (30 in the
    real model), and its checkpoint keeps the image processor's and the Whisper feature extractor's
    settings in one preprocessor_config.json."""
    import json

    from transformers import WhisperFeatureExtractor

    save_qwen2_5_vl(model, tokenizer, image_processor, path, video_pixels=video_pixels)
    config_file = Path(path) / "preprocessor_config.json"
    settings = json.loads(config_file.read_text())
    settings.update(WhisperFeatureExtractor(feature_size=128, chunk_length=chunk_length).to_dict())
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
