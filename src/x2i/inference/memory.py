"""The pipeline's memory modes: where its parts sit and when they move.

    model offload       every part in CPU memory, moved to the GPU only while it runs: the MLLM,
                        then AlignNet, then FLUX's transformer (with its LightControl branch), then
                        its VAE. Peak GPU memory becomes the largest part's instead of the sum
                        (diffusers' own offload for FLUX's parts).
    sequential offload  every layer's weights streamed to the GPU when the layer runs (accelerate's
                        hooks): the least GPU memory, the slowest.
"""

from __future__ import annotations

import contextlib

import torch


def model_offload(pipe, device: torch.device) -> None:
    for part in (pipe.encoder.model, pipe.alignnet, pipe.lightcontrol):
        if part is not None:
            part.to("cpu")
    pipe.flux.enable_model_cpu_offload(device=device)
    pipe.offload = ("model", device)


def sequential_offload(pipe, device: torch.device) -> None:
    from accelerate import cpu_offload

    for part in (pipe.encoder.model, pipe.alignnet, pipe.lightcontrol):
        if part is not None:
            cpu_offload(part, execution_device=device)
    pipe.encoder.execution_device = device
    pipe.flux.enable_sequential_cpu_offload(device=device)
    pipe.offload = ("sequential", device)


def place(pipe, part: torch.nn.Module) -> torch.nn.Module:
    """A part attached after loading, placed as the pipeline's mode places its parts: on its device,
    streamed (FLUX's weights then sit on the meta device), or waiting in CPU memory."""
    if pipe.offload is None:
        part.to(pipe.execution_device)
    elif pipe.offload[0] == "sequential":
        from accelerate import cpu_offload

        cpu_offload(part, execution_device=pipe.offload[1])
    return part


@contextlib.contextmanager
def running(pipe, *parts):
    """With model offload, `parts` sit on the GPU for the duration only."""
    parts = [p for p in parts if p is not None]
    if pipe.offload is None or pipe.offload[0] != "model":
        yield
        return
    for part in parts:
        part.to(pipe.offload[1])
    try:
        yield
    finally:
        for part in parts:
            part.to("cpu")
