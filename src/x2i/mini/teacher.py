"""The mini teacher: a FLUX-architecture text-to-image model of the mini world, trained here.

Real classes at a tiny size — `AutoencoderKL`, `FluxTransformer2DModel`, `CLIPTextModel` and
`T5EncoderModel` with tokenizers made from the captions, `FlowMatchEulerDiscreteScheduler` — saved
as a directory that `FluxPipeline.from_pretrained` loads. Trained on English captions only, as
FLUX's T5 is English-centric. Three stages, each from a seed:

1. the VAE learns to reconstruct renders (64x64 RGB <-> 16x16x8 latents);
2. the transformer and both text encoders learn rectified flow on VAE latents, conditioned on
   captions (logit-normal timesteps, EMA weights), as FLUX was trained; a training-only probe makes
   each T5 token carry the attributes of the object it describes (`binding_labels`), since FLUX's
   attention sees text tokens without positions and cannot bind words to objects by itself;
3. the VAE decoder is fine-tuned on the latents' means, for faithful colors.
"""

from __future__ import annotations

import collections
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
)
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

from x2i.architectures import build_flux_transformer, build_flux_vae
from x2i.mini.language import caption, caption_with_spans
from x2i.mini.world import ATTRIBUTES, VALUES, random_scene, render
from x2i.options import option
from x2i.training.flow_matching import (
    latent_image_ids,
    logit_normal_sigmas,
    noised_and_velocity,
)
from x2i.training.loop import train_loop

TEXT_LENGTH = 32  # T5 and CLIP token budget; every English caption of the world fits


@dataclass
class TeacherConfig:
    seed: int = option(0, "seed of every stage")
    vae_steps: int = option(1000, "stage 1: VAE training steps")
    vae_batch: int = option(32, "renders per VAE step")
    steps: int = option(6000, "stage 2: transformer + text encoder steps")
    batch: int = option(64, "captioned latents per stage-2 step")
    lr: float = option(1e-3, "stage-2 learning rate")
    warmup: int = option(200, "stage-2 warm-up steps")
    ema_decay: float = option(0.999, "EMA of the stage-2 weights (the EMA weights are saved)")
    decoder_steps: int = option(600, "stage 3: VAE decoder steps on latent means")
    dataset: int = option(30000, "scenes rendered and encoded once; captions are re-worded every step")
    two_objects: float = option(0.5, "share of two-object scenes in the dataset")
    heads: int = option(4, "transformer width = heads x 32")
    double_layers: int = option(2, "double-stream blocks")
    single_layers: int = option(4, "single-stream blocks")
    t5_layers: int = option(2, "T5 layers")
    t5_width: int = option(96, "T5 width (the joint attention dim)")
    caption_dropout: float = option(0.0, "share of empty captions, for classifier-free guidance")
    binding_weight: float = option(0.5, "weight of the training-only T5 binding probe (see binding_labels)")


# ---- text ---------------------------------------------------------------------------------------


def english_corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [caption(random_scene(rng), "en", rng) for _ in range(n)]


def build_clip_tokenizer(corpus: list[str]) -> CLIPTokenizer:
    tokenizer = CLIPTokenizer().train_new_from_iterator(corpus, vocab_size=512)
    tokenizer.model_max_length = TEXT_LENGTH
    return tokenizer


def build_t5_tokenizer(corpus: list[str]) -> T5Tokenizer:
    """A unigram vocabulary of whole words scored by their log frequency, plus every character so
    any text still tokenizes. (The unigram trainer keeps mostly characters on so small a corpus.)"""
    words = collections.Counter("▁" + w for line in corpus for w in line.split())
    chars = collections.Counter(c for line in corpus for c in line if not c.isspace())
    total = sum(words.values()) + sum(chars.values())
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -10.0)]
    vocab += [(w, math.log(n / total)) for w, n in words.most_common()]
    vocab += [(c, math.log(n / total) - 10.0) for c, n in chars.most_common()]
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0)
    tokenizer.model_max_length = TEXT_LENGTH
    return tokenizer


# ---- models -------------------------------------------------------------------------------------


def build_vae() -> AutoencoderKL:
    return build_flux_vae((16, 32, 64), latent_channels=8, norm_num_groups=8, sample_size=64)  # 64 px -> 16x16 latents


def build_text_encoders(clip_tokenizer: CLIPTokenizer, t5_tokenizer: T5Tokenizer, t5_layers: int = 2, t5_width: int = 96):
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(clip_tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=TEXT_LENGTH,
            bos_token_id=clip_tokenizer.bos_token_id,
            eos_token_id=clip_tokenizer.eos_token_id,
            pad_token_id=clip_tokenizer.pad_token_id,
        )
    )
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(t5_tokenizer),
            d_model=t5_width,
            d_kv=t5_width // 4,
            d_ff=2 * t5_width,
            num_layers=t5_layers,
            num_heads=4,
            relative_attention_num_buckets=16,
            dropout_rate=0.0,
            feed_forward_proj="gated-gelu",
            pad_token_id=t5_tokenizer.pad_token_id,
            eos_token_id=t5_tokenizer.eos_token_id,
        )
    )
    return clip, t5


