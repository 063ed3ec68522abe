"""The one optimisation loop of x2i.

`run_steps` is every training step there is: the loss, backward, gradient clipping, the optimizer
and learning-rate schedule, a progress bar. `trainer.train` runs it for `x2i distill` and the edit
trainers with accelerate, logs and checkpoints around it; the mini world's recipes run it through
`train_loop`, which only adds AdamW and a schedule, a stage at a time (`train_stage`: each batch
made by a function, on the step or, `made_ahead`, while the step before trains).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

import torch
from diffusers.optimization import get_cosine_schedule_with_warmup
from tqdm.auto import tqdm

T = TypeVar("T")


def run_steps(
    step_loss: Callable[[int], tuple[torch.Tensor, dict]],
    optimizer: torch.optim.Optimizer,
    schedule,
    steps: int,
    start: int = 0,
    desc: str = "",
    progress: bool = True,
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
    clip_norm: Callable[[], torch.Tensor] | None = None,
    after_step: Callable[[int, torch.Tensor, torch.Tensor | None, dict], dict] | None = None,
) -> None:
    """Steps `start` .. `steps` - 1 (0-based). `step_loss(i)` returns the loss and values to show;
    `clip_norm()` clips the gradients and returns their norm; `after_step(i, loss, grad_norm, shown)`
    runs after the optimizer step and returns what the progress bar shows."""
    bar = tqdm(range(start, steps), initial=start, total=steps, desc=desc, disable=not progress)
    for i in bar:
        loss, shown = step_loss(i)
        backward(loss)
        grad_norm = clip_norm() if clip_norm is not None else None
        optimizer.step()
        if schedule is not None:
            schedule.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(after_step(i, loss, grad_norm, shown) if after_step else {"loss": f"{loss.item():.4f}", **shown})


def train_loop(
    desc: str,
    steps: int,
    params: Iterable[torch.nn.Parameter] | list[dict],
    step: Callable[[int], tuple[torch.Tensor, dict]],
    lr: float,
    weight_decay: float = 1e-2,
    warmup: int | None = None,
    clip: list[torch.nn.Parameter] | None = None,
    progress: bool = True,
    after_step: Callable[[int], None] | None = None,
) -> None:
    """`run_steps` with AdamW on `params` (or parameter groups, each with its own rate): `warmup`
    None keeps the learning rate constant, else warm-up then cosine decay; `clip`: the parameters
    whose gradient norm is clipped to 1; `after_step(i)` runs after each optimizer step (an EMA,
    snapshots)."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    schedule = get_cosine_schedule_with_warmup(optimizer, warmup, steps) if warmup is not None else None

    def shown(i, loss, grad_norm, values):
        if after_step is not None:
            after_step(i)
        return {"loss": f"{loss.item():.4f}", **values}

    run_steps(step, optimizer, schedule, steps, desc=desc, progress=progress,
              clip_norm=(lambda: torch.nn.utils.clip_grad_norm_(clip, 1.0)) if clip is not None else None, after_step=shown)


@contextmanager
def made_ahead(make: Callable[[], T], count: int) -> Iterator[Callable[[], T]]:
    """A function that returns, `count` times, what `make` made while the step before trained: the
    data side of a step (drawing, rendering, speech, the processor) runs beside the model's. One
    thread makes them all, in order, so they are the ones made in turn; no more than `count` are
    made, so a random generator that later stages share is left as making them in turn leaves it."""
    with ThreadPoolExecutor(1) as pool:
        left, future = count, pool.submit(make) if count else None

        def next_batch() -> T:
            nonlocal left, future
            batch, left = future.result(), left - 1
            future = pool.submit(make) if left else None
            return batch

        yield next_batch


def train_stage(desc: str, steps: int, params, make, loss, ahead: bool = False, **loop) -> None:
    """`train_loop` on `steps` batches made by `make`; `ahead`: each while the step before trains
    (`made_ahead`: speech, made by espeak-ng in a process of its own; rendering and the processor
    gain nothing beside the model on 2 cores, BENCHMARKS.md)."""
    if not ahead:
        return train_loop(desc, steps, params, lambda _: loss(make()), **loop)
    with made_ahead(make, steps) as batches:
        train_loop(desc, steps, params, lambda _: loss(batches()), **loop)
