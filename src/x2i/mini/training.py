"""The one training loop of the mini recipes (VAE, VAE decoder, teacher, MLLM): AdamW, an optional
cosine schedule with warm-up, optional gradient clipping, a progress bar."""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from diffusers.optimization import get_cosine_schedule_with_warmup
from tqdm.auto import tqdm


def train_loop(
    desc: str,
    steps: int,
    params: Iterable[torch.nn.Parameter],
    step: Callable[[int], tuple[torch.Tensor, dict]],
    lr: float,
    weight_decay: float = 1e-2,
    warmup: int | None = None,
    clip: list[torch.nn.Parameter] | None = None,
    progress: bool = True,
    after_step: Callable[[int], None] | None = None,
) -> None:
    """Run `step(i)` for i = 1..steps; it returns the loss to minimise and extra values to show.
    `warmup` None: a constant learning rate; `clip`: the parameters whose gradient norm is clipped
    to 1; `after_step(i)` runs after each optimizer step (an EMA, snapshots)."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    schedule = get_cosine_schedule_with_warmup(optimizer, warmup, steps) if warmup is not None else None
    bar = tqdm(range(1, steps + 1), desc=desc, disable=not progress)
    for i in bar:
        loss, shown = step(i)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(clip, 1.0)
        optimizer.step()
        if schedule is not None:
            schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if after_step is not None:
            after_step(i)
        bar.set_postfix(loss=f"{loss.item():.4f}", **shown)