def build_transformer(joint_attention_dim: int, pooled_projection_dim: int, config: TeacherConfig) -> FluxTransformer2DModel:
    # schnell-like: no guidance embedding
    return build_flux_transformer(8, config.double_layers, config.single_layers, config.heads, 32, joint_attention_dim,
                                  pooled_projection_dim, guidance_embeds=False, axes_dims_rope=(8, 12, 12))


def build_scheduler() -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)


# ---- data ---------------------------------------------------------------------------------------


def to_tensor(images) -> torch.Tensor:
    """PIL images -> [B, 3, H, W] in [-1, 1]."""
    array = np.stack([np.asarray(im, dtype=np.float32) for im in images]) / 127.5 - 1
    return torch.from_numpy(array).permute(0, 3, 1, 2)


def render_batch(rng: random.Random, n: int, two_objects: float = 0.5):
    scenes = [random_scene(rng, 2 if rng.random() < two_objects else 1) for _ in range(n)]
    return scenes, to_tensor([render(s, rng) for s in scenes])


def binding_labels(t5_tokenizer: T5Tokenizer, texts: list[str], spans: list[list[tuple[int, int]]], scenes: list[dict]) -> torch.Tensor:
    """[B, TEXT_LENGTH, 4] class indices: for every T5 token inside an object's words, that
    object's shape, color, size and position; -100 elsewhere. A training-only probe reads them
    from T5's last hidden state, so each token learns which object it belongs to — the binding
    that a jointly trained two-layer T5 otherwise barely learns (it bled colors and positions
    between objects)."""
    encoded = t5_tokenizer(texts, padding="max_length", max_length=TEXT_LENGTH, truncation=True, return_offsets_mapping=True)
    labels = torch.full((len(texts), TEXT_LENGTH, len(ATTRIBUTES)), -100)
    for row, (offsets, object_spans, scene) in enumerate(zip(encoded["offset_mapping"], spans, scenes)):
        for (start, end), obj in zip(object_spans, scene["objects"]):
            target = torch.tensor([VALUES[a].index(obj[a]) for a in ATTRIBUTES])
            for column, (a, b) in enumerate(offsets):
                if b > a and start <= a < end:  # "left," and "top." carry the punctuation that follows
                    labels[row, column] = target
    return labels


# ---- training -----------------------------------------------------------------------------------


def train_vae(config: TeacherConfig, progress: bool = True) -> AutoencoderKL:
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    vae = build_vae().train()

    def step(_):
        _, pixels = render_batch(rng, config.vae_batch)
        posterior = vae.encode(pixels).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        return F.mse_loss(reconstruction, pixels) + 1e-6 * posterior.kl().mean(), {}

    params = list(vae.parameters())
    train_loop("VAE", config.vae_steps, params, step, lr=1e-3, weight_decay=0.0, warmup=50, clip=params, progress=progress)
    return vae.eval()


def finetune_decoder(vae: AutoencoderKL, config: TeacherConfig, progress: bool = True) -> AutoencoderKL:
    """Stage 3: the decoder alone learns to reconstruct from the posterior *means*, which is what
    the transformer produces. (Trained on noisy samples, it blurred neighbouring colors: red vs
    orange, orange vs yellow.) The encoder and so the latent space stay as they are."""
    rng = random.Random(config.seed + 11)
    vae.requires_grad_(False).decoder.requires_grad_(True).train()

    def step(_):
        _, pixels = render_batch(rng, config.vae_batch)
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.mode()
        return F.mse_loss(vae.decode(latents).sample, pixels), {}

    train_loop("VAE decoder", config.decoder_steps, vae.decoder.parameters(), step, lr=1e-3, progress=progress)
    return vae.requires_grad_(False).eval()


@torch.no_grad()
def encode_dataset(vae: AutoencoderKL, config: TeacherConfig, progress: bool = True):
    """Scenes and their latents, rendered and encoded once. The posterior's mean is used: with so
    small a KL weight its noise is larger than the spread of the means and would drown the signal.
    Sets the VAE's shift and scaling factors, as FLUX's, so the latents have zero mean and unit
    variance."""
    rng = random.Random(config.seed + 1)
    scenes, latents = [], []
    for _ in tqdm(range(0, config.dataset, 256), desc="encoding renders", disable=not progress):
        batch_scenes, pixels = render_batch(rng, 256, config.two_objects)
        scenes += batch_scenes
        latents.append(vae.encode(pixels.to(vae.device)).latent_dist.mode().cpu())
    latents = torch.cat(latents)
    vae.register_to_config(shift_factor=latents.mean().item(), scaling_factor=1.0 / latents.std().item())
    return scenes, (latents - vae.config.shift_factor) * vae.config.scaling_factor


