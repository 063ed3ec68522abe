"""`x2i lightcontrol train` and `x2i lora train`: image + instruction -> image, on edit triples.

Both train FLUX's velocity by flow matching on (source image, instruction, target image) triples,
with the frozen MLLM reading the source and the instruction and the frozen AlignNet turning that
into FLUX's conditioning, exactly as `X2IPipeline` will at inference. They differ in what trains:

    lightcontrol   a LightControl branch that reads the SOURCE image (x2i.inference.lightcontrol); FLUX frozen
    lora           LoRA adapters on FLUX's attention (x2i.inference.lora); with --lightcontrol, a trained
                   branch stays attached (frozen), so the adapters learn to work with it

A step, top to bottom (`make_batch`, then `step_loss`): the global batch's triples (a function of
the step), the MLLM + AlignNet conditioning of (source, instruction) by `X2IPipeline.encode` (the
road `--condition-on` names), the target's VAE latents,
each sample's noise and timestep sigma ~ sigmoid(N(0, 1)) from its own seeded generator (the
logit-normal sampling FLUX and the release train with: most weight on mid-noise, where layout and
attributes are decided), x_sigma = (1 - sigma) x0 + sigma noise, and the MSE between FLUX's
prediction and the velocity noise - x0. The target image enters the loss only. The loop, resume
and checkpoints are `trainer.train`'s, as for `x2i distill`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from x2i.errors import X2IError
from x2i.inference.lightcontrol import LightControl
from x2i.inference.loaders import (
    check_size,
    default_dtype,
    default_size,
    load_alignnet,
    load_encoder,
    load_flux,
    load_lightcontrol,
)
from x2i.inference.pipeline import X2IPipeline
from x2i.inference.request import CONDITION_ON, Request
from x2i.options import option
from x2i.training.checkpoints import LoraWeights, TrainedModel
from x2i.training.data import Triple, read_triples
from x2i.training.flow_matching import (
    latent_image_ids,
    logit_normal_sigmas,
    noised_and_velocity,
)
from x2i.training.trainer import (
    TrainConfig,
    check_run,
    make_accelerator,
    process_batch,
    train,
)

# FLUX's attention projections in its double and single blocks (image and text streams), as diffusers' FLUX LoRA trainers adapt them.
ATTENTION = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]


@dataclass(kw_only=True)
class EditTrainingConfig(TrainConfig):
    triples: str = option(help="edit triples: a .jsonl of {source, instruction, target} or WebDataset .tar shards (see docs/editing.md)")
    mllm: str = option("mini", "MLLM directory or hub id (mini: the shipped mini MLLM)")
    flux: str = option("mini", "FLUX pipeline directory or hub id; T5/CLIP are not loaded (mini: the shipped mini FLUX)")
    alignnet: str = option("mini", "AlignNet directory or official .bin (mini: the shipped mini AlignNet)")
    lr: float = option(1e-5, "AdamW learning rate (the release's LightControl: 1e-5)")
    height: int | None = option(None, "training size; images are resized to it (default: the size the FLUX VAE was made for)")
    width: int | None = option(None, "default: the size the FLUX VAE was made for")
    guidance: float = option(3.5, "for FLUX models with a guidance embedding (dev)")
    condition_on: str = option("auto", "what AlignNet reads, as X2IPipeline's condition_on (auto: the road the pipeline takes by "
                               "default, so the branch learns on the conditioning it will meet); the MLLM's answers are greedy, "
                               "so each triple's answer is written once and kept", choices=CONDITION_ON)


@dataclass(kw_only=True)
class LightControlConfig(EditTrainingConfig):
    channels: tuple[int, ...] = option((64, 128, 256), "the branch's encoder widths c0 c1 c2 (the release's)", nargs="*")
    norm_groups: int = option(32, "GroupNorm groups in the branch's ResNet blocks")


@dataclass(kw_only=True)
class LoraConfig(EditTrainingConfig):
    rank: int = option(16, "LoRA rank")
    alpha: float | None = option(None, "LoRA alpha (default: the rank, i.e. scale 1)")
    lr: float = option(1e-4, "AdamW learning rate")
    lightcontrol: str | None = option(None, "a trained LightControl to keep attached (frozen) while the LoRA trains; 'mini' names the shipped one")


@dataclass
class Frozen:
    flux: object  # FluxPipeline without T5/CLIP
    pipe: X2IPipeline  # the MLLM and AlignNet over that FLUX: the conditioning, as at inference
    height: int
    width: int
    readings: dict = field(default_factory=dict)  # each triple's road and answer, once written


def train_lightcontrol(config: LightControlConfig) -> Path:
    if len(config.channels) != 3 or config.norm_groups < 1 or any(c < 1 or c % config.norm_groups for c in config.channels):
        raise X2IError("--channels takes three widths c0 c1 c2, each a positive multiple of --norm-groups")
    accelerator, triples, frozen = _setup(config, "x2i lightcontrol train", "lightcontrol")
    torch.manual_seed(config.seed)  # the same initialisation on every rank
    branch = LightControl.for_flux(frozen.flux, block_out_channels=tuple(config.channels), norm_groups=config.norm_groups)
    branch.to(accelerator.device).train()

    def step_loss(model, step):
        return flow_matching_loss(frozen, make_batch(frozen, config, triples, step, accelerator), model), {}

    return train(config, accelerator, TrainedModel("lightcontrol", branch), branch, step_loss, desc="lightcontrol", loss_label="flow-matching loss")


def train_lora(config: LoraConfig) -> Path:
    if config.rank < 1 or (config.alpha is not None and not config.alpha > 0):
        raise X2IError("--rank must be at least 1 and --alpha positive")
    accelerator, triples, frozen = _setup(config, "x2i lora train", "lora")
    branch = None
    if config.lightcontrol:
        branch = load_lightcontrol(config.lightcontrol, frozen.flux, frozen.flux.transformer.dtype).to(accelerator.device)
        branch.requires_grad_(False).eval()
    transformer = frozen.flux.transformer
    torch.manual_seed(config.seed)
    add_lora(transformer, config.rank, config.alpha)
    transformer.train()

    def step_loss(model, step):
        return flow_matching_loss(frozen, make_batch(frozen, config, triples, step, accelerator), branch, transformer=model), {}

    return train(config, accelerator, LoraWeights(transformer), transformer, step_loss, desc="lora", loss_label="flow-matching loss")


def add_lora(transformer, rank: int, alpha: float | None = None, targets: list[str] = ATTENTION) -> None:
    """Trainable adapters of `rank` on FLUX's `targets` (default: its attention); everything else stays frozen."""
    from peft import LoraConfig

    transformer.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian", target_modules=targets)
    transformer.add_adapter(config)


