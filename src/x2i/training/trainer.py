"""The training loop every x2i trainer shares: `x2i distill` (AlignNet), `x2i lightcontrol train`
and `x2i lora train`.

A trainer supplies what it trains (`checkpoint.Trained`), the module accelerate wraps, and
`step_loss(module, step) -> (loss, values to log)`; this loop does the rest the same way for all:
AdamW (`--optimizer`: 8-bit on GPU when bitsandbytes is installed) with warm-up and cosine decay, accelerate
(one CPU, one GPU, or DDP over many), gradient clipping, a progress bar, `log.jsonl`, atomic
checkpoints every N steps, exact `--resume`, and at the end the trained weights, `loss.png` and
`run.json` (each rank's weight fingerprint: DDP keeps them identical, and the run says so).

Exact resume rests on one rule the trainers keep: every random draw of a step comes from
generators seeded by (run seed, step, sample's place in the global batch) — `process_batch`
gives each process its samples and their seeds — so the data position and the noise are
functions of the step alone.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, gather_object
from diffusers.optimization import get_cosine_schedule_with_warmup

from x2i.errors import X2IError
from x2i.media.files import atomic_directory
from x2i.options import option
from x2i.training.checkpoints import (
    Trained,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from x2i.training.data import global_batch
from x2i.training.loop import run_steps

OPTIMIZERS = ("auto", "adamw", "adamw8bit")


@dataclass(kw_only=True)
class TrainConfig:
    """The options every trainer has (each trainer's config adds its own and may change defaults)."""

    out: str = option(help="run directory: the trained weights, checkpoints/, log.jsonl, loss.png, run.json")
    steps: int = option(10000, "optimizer steps")
    batch: int = option(1, "samples per process per step; the global batch is this times the number of processes")
    lr: float = option(1e-4, "AdamW learning rate")
    optimizer: str = option("auto", "adamw; adamw8bit (bitsandbytes, CUDA: as the authors trained); auto: adamw8bit on CUDA when "
                            "bitsandbytes is installed, else adamw, with a line saying so", choices=OPTIMIZERS)
    warmup: int = option(100, "linear warm-up steps before the cosine decay")
    weight_decay: float = option(1e-2, "AdamW weight decay")
    max_grad_norm: float = option(1.0, "gradient clipping")
    seed: int = option(0, "the run's seed: data order, noise, timesteps, the initialisation of what trains")
    checkpoint_every: int = option(500, "steps between checkpoints", metavar="N")
    keep_checkpoints: int = option(3, "older checkpoints are deleted (0: keep all)", metavar="K")
    resume: bool = option(False, "continue from the newest checkpoint in OUT/checkpoints")
    overwrite: bool = option(False, "replace the run already in OUT (its weights, checkpoints and log); without it, or --resume, such a run is refused")
    gradient_checkpointing: bool = option(True, "faster, more memory", flag="--no-gradient-checkpointing")
    progress: bool = True


def check_run(config: TrainConfig, trained_name: str) -> None:
    """Before anything loads: the options every trainer shares are in range, and OUT holds no
    earlier run unless --resume continues it or --overwrite replaces it (nothing is lost silently)."""
    numbers = {"--lr": config.lr, "--weight-decay": config.weight_decay, "--max-grad-norm": config.max_grad_norm}
    if not all(math.isfinite(v) for v in numbers.values()) or config.lr <= 0 or config.max_grad_norm <= 0 or config.weight_decay < 0:
        raise X2IError("--lr and --max-grad-norm must be positive numbers, --weight-decay a number of at least 0")
    if config.steps < 1 or config.batch < 1 or config.checkpoint_every < 1 or config.warmup < 0 or config.keep_checkpoints < 0:
        raise X2IError("--steps, --batch and --checkpoint-every must be at least 1, --warmup and --keep-checkpoints at least 0")
    if not 0 <= config.seed < 2**63:
        raise X2IError("--seed must be between 0 and 2^63 - 1")
    if config.optimizer not in OPTIMIZERS:
        raise X2IError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}")
    if config.optimizer == "adamw8bit" and not (torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes")):
        raise X2IError("--optimizer adamw8bit needs a CUDA GPU and bitsandbytes (pip install bitsandbytes); or give --optimizer adamw")
    if config.resume and config.overwrite:
        raise X2IError("--resume continues the run in OUT and --overwrite replaces it: give one")
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise X2IError(f"--out {out} is a file; a run writes a directory")
    earlier = [name for name in (trained_name, "checkpoints", "log.jsonl", "run.json") if (out / name).exists()]
    if earlier and not (config.resume or config.overwrite):
        raise X2IError(f"{out} already holds a run ({', '.join(earlier)}): continue it with --resume, or replace it with --overwrite")


def make_accelerator(command: str) -> Accelerator:
    """bf16 autocast on GPU; on CPU, `cpu=True` lets processes started by accelerate launch /
    torchrun form a gloo group."""
    gpu = torch.cuda.is_available()
    accelerator = Accelerator(cpu=not gpu, mixed_precision="bf16" if gpu else "no")
    if accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP):
        # What trains is small (it and its optimizer state fit any GPU): sharding it buys nothing and
        # would make the plain-file checkpoints rank-dependent. See docs/distill.md.
        raise X2IError(f"{command} runs under DDP; launch it with a multi-GPU (DDP) accelerate config, not DeepSpeed/FSDP")
    return accelerator


