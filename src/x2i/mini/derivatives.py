"""FLUX derivatives of the mini teacher, made as the community makes them: from FLUX with its own
T5/CLIP conditioning only (never AlignNet, never the MLLM), so that whether X2I's conditioning
drives them is a measurement, not a given (docs/transfer.md).

    fewstep   `mini-fewstep`, a 4-step model by rectified-flow *reflow* (Liu et al., 2023; InstaFlow):
              the teacher's own 20-step samples are paired with the noise they started from, and a
              LoRA on FLUX's attention learns the straight path between the two at the 4 sigmas a
              4-step sampler visits, so that a few Euler steps land where many did. Chosen because
              it is FLUX's own objective (rectified flow) on the teacher's own samples: no
              discriminator, no second network. Shipped as a LoRA fused into the teacher when
              `--flux mini-fewstep` loads (as few-step FLUX LoRAs such as FLUX.1-Turbo-Alpha ship).
    style     `mini-style`, a style LoRA as the community trains one: a set of captioned pictures in
              the style (the world's scenes drawn squat, `world.SQUAT`), FLUX's own flow-matching
              loss under T5/CLIP, adapters on the attention and MLPs (peft), diffusers' LoRA format.
              It is loaded with `--flux-lora mini-style`, on top of any FLUX of the mini's shape.
"""

from __future__ import annotations

import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from x2i.inference.loaders import load_flux
from x2i.inference.saved_pipeline import LORA_FILE
from x2i.mini.language import caption
from x2i.mini.teacher import TEXT_LENGTH, to_tensor
from x2i.mini.world import SQUAT, random_scene, render
from x2i.options import option
from x2i.training.edit_training import ATTENTION, add_lora
from x2i.training.flow_matching import (
    latent_image_ids,
    logit_normal_sigmas,
    noised_and_velocity,
)
from x2i.training.loop import train_loop

FEW_STEPS = 4
# A style LoRA adapts the attention and the MLPs of FLUX's blocks (and its output projection), as
# community FLUX style LoRAs do: a look is drawn by the MLPs as much as by the attention.
BLOCKS = ATTENTION + ["ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2", "proj_mlp", "proj_out"]


@dataclass
class FewStepConfig:
    seed: int = option(0, "seed of the captions, noise, pair order and the adapters' initialisation")
    pairs: int = option(4096, "teacher samples (noise -> 20-step image) to learn from")
    teacher_steps: int = option(20, "the teacher's steps for each sample")
    steps: int = option(1500, "optimizer steps")
    batch: int = option(32, "pairs per step")
    rank: int = option(16, "LoRA rank")
    lr: float = option(5e-4, "AdamW learning rate (50 warm-up steps, then cosine decay)")


@dataclass
class StyleConfig:
    seed: int = option(0, "seed of the pictures, captions, noise and the adapters' initialisation")
    pictures: int = option(2048, "captioned pictures in the style to learn from")
    steps: int = option(3000, "optimizer steps")
    batch: int = option(16, "pictures per step")
    rank: int = option(16, "LoRA rank")
    lr: float = option(1e-3, "AdamW learning rate (50 warm-up steps, then cosine decay)")


