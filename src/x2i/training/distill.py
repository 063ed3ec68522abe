"""`x2i distill`: train AlignNet by attention distillation (reference notes, section 4).

One process holds everything: the frozen FLUX transformer serves as teacher (conditioned by its own
T5 and CLIP) and as student (conditioned by the frozen MLLM through AlignNet); only AlignNet
trains. The same command runs on a CPU, a GPU, or many GPUs and nodes under `accelerate launch`
(DDP: AlignNet is small, so every rank holds all of it and gradients are averaged).

Every random draw of a step (the data order, each sample's noise and timestep) comes from
generators seeded by the run's seed, the step and the sample's place in the global batch. So the
data position is a function of the step, a resumed run continues exactly where it stopped, and
N processes with batch b see exactly what one process with batch N*b sees.

A step, top to bottom: `make_inputs` (noise, timestep, the teacher's conditioning from T5/CLIP, the
MLLM's states), then `loss.distillation_loss` (teacher pass, student pass through
`conditioning.condition`, the terms); `trainer.train` does backward, the optimizer, logs and
checkpoints, as for every x2i trainer.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from x2i.errors import X2IError
from x2i.inference.alignnet import STREAMS, AlignNet
from x2i.inference.conditioning import FluxConditioning, condition, stream_places
from x2i.inference.loaders import (
    check_size,
    default_dtype,
    default_size,
    load_encoder,
    load_flux,
)
from x2i.inference.model_card import alignnet_card
from x2i.inference.request import Request
from x2i.inference.work_bounds import image_tokens
from x2i.options import command_line, option
from x2i.training.checkpoints import TrainedModel
from x2i.training.data import read_captions
from x2i.training.flow_matching import logit_normal_sigmas
from x2i.training.loss import TERMS, AttentionTaps, FluxInputs, distillation_loss
from x2i.training.trainer import (
    TrainConfig,
    check_run,
    make_accelerator,
    process_batch,
    train,
)

TIMESTEPS = ("original", "logit-normal", "mixed")
MAX_T5_TOKENS = 512  # FluxPipeline.encode_prompt refuses a longer max_sequence_length


@dataclass(kw_only=True)
class DistillConfig(TrainConfig):
    prompts: str = option(help="captions: .txt (one per line), .jsonl, or WebDataset .tar shards (a file or a directory)")
    mllm: str | None = option(None, "MLLM directory or hub id, whose AlignNet is distilled (default: the shipped mini MLLM, with the "
                              "mini FLUX only: any other FLUX needs it named)")
    flux: str = option("mini", "FLUX pipeline WITH its T5 and CLIP, the teacher (mini: the shipped mini FLUX)")
    caption_key: str = option("caption", "JSON key of the caption in .jsonl lines or WebDataset .json members (the authors': caption_en)")
    temperature: float = option(3.0, "softmax temperature of every term")
    terms: str | None = option(None, "which attention outputs are compared. words: every image term, and text terms between the "
                               "T5 token and the MLLM token that read the same caption characters; padded: every term, token k with "
                               "token k, T5 and the MLLM both padded to --pad-to (the release's 512/512); image: image tokens only. "
                               "Default: padded, as the release; words for the mini FLUX, whose small T5 breaks past its 32 tokens",
                               choices=TERMS)
    timesteps: str = option("original", "original: t = 1.0 only, as the authors; logit-normal: t ~ sigmoid(N(0,1)); mixed: t = 1.0 "
                            "for --t1-share of the samples, the others at the sigmas FLUX's sampler visits (--sampling-steps). "
                            "Latents at t < 1 are one Euler step of the teacher's own flow from pure noise", choices=TIMESTEPS)
    t1_share: float = option(0.5, "with --timesteps mixed: the share of samples at t = 1.0", metavar="P")
    sampling_steps: int = option(28, "with --timesteps mixed: the sampler whose sigmas are drawn (its steps; shifted as FLUX shifts them at this size)")
    height: int | None = option(None, "default: the size the FLUX VAE was made for (1024 for FLUX.1)")
    width: int | None = option(None, "default: the size the FLUX VAE was made for")
    guidance: float = option(3.5, "for FLUX models with a guidance embedding (dev)")
    pad_to: int | None = option(None, "MLLM prompts are left-padded to N tokens (longer ones keep their last N states) and, with "
                                "--terms padded, T5 reads N tokens too; saved in the AlignNet for inference. Default: T5's length", metavar="N")
    fusion: str = option("conv", "how AlignNet fuses the MLLM's layers", choices=("conv", "scale"))
    pooling: str = option("masked_mean", "how AlignNet pools the vector FLUX reads in place of CLIP's", choices=("mean", "masked_mean"))
    refiner_layers: int = option(0, "bidirectional transformer layers over AlignNet's tokens (0: the release's AlignNet)")
    stream: str = option("all", "which of AlignNet's tokens FLUX reads, saved in the AlignNet. all: every one, chat template and "
                         "padding included (the release); request: only the request's own (its text, media and answers), so "
                         "FLUX's text stream is as short as the request (with the prompt's last --closing-tokens)", choices=STREAMS)
    registers: int = option(0, "with --stream request: N learned tokens FLUX reads beside the request's, standing in for the T5 "
                            "padding FLUX attends to in its teacher's stream", metavar="N")
    # With this probability a prompt's content is hidden from AlignNet: every token but the last
    # `closing_tokens` (the chat template's closing ones) becomes padding, so AlignNet must also
    # read what the MLLM gathers at the end of the prompt. 0: the original recipe.
    prompt_dropout: float = option(0.0, "with probability P hide a prompt's content from AlignNet, all but the chat template's "
                                   "closing tokens, so it also learns to read the MLLM's summary there; 0: the original recipe", metavar="P")
    closing_tokens: int = option(6, "the chat template's closing tokens (6 for Qwen2.5-VL), where a causal MLLM has read the whole "
                                 "prompt: what --prompt-dropout keeps, and what FLUX reads beside the request's with --stream request", metavar="K")


@dataclass
class Models:
    flux: object  # FluxPipeline with T5 and CLIP
    encoder: object  # MLLMEncoder
    height: int
    width: int
    t5_length: int
    pad_to: int
    sigmas: torch.Tensor | None  # what the sampler visits, for --timesteps mixed


def distill(config: DistillConfig) -> Path:
    config = with_defaults(config)
    if config.timesteps not in TIMESTEPS or config.terms not in TERMS:
        raise X2IError(f"--timesteps must be one of {', '.join(TIMESTEPS)} and --terms one of {', '.join(TERMS)}")
    if not 0 <= config.t1_share <= 1 or not config.temperature > 0 or (config.pad_to is not None and config.pad_to < 1):
        raise X2IError("--t1-share must be between 0 and 1, --temperature positive and --pad-to at least 1")
    if not math.isfinite(config.guidance):
        raise X2IError(f"--guidance must be a finite number, not {config.guidance}")
    if not 0 <= config.prompt_dropout <= 1 or config.closing_tokens < 0:
        raise X2IError("--prompt-dropout must be between 0 and 1 and --closing-tokens at least 0")
    if config.registers and config.stream != "request" or config.registers < 0:
        raise X2IError("--registers (at least 0) goes with --stream request")
    if config.prompt_dropout and config.stream == "request":
        raise X2IError("--prompt-dropout hides a prompt's own tokens, which are all FLUX reads with --stream request: give one of them")
    if config.terms == "padded" and (config.pad_to or 0) > MAX_T5_TOKENS:
        raise X2IError(f"--pad-to {config.pad_to} with --terms padded: FLUX's T5 reads at most {MAX_T5_TOKENS} tokens; "
                       f"give --pad-to {MAX_T5_TOKENS} or less, or --terms words")
    check_run(config, "alignnet")
    accelerator = make_accelerator("x2i distill")
    device = accelerator.device

    prompts = read_captions(config.prompts, config.caption_key)
    models = load_models(config, device)
    transformer = models.flux.transformer
    torch.manual_seed(config.seed)  # the same AlignNet init on every rank
    alignnet = AlignNet(
        num_hidden_states=models.encoder.num_hidden_states, hidden_size=models.encoder.hidden_size, fusion=config.fusion,
        joint_attention_dim=transformer.config.joint_attention_dim, pooled_projection_dim=transformer.config.pooled_projection_dim,
        pooling=config.pooling, pad_to=models.pad_to, refiner_layers=config.refiner_layers, stream=config.stream,
        **({"closing_tokens": config.closing_tokens, "registers": config.registers} if config.stream == "request" else {}),
    ).train()
    alignnet.card = alignnet_card(str(config.mllm), str(config.flux), command_line("x2i distill", config), config.steps,
                                  config.batch * accelerator.num_processes)
    taps = AttentionTaps(transformer, config.temperature)

    def step_loss(model, step):
        texts, seeds = process_batch(prompts, step, config, accelerator)
        inputs, teacher, states, pairs = make_inputs(models, config, texts, seeds, device)
        result = distillation_loss(transformer, taps, inputs, teacher, condition(model, states), config.terms, pairs)
        return result.loss, {"terms": result.counts}

    # The teacher's outputs stay until the backward pass (gradient checkpointing recomputes terms).
    final = train(config, accelerator, TrainedModel("alignnet", alignnet), alignnet, step_loss, desc="distill",
                  loss_label="attention distillation loss", after_backward=taps.clear)
    taps.remove()
    return final


def with_defaults(config: DistillConfig) -> DistillConfig:
    """The defaults that depend on the FLUX: the mini world's (the mini MLLM, word pairs) for the
    mini FLUX only; any other FLUX gets the release's pairing and must name its MLLM."""
    mini = str(config.flux) == "mini"
    if config.mllm is None and not mini:
        raise X2IError(f"x2i distill --flux {config.flux} needs --mllm: the MLLM whose AlignNet is distilled "
                       "(the shipped mini MLLM goes with the mini FLUX only)")
    return dataclasses.replace(config, mllm=config.mllm or "mini", terms=config.terms or ("words" if mini else "padded"))


