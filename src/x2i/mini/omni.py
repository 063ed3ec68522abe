"""The mini Qwen2.5-Omni: the mini Qwen2.5-VL given ears, as speech-capable MLLMs are made.

It is the real `Qwen2_5OmniThinkerForConditionalGeneration` (audio encoder, vision encoder,
language model), saved so that `x2i.load_encoder` loads it as it loads the real thinker. Its
language model and vision tower start as the mini Qwen2.5-VL's, copied; its audio encoder
(Whisper-style, as the real one: two convolutions, attention within 2-second windows, pooled to 25
tokens a second) is new. Two stages, as Qwen-Audio and Qwen2.5-Omni align a new audio encoder to a
trained language model first and then train all but the vision encoder on every modality:

1. The world by ear, the ears alone (everything else frozen): the spoken caption alone
   (espeak-ng, five languages, varied speakers, a little noise) -> the scene in canonical English,
   with speech recognition beside it ("what is said?" -> the caption's words, in its language),
   and the semantic hub, as the mini Qwen2.5-VL's recipe has it for image objects and page words:
   the sound tokens heard while each color, shape, size or place word is said (espeak-ng's word
   times) read out as that English word at the last layers.
2. Listening: the ears and the language model together, on spoken requests and, as many again,
   the mini Qwen2.5-VL's own tasks (captions in five languages, images, edits, pairs,
   conversations, questions, clips), so that it keeps them. A frozen language model cannot bind
   words said over many sound tokens each (BENCHMARKS.md).

Nothing in the recipe sees T5, FLUX, AlignNet or the teacher. The chat template is the Qwen2.5-VL's
with a sound placeholder. After stage 1 alone text and images read exactly as in the mini
Qwen2.5-VL (tests/test_mini_omni.py); stage 2 moves its language model, so the shipped `mini-omni`
has its own AlignNet, distilled on its English text alone as always.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from x2i.architectures import QWEN_VL_CHAT_TEMPLATE, qwen_tokenizer, save_qwen2_5_omni
from x2i.errors import X2IError
from x2i.inference.encoders.qwen2_5_omni import Qwen2_5OmniEncoder
from x2i.inference.locations import locate
from x2i.inference.request import Request
from x2i.media import Audio
from x2i.mini.examples import TRAINING_MIX, Example, sample_with_scene
from x2i.mini.language import caption
from x2i.mini.media import speak
from x2i.mini.mllm import MLLMConfig, batch_loss, micro_batches, train_only
from x2i.mini.readout import english_word_ids
from x2i.mini.world import IMAGE_SIZE, LANGUAGES, random_scene
from x2i.options import option
from x2i.training.loop import train_stage

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
KEEP_MIX = {**TRAINING_MIX, "video2image": 1}  # what the language model already does, beside listening


@dataclass
class OmniConfig:
    vision_language: str = option("mini", "with --reader qwen2_5_omni: the mini Qwen2.5-VL whose language model and vision tower it takes "
                                  "(mini: the shipped one)")
    seed: int = option(0, "seed of the audio encoder and the data")
    hear_batch: int = option(16, "spoken requests per step")
    hear_steps: int = option(1300, "spoken caption -> scene steps, recognition and the semantic hub beside them")
    hear_lr: float = option(1e-3, "learning rate (warm-up, then cosine decay)")
    hear_from: str = option("", "with --reader qwen2_5_omni: a mini Qwen2.5-Omni (a directory) to go on training "
                            "(give another --seed than its own, for fresh data)")
    hear_hub_weight: float = option(1.0, "weight of the semantic hub on each spoken word's sound tokens (0: none)")
    listen_steps: int = option(2600, "then the language model listens too: ears and language model on spoken requests and the "
                               "Qwen2.5-VL's own tasks (0: ears only, and text and images read exactly as in the Qwen2.5-VL)")
    listen_lr: float = option(2e-4, "its learning rate (warm-up, then cosine decay)")
    listen_ears_lr: float = option(5e-4, "the ears' learning rate while the language model listens (new parts learn faster "
                                   "than trained ones)")
    bf16: bool = option(True, "float32 throughout, not bf16 mixed precision (which real models train in; on CPUs it made "
                        "steps 1.45x faster on one machine and 1.2x slower on another: time a few steps both ways)", flag="--no-bf16")
    spoken_languages: str = option("en=1,zh=2,fr=1,de=1,es=1", "how often each language is spoken, relative to the others "
                                   "(more of one the ears hear worst, as real recipes weight their data)")
    audio_layers: int = option(4, "audio encoder layers")
    audio_width: int = option(128, "audio encoder width")


def language_weights(spec: str) -> dict[str, float]:
    """`--spoken-languages` ("en=1,zh=2,...": languages left out are not spoken) as {language: weight}."""
    try:
        weights = {lang.strip(): float(weight) for lang, weight in (part.split("=") for part in spec.split(","))}
    except ValueError:
        weights = {}
    if not weights or set(weights) - set(LANGUAGES) or min(weights.values()) < 0 or not sum(weights.values()) > 0:
        raise X2IError(f"--spoken-languages {spec!r}: give weights of {', '.join(LANGUAGES)} as en=1,zh=2,... (at least one above 0)")
    return weights


def spoken_example(rng: random.Random, recognize: bool, languages: dict[str, float] | None = None) -> Example:
    """A caption of a fresh scene spoken in a language (drawn by `languages`' weights, else any),
    asked "what is said?" (-> the caption), or the world's task: the sound alone (-> the scene)."""
    lang = rng.choices(list(languages), weights=list(languages.values()))[0] if languages else rng.choice(LANGUAGES)
    if not recognize:
        return sample_with_scene(rng, "audio2image", lang=lang)
    scene = random_scene(rng)
    said = caption(scene, lang, rng)
    return Example(Request(WHAT_IS_SAID, [Audio.from_array(*speak(said, lang, rng))]), said, scene, [])


def listening_example(rng: random.Random, languages: dict[str, float] | None = None) -> Example:
    """Half spoken (as `spoken_example`), half the mini Qwen2.5-VL's own tasks (captions, images,
    edits, pairs, conversations, questions, clips), so that it keeps them while it learns to listen."""
    if rng.random() < 0.5:
        return spoken_example(rng, rng.random() < 0.25, languages)
    return sample_with_scene(rng, mix=KEEP_MIX)


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

    languages = language_weights(config.spoken_languages)  # a bad --spoken-languages says so before anything loads
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
    if config.hear_steps:
        # sound is most of each request: lengths are alike, one micro-batch
        train_stage("mini Omni: the world by ear", config.hear_steps, ears,
                    lambda: micro_batches(encoder, [spoken_example(rng, rng.random() < 0.25, languages) for _ in range(config.hear_batch)], groups=1),
                    lambda batch: batch_loss(model, batch, hub, word_ids, bf16=config.bf16), ahead=True,
                    lr=config.hear_lr, warmup=min(100, config.hear_steps // 10), clip=ears, progress=progress)
    if config.listen_steps:
        # A frozen language model reads a word said over ~10 sound tokens as ten repeats of it, and
        # loses which words go together (BENCHMARKS.md): so, as Qwen2.5-Omni's second stage trains
        # all but the vision encoder on every modality, the language model learns beside the ears.
        rng = random.Random(config.seed + 2)
        language = [*model.model.language_model.parameters(), *model.lm_head.parameters()]
        listening = train_only(model, [*ears, *language])
        train_stage("mini Omni: listening", config.listen_steps, [{"params": ears, "lr": config.listen_ears_lr}, {"params": language}],
                    lambda: micro_batches(encoder, [listening_example(rng, languages) for _ in range(config.hear_batch)]),
                    lambda batch: batch_loss(model, batch, hub, word_ids, bf16=config.bf16), ahead=True,
                    lr=config.listen_lr, warmup=min(50, config.listen_steps // 10), clip=listening, progress=progress)
    model.eval()
    return save()
