"""`x2i distill`: train AlignNet by attention distillation (reference notes, section 4).

One process holds everything: the frozen FLUX transformer serves as teacher (conditioned by its own
T5 and CLIP) and as student (conditioned by the frozen MLLM through AlignNet); only AlignNet
trains. The same command runs on a CPU, a GPU, or many GPUs and nodes under `accelerate launch`
(DDP: AlignNet is small, so every rank holds all of it and gradients are averaged).

Every random draw of a step (the data order, each sample's noise and timestep) comes from
generators seeded by the run's seed, the step and the sample's place in the global batch. So the
data position is a function of the step, a resumed run continues exactly where it stopped, and
N processes with batch b see exactly what one process with batch N*b sees.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, gather_object
from diffusers.optimization import get_cosine_schedule_with_warmup
from tqdm.auto import tqdm

from x2i.alignnet import AlignNet, AlignNetConfig
from x2i.checkpoint import atomic_directory, latest_checkpoint, load_checkpoint, save_checkpoint
from x2i.distill import AttentionTaps, check_finite
from x2i.encoders import load_encoder
from x2i.encoders.base import EncoderOutput
from x2i.errors import X2IError
from x2i.pipeline import check_size, load_flux
from x2i.prompts import global_batch, read_prompts
from x2i.request import Request

TIMESTEPS = ("original", "logit-normal")


@dataclass
class DistillConfig:
    prompts: str  # .txt / .jsonl / WebDataset shards of English captions
    out: str
    mllm: str
    flux: str  # a FLUX pipeline WITH its T5 and CLIP: the teacher
    caption_key: str = "caption"
    steps: int = 10000
    batch: int = 1  # per process
    lr: float = 1e-4
    warmup: int = 100
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    temperature: float = 3.0
    # "original": t = 1.0 only (pure noise), as the authors trained. "logit-normal": t drawn per
    # sample; the latents at t are the teacher's own estimate of the image from pure noise (one
    # Euler step of its flow), so captions alone still suffice.
    timesteps: str = "original"
    height: int | None = None  # default: the size the FLUX VAE was made for (1024 for FLUX.1)
    width: int | None = None
    guidance: float = 3.5  # for FLUX models with a guidance embedding (dev)
    pad_to: int | None = None  # MLLM prompt length; default: T5's length (512 for FLUX.1)
    fusion: str = "conv"
    pooling: str = "masked_mean"
    # With this probability a prompt's content is hidden from AlignNet: every token but the last
    # `closing_tokens` (the chat template's closing ones) becomes padding, so AlignNet must also
    # read what the MLLM gathers at the end of the prompt, which is where an image request and its
    # caption look alike. 0: the original recipe.
    prompt_dropout: float = 0.0
    closing_tokens: int = 6
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    resume: bool = False
    gradient_checkpointing: bool = True
    progress: bool = True


def distill(config: DistillConfig) -> Path:
    if config.timesteps not in TIMESTEPS:
        raise X2IError(f"--timesteps must be one of {', '.join(TIMESTEPS)}")
    if config.steps < 1 or config.batch < 1:
        raise X2IError("steps and batch must be at least 1")
    out = Path(config.out)
    gpu = torch.cuda.is_available()
    # cpu=True lets CPU processes started by accelerate launch / torchrun form a gloo group.
    accelerator = Accelerator(cpu=not gpu, mixed_precision="bf16" if gpu else "no")
    if accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP):
        # Sharding AlignNet buys nothing (it and its optimizer state fit any GPU) and would make
        # this run's plain-file checkpoints rank-dependent. See docs/distill.md.
        raise X2IError("x2i distill runs under DDP; launch it with a multi-GPU (DDP) accelerate config, not DeepSpeed/FSDP")
    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32

    prompts = read_prompts(config.prompts, config.caption_key)
    flux = load_flux(config.flux, dtype, text_encoders=True)  # says so when T5/CLIP are missing
    flux.to(device)
    flux.set_progress_bar_config(disable=True)
    transformer = flux.transformer.requires_grad_(False).eval()
    if config.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    encoder = load_encoder(config.mllm, device=device, dtype=dtype)
    height = config.height or flux.vae.config.sample_size
    width = config.width or flux.vae.config.sample_size
    check_size(flux, height, width)
    t5_length = flux.tokenizer_2.model_max_length
    pad_to = config.pad_to or t5_length

    torch.manual_seed(config.seed)  # the same AlignNet init on every rank
    alignnet = AlignNet(
        AlignNetConfig(
            num_hidden_states=encoder.num_hidden_states,
            hidden_size=encoder.hidden_size,
            fusion=config.fusion,
            joint_attention_dim=transformer.config.joint_attention_dim,
            pooled_projection_dim=transformer.config.pooled_projection_dim,
            pooling=config.pooling,
            pad_to=pad_to,
        )
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
        generators = [torch.Generator(device).manual_seed(s) for s in seeds]

        with torch.no_grad():
            prompt_embeds, pooled, text_ids = flux.encode_prompt(texts, texts, device=device, max_sequence_length=t5_length)
            latents, image_ids = flux.prepare_latents(
                config.batch, transformer.config.in_channels // 4, height, width, dtype, device, generators
            )
            guidance = torch.full((config.batch,), config.guidance, device=device) if transformer.config.guidance_embeds else None
            sigma = torch.ones(config.batch, device=device)
            if config.timesteps == "logit-normal":
                sigma = torch.sigmoid(torch.stack([torch.randn((), generator=g, device=device) for g in generators]))
                velocity = transformer(latents, timestep=torch.ones_like(sigma), guidance=guidance, pooled_projections=pooled,
                                       encoder_hidden_states=prompt_embeds, txt_ids=text_ids, img_ids=image_ids).sample
                latents = latents - (1 - sigma.to(dtype))[:, None, None] * velocity  # Euler step from t=1 to sigma
            states = encoder.encode([Request(t) for t in texts], pad_to=pad_to)
            if config.prompt_dropout:
                dropped = torch.stack([torch.rand((), generator=g, device=device) for g in generators]) < config.prompt_dropout
                states = hide_content(states, dropped, config.closing_tokens)
            with taps.teacher(latents.shape[1]):
                transformer(latents, timestep=sigma, guidance=guidance, pooled_projections=pooled,
                            encoder_hidden_states=prompt_embeds, txt_ids=text_ids, img_ids=image_ids)

        with taps.student(latents.shape[1]), accelerator.autocast():
            conditioning = alignnet(states.hidden_states.float(), attention_mask=states.attention_mask)
            student_text_ids = torch.zeros(conditioning.prompt_embeds.shape[1], 3, device=device, dtype=text_ids.dtype)
            transformer(latents, timestep=sigma, guidance=guidance, pooled_projections=conditioning.pooled_prompt_embeds.to(dtype),
                        encoder_hidden_states=conditioning.prompt_embeds.to(dtype), txt_ids=student_text_ids, img_ids=image_ids)
        loss = taps.loss
        check_finite(loss)
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(alignnet.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        taps.clear()

        mean_loss = accelerator.reduce(loss.detach(), "mean").item()
        log.write({"step": step + 1, "loss": mean_loss, "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm)})
        bar.set_postfix(loss=f"{mean_loss:.4g}", terms=taps.num_terms)

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


def hide_content(states, rows: torch.Tensor, keep: int):
    """Replace all but the last `keep` tokens of the chosen rows by padding (states and mask)."""
    hidden, mask = states.hidden_states.clone(), states.attention_mask.clone()
    for i in rows.nonzero().flatten().tolist():
        padding = hidden[i, :, 0] if mask[i, 0] == 0 else torch.zeros_like(hidden[i, :, 0])  # left padding
        hidden[i, :, :-keep] = padding[:, None]
        mask[i, :-keep] = 0
    return EncoderOutput(hidden, mask)


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