def train_teacher(
    config: TeacherConfig,
    out: str | Path,
    progress: bool = True,
    vae: AutoencoderKL | None = None,
    device: str = "cpu",
    snapshots: tuple[int, ...] = (),
) -> Path:
    """All three stages (the first and last skipped when a trained `vae` is given), then save the
    FLUX pipeline directory to `out`; `snapshots` also saves the EMA pipeline after those steps to
    `out/step-N`, for learning curves."""
    trained_vae = vae is not None
    vae = (vae or train_vae(config, progress)).requires_grad_(False).to(device)
    scenes, latents = encode_dataset(vae, config, progress)
    latents = latents.to(device)

    torch.manual_seed(config.seed)
    rng = random.Random(config.seed + 2)
    corpus = english_corpus(20000, config.seed)
    tokenizers = (build_clip_tokenizer(corpus), build_t5_tokenizer(corpus))
    clip, t5 = build_text_encoders(*tokenizers, config.t5_layers, config.t5_width)
    transformer = build_transformer(t5.config.d_model, clip.config.hidden_size, config)
    modules = [transformer.to(device), clip.to(device), t5.to(device)]
    params = [p for m in modules for p in m.parameters()]
    classes = [len(VALUES[a]) for a in ATTRIBUTES]
    probe = torch.nn.Linear(t5.config.d_model, sum(classes)).to(device)  # training only, not saved
    trained = params + list(probe.parameters())
    ema = EMAModel(params, decay=config.ema_decay)

    def pipeline() -> FluxPipeline:
        return FluxPipeline(
            scheduler=build_scheduler(), vae=vae, text_encoder=clip, tokenizer=tokenizers[0],
            text_encoder_2=t5, tokenizer_2=tokenizers[1], transformer=transformer,
        )

    flux = pipeline()  # for its text encoding and latent positions, exactly as FluxPipeline runs them
    size = latents.shape[-1] * flux.vae_scale_factor
    image_ids = latent_image_ids(flux, size, size, device, torch.float32)

    def step(_):
        index = torch.tensor(rng.sample(range(len(scenes)), config.batch))
        x0 = latents[index.to(device)]
        batch_scenes = [scenes[i] for i in index.tolist()]
        texts, spans = zip(*(caption_with_spans(scene, "en", rng) for scene in batch_scenes))
        # Dropped captions are empty strings, the unconditional prompt of true CFG in FluxPipeline.
        dropped = [rng.random() < config.caption_dropout for _ in texts]
        texts = ["" if drop else t for t, drop in zip(texts, dropped)]
        spans = [[] if drop else s for s, drop in zip(spans, dropped)]
        sigma = logit_normal_sigmas(config.batch, device=device)
        noise = torch.randn(x0.shape).to(device)  # drawn on the CPU: the same noise on any device
        xt, velocity = noised_and_velocity(x0, noise, sigma)
        prompt_embeds, pooled, text_ids = flux.encode_prompt(list(texts), list(texts), device=device, max_sequence_length=TEXT_LENGTH)
        prediction = transformer(
            hidden_states=xt,
            timestep=sigma,
            pooled_projections=pooled,
            encoder_hidden_states=prompt_embeds,
            txt_ids=text_ids,
            img_ids=image_ids,
        ).sample
        loss = F.mse_loss(prediction, velocity)
        binding = torch.zeros(())
        if config.binding_weight > 0:
            labels = binding_labels(tokenizers[1], texts, spans, batch_scenes).to(device)
            logits = probe(prompt_embeds).split(classes, dim=-1)
            binding = sum(F.cross_entropy(l.flatten(0, 1), labels[..., k].flatten(), ignore_index=-100) for k, l in enumerate(logits)) / len(classes)
            loss = loss + config.binding_weight * binding
        return loss, {"binding": f"{binding.item():.3f}"}

    def average(i):
        ema.step(params)
        if i + 1 in snapshots:  # after that many steps
            ema.store(params), ema.copy_to(params)
            pipeline().save_pretrained(Path(out) / f"step-{i + 1}")
            ema.restore(params)

    train_loop("teacher", config.steps, trained, step, lr=config.lr, warmup=config.warmup, clip=trained, progress=progress, after_step=average)
    ema.copy_to(params)
    if not trained_vae:
        vae = finetune_decoder(vae.cpu(), config, progress)
    for m in (vae, *modules):
        m.cpu().eval()
    pipeline().save_pretrained(out)
    return Path(out)
