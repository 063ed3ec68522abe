"""The mini Qwen2.5-Omni: the mini Qwen2.5-VL given ears, as speech-capable MLLMs are made.

It is the real `Qwen2_5OmniThinkerForConditionalGeneration` (audio encoder, vision encoder,
language model), saved so that `x2i.load_encoder` loads it as it loads the real thinker. Its
language model and vision tower are the mini Qwen2.5-VL's, copied; its audio encoder (Whisper-style,
as the real one: two convolutions, attention within 2-second windows, pooled to 25 tokens a
second) is new, and learns with everything else frozen (as Qwen-Audio and Qwen2.5-Omni align a new
audio encoder to a trained language model first), on the world's task by ear (`audio2image`): the
spoken caption alone (espeak-ng, five languages, varied speakers, a little noise) -> the scene in
canonical English, with speech recognition beside it ("what is said?" -> the caption's words, in
its language), through the frozen language model;
and the semantic hub, as the mini Qwen2.5-VL's recipe has it for image objects and page words: the
sound tokens heard while each color, shape, size or place word is said (espeak-ng's word times)
read out as that English word at the last layers. (A first stage that aligned the encoder's tokens
to the caption's tokens by CTC, without the language model, was tried and left out: it did not
help what follows, BENCHMARKS.md.)

Nothing in the recipe sees T5, FLUX, AlignNet or the teacher. The language model stays the mini
Qwen2.5-VL's and the chat template is its template with a sound placeholder, so text and images read
exactly as they do there (tests/test_mini_omni.py): the AlignNet distilled on the Qwen2.5-VL's
English text is distilled on this model's English text too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from x2i.architectures import QWEN_VL_CHAT_TEMPLATE, qwen_tokenizer, save_qwen2_5_omni
from x2i.inference.encoders.qwen2_5_omni import Qwen2_5OmniEncoder
from x2i.inference.locations import locate
from x2i.inference.request import Request
from x2i.media import Audio
from x2i.mini.examples import Example, sample_with_scene
from x2i.mini.language import caption
from x2i.mini.media import speak
from x2i.mini.mllm import MLLMConfig, batch_loss, train_only
from x2i.mini.readout import english_word_ids
from x2i.mini.world import IMAGE_SIZE, LANGUAGES, random_scene
from x2i.options import option
from x2i.training.loop import train_loop

# The Omni processor's named tokens: the Qwen2.5-VL's for images and video, three new ones for sound.
TOKENS = {
    "image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
    "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>",
    "audio_token": "<|AUDIO|>", "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>",
}
NEW_TOKENS = ["<|audio_bos|>", "<|audio_eos|>", "<|AUDIO|>"]
CHAT_TEMPLATE = QWEN_VL_CHAT_TEMPLATE.replace(
    "{% elif 'text' in content %}", "{% elif content['type'] == 'audio' %}<|audio_bos|><|AUDIO|><|audio_eos|>{% elif 'text' in content %}"
)
WHAT_IS_SAID = "what is said?"  # the recognition request
CHUNK_SECONDS = 15  # the mini hears up to 15 s a clip (the real model: 30)


@dataclass
class OmniConfig:
    vision_language: str = option("mini", "with --reader qwen2_5_omni: the mini Qwen2.5-VL whose language model and vision tower it takes "
                                  "(mini: the shipped one)")
    seed: int = option(0, "seed of the audio encoder and the data")
    hear_batch: int = option(16, "spoken requests per step")
    hear_steps: int = option(1200, "spoken caption -> scene steps, recognition and the semantic hub beside them")
    hear_lr: float = option(1e-3, "learning rate (warm-up, then cosine decay)")
    hear_from: str = option("", "with --reader qwen2_5_omni: a mini Qwen2.5-Omni (a directory) whose ears go on learning "
                            "(give another --seed than its own, for fresh data)")
    hear_hub_weight: float = option(1.0, "weight of the semantic hub on each spoken word's sound tokens (0: none)")
    audio_layers: int = option(4, "audio encoder layers")
    audio_width: int = option(128, "audio encoder width")


def spoken_example(rng: random.Random, recognize: bool) -> Example:
    """A caption of a fresh scene spoken in any language, asked "what is said?" (-> the caption),
    or the world's task: the sound alone (-> the scene)."""
    if not recognize:
        return sample_with_scene(rng, "audio2image")
    scene, lang = random_scene(rng), rng.choice(LANGUAGES)
    said = caption(scene, lang, rng)
    return Example(Request(WHAT_IS_SAID, [Audio.from_array(*speak(said, lang, rng))]), said, scene, [])