def _setup(config: EditTrainingConfig, command: str, trained_name: str):
    check_run(config, trained_name)
    if not math.isfinite(config.guidance):
        raise X2IError(f"--guidance must be a finite number, not {config.guidance}")
    accelerator = make_accelerator(command)
    device = accelerator.device
    dtype = default_dtype(device)
    triples = read_triples(config.triples)
    alignnet = load_alignnet(config.alignnet, dtype, mllm=config.mllm).to(device).requires_grad_(False).eval()
    flux = load_flux(config.flux, dtype).to(device)
    flux.transformer.requires_grad_(False).eval()
    flux.vae.requires_grad_(False).eval()
    if config.gradient_checkpointing:
        flux.transformer.enable_gradient_checkpointing()
    size = default_size(flux)
    height, width = size if config.height is None else config.height, size if config.width is None else config.width
    check_size(flux, height, width)
    encoder = load_encoder(config.mllm, device=device, dtype=dtype)
    return accelerator, triples, Frozen(flux, X2IPipeline(encoder, alignnet, flux, condition_on=config.condition_on), height, width)


@dataclass
class Batch:
    source: torch.Tensor  # [B, 3, H, W] in [-1, 1]: what the branch reads
    conditioning: object  # FluxConditioning of (source, instruction)
    latents: torch.Tensor  # packed noisy latents x_sigma
    velocity: torch.Tensor  # packed noise - x0: the target
    sigma: torch.Tensor  # [B]
    image_ids: torch.Tensor
    guidance: torch.Tensor | None


@torch.no_grad()
def make_batch(frozen: Frozen, config: EditTrainingConfig, triples: list[Triple], step: int, accelerator) -> Batch:
    """This process's part of the step's global batch, with its noise and timesteps."""
    flux, device = frozen.flux, accelerator.device
    part, seeds = process_batch(triples, step, config, accelerator)
    generators = [torch.Generator(device).manual_seed(s) for s in seeds]
    sources = [t.source.open() for t in part]
    source = flux.image_processor.preprocess(sources, frozen.height, frozen.width).to(device, flux.vae.dtype)
    target = flux.image_processor.preprocess([t.target.open() for t in part], frozen.height, frozen.width).to(device, flux.vae.dtype)

    requests = [Request(t.instruction, [image]) for t, image in zip(part, sources)]
    new = [i for i, t in enumerate(part) if t not in frozen.readings]
    if new:
        frozen.readings.update(zip([part[i] for i in new], frozen.pipe.plan([requests[i] for i in new])))
    conditioning = frozen.pipe.encode(requests, readings=[frozen.readings[t] for t in part])

    vae = flux.vae
    x0 = (vae.encode(target).latent_dist.mode() - vae.config.shift_factor) * vae.config.scaling_factor
    noise = torch.stack([torch.randn(x0.shape[1:], generator=g, device=device, dtype=x0.dtype) for g in generators])
    sigma = logit_normal_sigmas(generators=generators, device=device).to(x0.dtype)
    noisy, velocity = noised_and_velocity(x0, noise, sigma)
    image_ids = latent_image_ids(flux, frozen.height, frozen.width, device, x0.dtype)
    transformer = flux.transformer
    guidance = torch.full((len(part),), config.guidance, device=device) if transformer.config.guidance_embeds else None
    return Batch(source, conditioning, noisy, velocity, sigma, image_ids, guidance)


def flow_matching_loss(frozen: Frozen, batch: Batch, branch: LightControl | None, transformer=None) -> torch.Tensor:
    """MSE between FLUX's velocity (with the branch's samples added, when there is a branch) and
    noise - x0. `transformer`: the (possibly DDP-wrapped) FLUX transformer, when it trains."""
    transformer = transformer or frozen.flux.transformer
    dtype = frozen.flux.transformer.dtype
    samples = branch(batch.source.to(dtype), batch.sigma.to(dtype)) if branch is not None else None
    prediction = transformer(
        hidden_states=batch.latents.to(dtype), timestep=batch.sigma.to(dtype), guidance=batch.guidance, img_ids=batch.image_ids,
        controlnet_block_samples=samples, **batch.conditioning.transformer_kwargs(dtype, batch.latents.shape[1]),
    ).sample
    return F.mse_loss(prediction.float(), batch.velocity.float())