def load_models(config: DistillConfig, device: torch.device) -> Models:
    dtype = default_dtype(device)
    flux = load_flux(config.flux, dtype, text_encoders=True)  # says so when T5/CLIP are missing
    flux.to(device)
    flux.set_progress_bar_config(disable=True)
    transformer = flux.transformer.requires_grad_(False).eval()
    if config.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    encoder = load_encoder(config.mllm, device=device, dtype=dtype)
    size = default_size(flux)
    height, width = size if config.height is None else config.height, size if config.width is None else config.width
    check_size(flux, height, width)
    t5_length = flux.tokenizer_2.model_max_length
    pad_to = config.pad_to or t5_length
    sigmas = None
    if config.timesteps == "mixed":
        sigmas = sampler_sigmas(flux, config.sampling_steps, image_tokens(flux, height, width))
    return Models(flux, encoder, height, width, t5_length, pad_to, sigmas)


def sampler_sigmas(flux, steps: int, image_tokens: int) -> torch.Tensor:
    """The sigmas `FluxPipeline` visits in `steps` steps at this size, shifted as it shifts them."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    scheduler, c = flux.scheduler, flux.scheduler.config
    mu = calculate_shift(image_tokens, c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096),
                         c.get("base_shift", 0.5), c.get("max_shift", 1.15))
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    return scheduler.sigmas[:-1].float().cpu()


@torch.no_grad()
def make_inputs(models: Models, config: DistillConfig, texts: list[str], seeds: list[int], device: torch.device):
    """One step's shared FLUX inputs, the teacher's conditioning (T5/CLIP), and the MLLM's states."""
    flux, transformer = models.flux, models.flux.transformer
    dtype, batch = transformer.dtype, len(texts)
    texts = cut_captions(models.encoder, texts, models.pad_to)
    generators = [torch.Generator(device).manual_seed(s) for s in seeds]
    # Padded pairing: T5 reads as many tokens as the MLLM prompt has (the release's 512/512).
    t5_length = models.pad_to if config.terms == "padded" else models.t5_length
    prompt_embeds, pooled, _ = flux.encode_prompt(texts, texts, device=device, max_sequence_length=t5_length)
    teacher = FluxConditioning(prompt_embeds, pooled)
    latents, image_ids = flux.prepare_latents(batch, transformer.config.in_channels // 4, models.height, models.width, dtype, device, generators)
    guidance = torch.full((batch,), config.guidance, device=device) if transformer.config.guidance_embeds else None
    sigma = torch.ones(batch, device=device)
    if config.timesteps == "logit-normal":
        sigma = logit_normal_sigmas(generators=generators, device=device)
    elif config.timesteps == "mixed":
        draws = [(torch.rand((), generator=g, device=device).item(), torch.randint(len(models.sigmas), (), generator=g, device=device).item())
                 for g in generators]
        sigma = torch.tensor([1.0 if u < config.t1_share else models.sigmas[i].item() for u, i in draws], device=device)
    if config.timesteps != "original":
        at_one = FluxInputs(latents, image_ids, torch.ones_like(sigma), guidance)
        velocity = at_one.run(transformer, teacher).sample
        latents = latents - (1 - sigma.to(dtype))[:, None, None] * velocity  # Euler step from t=1 to sigma
    states = models.encoder.encode([Request(t) for t in texts], pad_to=models.pad_to, request_tokens=config.stream == "request")
    if states.hidden_states.shape[2] > models.pad_to:
        warnings.warn(f"a prompt is longer than --pad-to {models.pad_to} tokens: AlignNet reads its last {models.pad_to} states", stacklevel=1)
        states = states.last(models.pad_to)
    dropped = torch.zeros(batch, dtype=torch.bool)
    if config.prompt_dropout:
        dropped = torch.stack([torch.rand((), generator=g, device=device) for g in generators]).cpu() < config.prompt_dropout
        states = states.keep_last([config.closing_tokens if d else None for d in dropped.tolist()])
    pairs = None
    if config.terms == "words":
        pairs = word_pairs(flux.tokenizer_2, models.encoder, texts, t5_length, states.hidden_states.shape[2])
        pairs[dropped.to(pairs.device)] = -1  # a hidden caption has no words left to pair
        if config.stream == "request":  # FLUX reads the request's tokens only: their places in its stream
            places = stream_places(states, config.closing_tokens, config.registers).to(pairs.device)
            pairs = torch.where(pairs >= 0, places.gather(1, pairs.clamp(min=0)), -1)
    return FluxInputs(latents, image_ids, sigma, guidance), teacher, states, pairs


def cut_captions(encoder, texts: list[str], max_tokens: int) -> list[str]:
    """Captions longer than the MLLM prompt AlignNet reads are cut to their first `max_tokens`
    tokens, with a warning: T5 reads a fixed length too, and a caption of a whole book would
    otherwise stall a step."""
    cut = [encoder.cut_text(t, max_tokens) for t in texts]
    for before, after in zip(texts, cut):
        if after != before:
            warnings.warn(f"a caption of {len(before)} characters is longer than {max_tokens} tokens (--pad-to): "
                          f"distillation reads its first {max_tokens} tokens", stacklevel=2)
    return cut


def word_pairs(t5_tokenizer, encoder, captions: list[str], t5_length: int, mllm_length: int) -> torch.Tensor:
    """For each T5 token of each caption, the index (in the left-padded MLLM batch of `mllm_length`
    tokens) of the MLLM token that holds the T5 token's last character; -1 for T5 tokens with no
    characters (EOS, padding). The causal MLLM's token there has read the whole word."""
    pairs = torch.full((len(captions), t5_length), -1, dtype=torch.long)
    t5 = t5_tokenizer(captions, max_length=t5_length, padding="max_length", truncation=True, return_offsets_mapping=True)
    for row, caption in enumerate(captions):
        words = [(k, b) for k, (a, b) in enumerate(t5["offset_mapping"][row]) if b > a]
        found = encoder.caption_tokens(caption, [b for _, b in words], mllm_length)
        if found is None:
            continue  # quotes or escapes move the caption's characters inside the dict string: no text pairs
        for (k, _), j in zip(words, found):
            pairs[row, k] = j
    return pairs.to(encoder.device)