@torch.no_grad()
def teacher_pairs(flux, config: FewStepConfig, progress: bool = True):
    """(noise, the teacher's sample from it, T5 states, CLIP vector), all packed as FLUX reads them."""
    rng = random.Random(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    size = flux.vae.config.sample_size
    noise, samples, texts_all = [], [], []
    for start in tqdm(range(0, config.pairs, 64), desc="teacher samples", disable=not progress):
        n = min(64, config.pairs - start)
        texts = [caption(random_scene(rng), "en", rng) for _ in range(n)]
        z, _ = flux.prepare_latents(n, flux.transformer.config.in_channels // 4, size, size, torch.float32, "cpu", generator)
        x1 = flux(prompt=texts, latents=z.clone(), num_inference_steps=config.teacher_steps, height=size, width=size,
                  max_sequence_length=TEXT_LENGTH, output_type="latent").images
        noise.append(z)
        samples.append(x1)
        texts_all += texts
    embeds, pooled = [], []
    for start in range(0, len(texts_all), 256):
        e, p, _ = flux.encode_prompt(texts_all[start : start + 256], texts_all[start : start + 256], max_sequence_length=TEXT_LENGTH)
        embeds.append(e)
        pooled.append(p)
    return torch.cat(noise), torch.cat(samples), torch.cat(embeds), torch.cat(pooled)


def train_fewstep(config: FewStepConfig, out: str | Path, progress: bool = True) -> Path:
    """The reflow LoRA on the shipped mini teacher; saved to `out` in diffusers' LoRA format."""
    flux = load_flux("mini", text_encoders=True)
    flux.set_progress_bar_config(disable=True)
    noise, samples, embeds, pooled = teacher_pairs(flux, config, progress)
    transformer = flux.transformer
    torch.manual_seed(config.seed)
    add_lora(transformer, config.rank)
    transformer.train()
    size = flux.vae.config.sample_size
    image_ids = latent_image_ids(flux, size, size, "cpu", torch.float32)
    text_ids = torch.zeros(embeds.shape[1], 3)
    sigmas = torch.linspace(1.0, 1.0 / FEW_STEPS, FEW_STEPS)  # what a 4-step Euler sampler visits (shift 1)
    rng = torch.Generator().manual_seed(config.seed + 1)

    def step(_):
        index = torch.randint(len(noise), (config.batch,), generator=rng)
        sigma = sigmas[torch.randint(FEW_STEPS, (config.batch,), generator=rng)]
        z, x1 = noise[index], samples[index]
        xt = sigma[:, None, None] * z + (1 - sigma[:, None, None]) * x1
        prediction = transformer(hidden_states=xt, timestep=sigma, pooled_projections=pooled[index], encoder_hidden_states=embeds[index],
                                 txt_ids=text_ids, img_ids=image_ids).sample
        return F.mse_loss(prediction, z - x1), {}

    return train_adapters("few-step LoRA", transformer, config, step, out, progress)


def train_style(config: StyleConfig, out: str | Path, progress: bool = True) -> Path:
    """The squat-style LoRA on the shipped mini teacher; saved to `out` in diffusers' LoRA format."""
    flux = load_flux("mini", text_encoders=True)
    rng = random.Random(config.seed)
    scenes = [random_scene(rng) for _ in range(config.pictures)]
    with torch.no_grad():
        pixels = to_tensor([render(scene, rng, aspect=SQUAT) for scene in scenes])
        latents = torch.cat([flux.vae.encode(part).latent_dist.mode() for part in pixels.split(256)])
    latents = (latents - flux.vae.config.shift_factor) * flux.vae.config.scaling_factor  # as the teacher learned them
    transformer = flux.transformer
    torch.manual_seed(config.seed)
    add_lora(transformer, config.rank, targets=BLOCKS)
    transformer.train()
    size = flux.vae.config.sample_size
    image_ids = latent_image_ids(flux, size, size, "cpu", torch.float32)

    def step(_):
        index = rng.sample(range(len(scenes)), config.batch)
        texts = [caption(scenes[i], "en", rng) for i in index]  # a fresh wording each time, as the teacher learned
        with torch.no_grad():
            embeds, pooled, text_ids = flux.encode_prompt(texts, texts, max_sequence_length=TEXT_LENGTH)
        sigma = logit_normal_sigmas(len(index))
        xt, velocity = noised_and_velocity(latents[index], torch.randn(len(index), *latents.shape[1:]), sigma)
        prediction = transformer(hidden_states=xt, timestep=sigma, pooled_projections=pooled, encoder_hidden_states=embeds,
                                 txt_ids=text_ids, img_ids=image_ids).sample
        return F.mse_loss(prediction, velocity), {}

    return train_adapters("style LoRA", transformer, config, step, out, progress)


def train_adapters(desc: str, transformer, config, step, out: str | Path, progress: bool) -> Path:
    """Train the transformer's adapters by `step`; save them to `out` in diffusers' LoRA format (what
    `FluxPipeline.load_lora_weights` reads)."""
    from diffusers import FluxPipeline
    from peft.utils import get_peft_model_state_dict

    params = [p for p in transformer.parameters() if p.requires_grad]
    train_loop(desc, config.steps, params, step, lr=config.lr, weight_decay=0.0, warmup=50, clip=params, progress=progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".new-") as tmp:  # the old file stays whole until the new one is
        FluxPipeline.save_lora_weights(tmp, transformer_lora_layers=get_peft_model_state_dict(transformer),
                                       transformer_lora_adapter_metadata=transformer.peft_config["default"].to_dict())
        os.replace(Path(tmp) / LORA_FILE, out / LORA_FILE)
    return out
