"""Flow matching on FLUX's latents: what the edit trainers and the mini teacher's recipe share.

A sample at timestep sigma is x_sigma = (1 - sigma) x0 + sigma noise, and FLUX learns the velocity
noise - x0 (rectified flow). Sigma ~ sigmoid(N(0, 1)), the logit-normal sampling FLUX and the
release train with: most weight on mid-noise, where layout and attributes are decided. FLUX reads
latents packed in 2x2 patches, at the positions `latent_image_ids` gives.
"""

from __future__ import annotations

import torch
from diffusers.training_utils import compute_density_for_timestep_sampling


def logit_normal_sigmas(batch: int | None = None, generators: list[torch.Generator] | None = None, device="cpu") -> torch.Tensor:
    """`batch` sigmas from torch's global generator, or one from each of `generators` (a generator
    per sample keeps a run exact on resume and the same over any number of processes)."""
    if generators is None:
        return compute_density_for_timestep_sampling("logit_normal", batch, logit_mean=0.0, logit_std=1.0).to(device)
    return torch.cat([compute_density_for_timestep_sampling("logit_normal", 1, 0.0, 1.0, device=device, generator=g) for g in generators])


def noised_and_velocity(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For [B, C, H, W] latents: (x_sigma, the velocity noise - x0), both packed as FLUX reads them."""
    s = sigma.to(x0.dtype)[:, None, None, None]
    return pack_latents((1 - s) * x0 + s * noise), pack_latents(noise - x0)


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, H/2 * W/2, 4C]: 2x2 patches, channels first within a patch, as
    `FluxPipeline` packs its noise (diffusers keeps that function private; a test holds this equal to it)."""
    b, c, h, w = latents.shape
    return latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def latent_image_ids(flux, height: int, width: int, device, dtype) -> torch.Tensor:
    """FLUX's positions of the packed latent tokens of a height x width image (by the public
    `FluxPipeline.prepare_latents`, which returns them beside latents it is given)."""
    _, ids = flux.prepare_latents(1, 1, height, width, dtype, device, None, latents=torch.empty(0))
    return ids