def build_omni(config: OmniConfig):
    """The thinker with the Qwen2.5-VL's language model and vision tower, a new audio encoder, and
    the Qwen2.5-VL's tokenizer with the three sound tokens added (processor and model saved by
    `train_omni`)."""
    from transformers import (
        AutoTokenizer,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5OmniThinkerConfig,
        Qwen2_5OmniThinkerForConditionalGeneration,
    )

    source = locate(config.vision_language, "mllm")
    vl = Qwen2_5_VLForConditionalGeneration.from_pretrained(source)
    tokens = AutoTokenizer.from_pretrained(source).backend_tokenizer
    tokens.add_special_tokens(NEW_TOKENS)
    tokenizer = qwen_tokenizer(tokens, "<|endoftext|>", extra_special_tokens=TOKENS, chat_template=CHAT_TEMPLATE)
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in TOKENS.items()}
    text, vision = vl.config.text_config.to_dict(), vl.config.vision_config.to_dict()
    omni_config = Qwen2_5OmniThinkerConfig(
        audio_config=dict(num_mel_bins=128, encoder_layers=config.audio_layers, encoder_attention_heads=4, d_model=config.audio_width,
                          encoder_ffn_dim=2 * config.audio_width, output_dim=text["hidden_size"], n_window=100),
        vision_config={k: vision[k] for k in ("depth", "hidden_size", "intermediate_size", "num_heads", "out_hidden_size", "patch_size",
                                              "spatial_merge_size", "temporal_patch_size", "window_size", "fullatt_block_indexes", "hidden_act", "in_channels")},
        text_config={**{k: text[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                                             "max_position_embeddings", "rope_parameters", "rms_norm_eps", "hidden_act")}, "vocab_size": len(tokenizer)},
        audio_token_index=ids["audio_token"], image_token_index=ids["image_token"], video_token_index=ids["video_token"],
        audio_start_token_id=ids["audio_bos_token"], audio_end_token_id=ids["audio_eos_token"],
        vision_start_token_id=ids["vision_bos_token"], user_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(config.seed)
    model = Qwen2_5OmniThinkerForConditionalGeneration(omni_config)
    weights = {}
    for name, value in vl.state_dict().items():
        if name.endswith(("attn.qkv.weight", "attn.qkv.bias")):  # the Omni vision tower keeps q, k, v apart
            for part, chunk in zip("qkv", value.chunk(3)):
                weights[name.replace("attn.qkv.", f"attn.{part}.")] = chunk
        elif name in ("model.language_model.embed_tokens.weight", "lm_head.weight"):  # the new tokens' rows stay as initialised
            weights[name] = torch.cat([value, model.state_dict()[name][value.shape[0]:]])
        else:
            weights[name] = value
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert not unexpected and all(name.startswith("model.audio_tower.") for name in missing), (missing, unexpected)
    return model, tokenizer


def train_omni(config: OmniConfig, out: str | Path, progress: bool = True) -> Path:
    from transformers import AutoImageProcessor

    if config.hear_from:
        from transformers import (
            AutoTokenizer,
            Qwen2_5OmniThinkerForConditionalGeneration,
        )

        model = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(config.hear_from)
        tokenizer = AutoTokenizer.from_pretrained(config.hear_from)
    else:
        model, tokenizer = build_omni(config)
    image_processor = AutoImageProcessor.from_pretrained(config.hear_from or locate(config.vision_language, "mllm"), backend="pil")

    def save() -> Path:
        return save_qwen2_5_omni(model, tokenizer, image_processor, out, video_pixels=IMAGE_SIZE**2, chunk_length=CHUNK_SECONDS)

    encoder = Qwen2_5OmniEncoder(model, Qwen2_5OmniEncoder.load_processor(save()))  # the processor as X2I loads it
    rng = random.Random(config.seed + 1)
    ears = train_only(model, model.model.audio_tower.parameters())
    hub = MLLMConfig(hub_weight=config.hear_hub_weight)  # the hub's layers as in the Qwen2.5-VL recipe
    word_ids = english_word_ids(tokenizer) if config.hear_hub_weight else None
    train_loop("mini Omni: the world by ear", config.hear_steps, ears,
               lambda _: batch_loss(model, encoder, [spoken_example(rng, rng.random() < 0.25) for _ in range(config.hear_batch)],
                                    hub, word_ids, groups=1),  # sound is most of each request: lengths are alike
               lr=config.hear_lr, warmup=min(100, config.hear_steps // 10), clip=ears, progress=progress)
    model.eval()
    return save()
