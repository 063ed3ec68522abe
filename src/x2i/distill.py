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
`conditioning.condition`, the terms), then backward and the optimizer.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, gather_object
from diffusers.optimization import get_cosine_schedule_with_warmup
from tqdm.auto import tqdm

from x2i.alignnet import AlignNet
from x2i.checkpoint import atomic_directory, latest_checkpoint, load_checkpoint, save_checkpoint
from x2i.conditioning import FluxConditioning, condition
from x2i.encoders.base import EncoderOutput
from x2i.errors import X2IError
from x2i.loaders import check_size, default_size, load_encoder, load_flux
from x2i.loss import TERMS, AttentionTaps, FluxInputs, distillation_loss
from x2i.options import option
from x2i.prompts import global_batch, read_prompts
from x2i.request import Request

TIMESTEPS = ("original", "logit-normal", "mixed")


@dataclass
class DistillConfig:
    prompts: str = option(help="captions: .txt (one per line), .jsonl, or WebDataset .tar shards (a file or a directory)")
    out: str = option(help="run directory: alignnet/, checkpoints/, log.jsonl, loss.png")
    mllm: str | None = option(None, "MLLM directory or hub id (default: the shipped mini MLLM)")
    flux: str | None = option(None, "FLUX pipeline WITH its T5 and CLIP, the teacher (default: the shipped mini teacher)")
    caption_key: str = option("caption", "JSON key of the caption in .jsonl lines or WebDataset .json members (the authors': caption_en)")
    steps: int = option(10000, "optimizer steps")
    batch: int = option(1, "prompts per process per step; the global batch is this times the number of processes")
    lr: float = option(1e-4, "AdamW learning rate (8-bit AdamW on GPU when bitsandbytes is installed)")
    warmup: int = option(100, "linear warm-up steps before the cosine decay")
    weight_decay: float = option(1e-2, "AdamW weight decay")
    max_grad_norm: float = option(1.0, "gradient clipping")
    temperature: float = option(3.0, "softmax temperature of every term")
    terms: str = option("words", "which attention outputs are compared. words: every image term, and text terms between the "
                        "T5 token and the MLLM token that read the same caption characters; padded: every term, token k with "
                        "token k, T5 and the MLLM both padded to --pad-to (the release's 512/512); image: image tokens only",
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
    # With this probability a prompt's content is hidden from AlignNet: every token but the last
    # `closing_tokens` (the chat template's closing ones) becomes padding, so AlignNet must also
    # read what the MLLM gathers at the end of the prompt. 0: the original recipe.
    prompt_dropout: float = option(0.0, "with probability P hide a prompt's content from AlignNet, all but the chat template's "
                                   "closing tokens, so it also learns to read the MLLM's summary there; 0: the original recipe", metavar="P")
    closing_tokens: int = option(6, "how many final prompt tokens --prompt-dropout keeps (6 for Qwen2.5-VL)", metavar="K")
    seed: int = option(0, "the run's seed: data order, noise, timesteps, AlignNet's initialisation")
    checkpoint_every: int = option(500, "steps between checkpoints", metavar="N")
    keep_checkpoints: int = option(3, "older checkpoints are deleted (0: keep all)", metavar="K")
    resume: bool = option(False, "continue from the newest checkpoint in OUT/checkpoints")
    gradient_checkpointing: bool = option(True, "faster, more memory", flag="--no-gradient-checkpointing")
    progress: bool = True


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
    if config.timesteps not in TIMESTEPS or config.terms not in TERMS:
        raise X2IError(f"--timesteps must be one of {', '.join(TIMESTEPS)} and --terms one of {', '.join(TERMS)}")
    if config.steps < 1 or config.batch < 1 or not 0 <= config.t1_share <= 1:
        raise X2IError("steps and batch must be at least 1, --t1-share between 0 and 1")
    out = Path(config.out)
    gpu = torch.cuda.is_available()
    # cpu=True lets CPU processes started by accelerate launch / torchrun form a gloo group.
    accelerator = Accelerator(cpu=not gpu, mixed_precision="bf16" if gpu else "no")
    if accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP):
        # Sharding AlignNet buys nothing (it and its optimizer state fit any GPU) and would make
        # this run's plain-file checkpoints rank-dependent. See docs/distill.md.
        raise X2IError("x2i distill runs under DDP; launch it with a multi-GPU (DDP) accelerate config, not DeepSpeed/FSDP")
    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes

    prompts = read_prompts(config.prompts, config.caption_key)
    models = load_models(config, device)
    transformer = models.flux.transformer
    torch.manual_seed(config.seed)  # the same AlignNet init on every rank
    alignnet = AlignNet(
        num_hidden_states=models.encoder.num_hidden_states, hidden_size=models.encoder.hidden_size, fusion=config.fusion,
        joint_attention_dim=transformer.config.joint_attention_dim, pooled_projection_dim=transformer.config.pooled_projection_dim,
        pooling=config.pooling, pad_to=models.pad_to, refiner_layers=config.refiner_layers,
    ).train()
    optimizer = make_optimizer(alignnet, config.lr, config.weight_decay, device)
    scheduler = get_cosine_schedule_with_warmup(optimizer, config.warmup, config.steps)

    start = 0
    checkpoints = out / "checkpoints"
    if config.resume and (last := latest_checkpoint(checkpoints)) is not None:
        start = load_checkpoint(last, alignnet, optimizer, scheduler)["step"]
        accelerator.print(f"resuming from {last} (step {start})")
    # The scheduler is stepped by hand, once per step: accelerate's wrapper would step it once per process.
    alignnet, optimizer = accelerator.prepare(alignnet, optimizer)

    taps = AttentionTaps(transformer, config.temperature)
    log = _Log(out / "log.jsonl", start, accelerator.is_main_process)
    global_size = config.batch * world
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, desc="distill", disable=not (config.progress and accelerator.is_main_process))
    for step in bar:
        texts = global_batch(prompts, step, global_size, config.seed)[rank * config.batch : (rank + 1) * config.batch]
        seeds = [_sample_seed(config.seed, step * global_size + rank * config.batch + i) for i in range(config.batch)]
        inputs, teacher, states, pairs = make_inputs(models, config, texts, seeds, device)
        with accelerator.autocast():
            result = distillation_loss(transformer, taps, inputs, teacher, condition(alignnet, states), config.terms, pairs)
        accelerator.backward(result.loss)
        grad_norm = accelerator.clip_grad_norm_(alignnet.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        taps.clear()

        mean_loss = accelerator.reduce(result.loss.detach(), "mean").item()
        log.write({"step": step + 1, "loss": mean_loss, "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                   "terms": result.counts})
        bar.set_postfix(loss=f"{mean_loss:.4g}", terms=sum(result.counts.values()))

        done = step + 1
        if done % config.checkpoint_every == 0 or done == config.steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                extra = {"prompts_seen": done * global_size, "processes": world, "config": asdict(config)}
                save_checkpoint(checkpoints, done, accelerator.unwrap_model(alignnet), optimizer, scheduler, extra, config.keep_checkpoints)
            accelerator.wait_for_everyone()

    taps.remove()
    final = out / "alignnet"
    trained = accelerator.unwrap_model(alignnet)
    # Every rank's weights, fingerprinted: DDP keeps them identical, and the run says so.
    fingerprints = gather_object([_fingerprint(trained)])
    if accelerator.is_main_process:
        with atomic_directory(final) as tmp:
            trained.save_pretrained(tmp)
        plot_loss(out / "log.jsonl", out / "loss.png")
        run = {"processes": world, "batch_per_process": config.batch, "global_batch": global_size, "alignnet_sha256_per_rank": fingerprints}
        (out / "run.json").write_text(json.dumps(run, indent=1) + "\n")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final


def load_models(config: DistillConfig, device: torch.device) -> Models:
    from x2i.mini import weights_dir

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    flux = load_flux(config.flux or weights_dir("teacher"), dtype, text_encoders=True)  # says so when T5/CLIP are missing
    flux.to(device)
    flux.set_progress_bar_config(disable=True)
    transformer = flux.transformer.requires_grad_(False).eval()
    if config.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    encoder = load_encoder(config.mllm or weights_dir("mllm"), device=device, dtype=dtype)
    size = default_size(flux)
    height, width = size if config.height is None else config.height, size if config.width is None else config.width
    check_size(flux, height, width)
    t5_length = flux.tokenizer_2.model_max_length
    pad_to = config.pad_to or t5_length
    sigmas = None
    if config.timesteps == "mixed":
        sigmas = sampler_sigmas(flux, config.sampling_steps, (height // flux.vae_scale_factor // 2) * (width // flux.vae_scale_factor // 2))
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
    generators = [torch.Generator(device).manual_seed(s) for s in seeds]
    # Padded pairing: T5 reads as many tokens as the MLLM prompt has (the release's 512/512).
    t5_length = models.pad_to if config.terms == "padded" else models.t5_length
    prompt_embeds, pooled, _ = flux.encode_prompt(texts, texts, device=device, max_sequence_length=t5_length)
    teacher = FluxConditioning(prompt_embeds, pooled)
    latents, image_ids = flux.prepare_latents(batch, transformer.config.in_channels // 4, models.height, models.width, dtype, device, generators)
    guidance = torch.full((batch,), config.guidance, device=device) if transformer.config.guidance_embeds else None
    sigma = torch.ones(batch, device=device)
    if config.timesteps == "logit-normal":
        sigma = torch.sigmoid(torch.stack([torch.randn((), generator=g, device=device) for g in generators]))
    elif config.timesteps == "mixed":
        draws = [(torch.rand((), generator=g, device=device).item(), torch.randint(len(models.sigmas), (), generator=g, device=device).item())
                 for g in generators]
        sigma = torch.tensor([1.0 if u < config.t1_share else models.sigmas[i].item() for u, i in draws], device=device)
    if config.timesteps != "original":
        at_one = FluxInputs(latents, image_ids, torch.ones_like(sigma), guidance)
        velocity = at_one.run(transformer, teacher).sample
        latents = latents - (1 - sigma.to(dtype))[:, None, None] * velocity  # Euler step from t=1 to sigma
    states = models.encoder.encode([Request(t) for t in texts], pad_to=models.pad_to)
    if states.hidden_states.shape[2] > models.pad_to:
        warnings.warn(f"a prompt is longer than --pad-to {models.pad_to} tokens: AlignNet reads its last {models.pad_to} states", stacklevel=1)
        states = EncoderOutput(states.hidden_states[:, :, -models.pad_to :], states.attention_mask[:, -models.pad_to :])
    if config.prompt_dropout:
        dropped = torch.stack([torch.rand((), generator=g, device=device) for g in generators]) < config.prompt_dropout
        states = states.keep_last([config.closing_tokens if d else None for d in dropped.tolist()])
    pairs = word_pairs(flux.tokenizer_2, models.encoder, texts, t5_length, states.hidden_states.shape[2]) if config.terms == "words" else None
    return FluxInputs(latents, image_ids, sigma, guidance), teacher, states, pairs


def word_pairs(t5_tokenizer, encoder, captions: list[str], t5_length: int, mllm_length: int) -> torch.Tensor:
    """For each T5 token of each caption, the index (in the left-padded MLLM batch of `mllm_length`
    tokens) of the MLLM token that holds the T5 token's last character; -1 for T5 tokens with no
    characters (EOS, padding). The causal MLLM's token there has read the whole word."""
    pairs = torch.full((len(captions), t5_length), -1, dtype=torch.long)
    t5 = t5_tokenizer(captions, max_length=t5_length, padding="max_length", truncation=True, return_offsets_mapping=True)
    for row, caption in enumerate(captions):
        located = encoder.caption_token_ends(caption)
        if located is None:
            continue  # quotes or escapes move the caption's characters inside the dict string: no text pairs
        start, ends = located
        shift = mllm_length - len(ends)  # left padding (or, when negative, the states cut from the left)
        for k, (a, b) in enumerate(t5["offset_mapping"][row]):
            if b > a:
                j = int(torch.searchsorted(ends, start + b - 1, right=True)) + shift  # first token ending after that character
                pairs[row, k] = j if 0 <= j < mllm_length else -1
    return pairs.to(encoder.device)


def make_optimizer(alignnet: AlignNet, lr: float, weight_decay: float, device: torch.device):
    """AdamW; bitsandbytes' 8-bit AdamW on GPU when it is installed (as the authors trained)."""
    if device.type == "cuda":
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(alignnet.parameters(), lr=lr, weight_decay=weight_decay)
        except ImportError:
            pass
    return torch.optim.AdamW(alignnet.parameters(), lr=lr, weight_decay=weight_decay)


def _sample_seed(seed: int, index: int) -> int:
    """A seed per (run, global sample index): independent of how samples are split over processes."""
    return (seed * 1_000_003 + index) % (2**63 - 1)


def _fingerprint(alignnet: AlignNet) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(alignnet.state_dict().items()):
        digest.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


class _Log:
    """log.jsonl, one line per step; on resume, lines past the resumed step are dropped."""

    def __init__(self, path: Path, start: int, active: bool):
        self.path, self.active = path, active
        if not active:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if start and path.is_file():
            kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= start]
        path.write_text("".join(line + "\n" for line in kept))

    def write(self, row: dict) -> None:
        if self.active:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")


def plot_loss(log: Path, image: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log.read_text().splitlines() if line]
    steps, losses = [r["step"] for r in rows], [r["loss"] for r in rows]
    window = max(1, len(losses) // 50)
    smooth = [sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1]) for i in range(len(losses))]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, losses, alpha=0.3, label="loss")
    ax.plot(steps, smooth, label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel("attention distillation loss")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(image, dpi=100)
    plt.close(fig)