def train(
    config: TrainConfig,
    accelerator: Accelerator,
    trained: Trained,
    module: torch.nn.Module,
    step_loss: Callable[[torch.nn.Module, int], tuple[torch.Tensor, dict]],
    desc: str,
    loss_label: str = "loss",
    after_backward: Callable[[], None] | None = None,
) -> Path:
    """Train `module`'s parameters that require grad; returns OUT/<trained.name>. `step_loss`
    gets the module as accelerate wraps it (DDP on many processes) and the 0-based step."""
    out = Path(config.out)
    world = accelerator.num_processes
    parameters = [p for p in module.parameters() if p.requires_grad]
    optimizer = make_optimizer(parameters, config, accelerator)
    scheduler = get_cosine_schedule_with_warmup(optimizer, config.warmup, config.steps)

    start = 0
    checkpoints = out / "checkpoints"
    if config.overwrite and accelerator.is_main_process and checkpoints.is_dir():
        shutil.rmtree(checkpoints)  # asked for; a later --resume must not pick up the replaced run's steps
    if config.resume and (last := latest_checkpoint(checkpoints)) is not None:
        start = load_checkpoint(last, trained, optimizer, scheduler)["step"]
        accelerator.print(f"resuming from {last} (step {start})")
    # The scheduler is stepped by hand, once per step: accelerate's wrapper would step it once per process.
    module, optimizer = accelerator.prepare(module, optimizer)

    log = _Log(out / "log.jsonl", start, accelerator.is_main_process)

    def autocast_loss(step):
        with accelerator.autocast():
            return step_loss(module, step)

    def backward(loss):
        accelerator.backward(loss)
        if after_backward is not None:
            after_backward()

    def after_step(step, loss, grad_norm, values):
        mean_loss = accelerator.reduce(loss.detach(), "mean").item()
        log.write({"step": step + 1, "loss": mean_loss, "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm), **values})
        done = step + 1
        if done % config.checkpoint_every == 0 or done == config.steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                extra = {"samples_seen": done * config.batch * world, "processes": world, "config": asdict(config)}
                save_checkpoint(checkpoints, done, trained, optimizer, scheduler, extra, config.keep_checkpoints)
            accelerator.wait_for_everyone()
        return {"loss": f"{mean_loss:.4g}"}

    run_steps(autocast_loss, optimizer, scheduler, config.steps, start=start, desc=desc, progress=config.progress and accelerator.is_main_process,
              backward=backward, clip_norm=lambda: accelerator.clip_grad_norm_(parameters, config.max_grad_norm), after_step=after_step)

    final = out / trained.name
    fingerprints = gather_object([_fingerprint(parameters)])
    if accelerator.is_main_process:
        with atomic_directory(final) as tmp:
            trained.save(tmp)
        plot_loss(out / "log.jsonl", out / "loss.png", loss_label)
        run = {"processes": world, "batch_per_process": config.batch, "global_batch": config.batch * world,
               f"{trained.name}_sha256_per_rank": fingerprints}
        (out / "run.json").write_text(json.dumps(run, indent=1) + "\n")
    accelerator.wait_for_everyone()
    # The DDP wrapper goes before the process group does: its reducer, freed last, would destroy the
    # group holding the GIL while a gloo thread may still need it to free a finished work (a hang).
    module = None
    accelerator.free_memory()
    accelerator.end_training()
    return final


def make_optimizer(parameters: list[torch.nn.Parameter], config: TrainConfig, accelerator: Accelerator):
    """AdamW, or bitsandbytes' 8-bit AdamW (as the authors trained). `auto` never falls back
    silently: a GPU run without bitsandbytes says that its optimizer state is 4x larger."""
    name = config.optimizer
    if name == "auto":
        bnb = importlib.util.find_spec("bitsandbytes") is not None
        name = "adamw8bit" if accelerator.device.type == "cuda" and bnb else "adamw"
        if accelerator.device.type == "cuda" and not bnb:
            accelerator.print("bitsandbytes is not installed: fp32 AdamW, whose state is 4x that of 8-bit AdamW "
                              "(pip install bitsandbytes, or --optimizer adamw to choose it)")
    if name == "adamw8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(parameters, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)


def process_batch(items: list, step: int, config: TrainConfig, accelerator: Accelerator) -> tuple[list, list[int]]:
    """This process's share of the step's global batch (a function of the step alone), and the
    seed of each of its samples."""
    size = config.batch * accelerator.num_processes
    first = accelerator.process_index * config.batch
    part = global_batch(items, step, size, config.seed)[first : first + config.batch]
    return part, [sample_seed(config.seed, step * size + first + i) for i in range(len(part))]


def sample_seed(seed: int, index: int) -> int:
    """A seed per (run, global sample index): independent of how samples are split over processes."""
    return (seed * 1_000_003 + index) % (2**63 - 1)


def _fingerprint(parameters: list[torch.nn.Parameter]) -> str:
    digest = hashlib.sha256()
    for p in parameters:
        digest.update(p.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


class _Log:
    """log.jsonl, one line per step; on resume, lines past the resumed step are dropped. The file is
    rewritten at the first step's line, not before: a run that fails earlier leaves it as it was."""

    def __init__(self, path: Path, start: int, active: bool):
        self.path, self.active, self.kept = path, active, None
        if active:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.kept = []
            if start and path.is_file():
                self.kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= start]

    def write(self, row: dict) -> None:
        if not self.active:
            return
        if self.kept is not None:
            self.path.write_text("".join(line + "\n" for line in self.kept))
            self.kept = None
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def plot_loss(log: Path, image: Path, label: str = "loss") -> None:
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
    ax.set_ylabel(label)
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(image, dpi=100)
    plt.close(fig)
