"""How much work a generation is, checked before it starts.

Four bounds, each refused in one line before denoising: more denoising steps or more images in one
call than the caller allows, an image much larger than the FLUX model was made for (the work grows
with the square of its tokens), and one whose activations will not fit in the memory the device
has free. Several images are denoised in passes of as many as fit (`images_per_pass`). The memory
figure is an estimate (the largest live activations of a transformer block and of the VAE
decoder's full-resolution blocks, with attention by a kernel that does not hold the score matrix,
as PyTorch's scaled_dot_product_attention does on CPU and GPU); the weights are not counted
because they are already loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from x2i.errors import X2IError

GIB = 1024**3
# Bounds on one call, raised by the caller when meant (--max-steps, --max-images): FLUX.1-dev samples
# in 28-50 steps and schnell in 4; more images than this in one call is a batch job, not a request.
MAX_STEPS = 200
MAX_IMAGES = 64
# A FLUX.1 block keeps the residual streams, q/k/v, the attention output and the 4x-wide MLP alive:
# about 12 hidden-size vectors per token. The VAE decoder's last blocks hold about 4 full-resolution
# tensors at once (input, normalised, convolved, skip).
TRANSFORMER_VECTORS_PER_TOKEN = 12
VAE_TENSORS_AT_FULL_SIZE = 4


def image_tokens(flux, height: int, width: int) -> int:
    """The packed latent tokens FLUX attends over (16x16 pixels each for FLUX.1)."""
    patch = flux.vae_scale_factor * 2
    return (height // patch) * (width // patch)


def generation_bytes(flux, height: int, width: int, images: int, text_tokens: int) -> int:
    """Estimated peak activation memory of denoising and decoding `images` images at this size."""
    config = flux.transformer.config
    width_of_tokens = config.num_attention_heads * config.attention_head_dim
    itemsize = flux.transformer.dtype.itemsize
    tokens = image_tokens(flux, height, width) + text_tokens
    denoise = TRANSFORMER_VECTORS_PER_TOKEN * images * tokens * width_of_tokens * itemsize
    vae_itemsize = 4 if flux.vae.config.force_upcast else flux.vae.dtype.itemsize
    decode = VAE_TENSORS_AT_FULL_SIZE * images * flux.vae.config.block_out_channels[0] * height * width * vae_itemsize
    return max(denoise, decode)


def free_bytes(device: torch.device) -> int:
    """Memory free on the device now: the GPU's, or the machine's available RAM."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_counts(steps: int, images: int, max_steps: int, max_images: int) -> None:
    """Refuse, before any work, more denoising steps or more images in one call than the bounds."""
    if steps > max_steps:
        raise X2IError(f"{steps} denoising steps; x2i allows up to {max_steps} (FLUX.1-dev needs 28-50): use fewer, or raise --max-steps")
    if images > max_images:
        raise X2IError(f"{images} images in one call; x2i makes up to {max_images} at once: ask for fewer (run again with other seeds "
                       f"for more), or raise --max-images")


def images_per_pass(flux, height: int, width: int, images: int, text_tokens: int, device: torch.device, max_image_tokens: int,
                    batch_size: int | None = None) -> int:
    """How many of `images` to denoise in one pass: at most `batch_size`, and as many as fit in the
    memory free now. A size far beyond the model's, or one image that does not fit, is refused."""
    tokens = image_tokens(flux, height, width)
    if tokens > max_image_tokens:
        native = flux.vae.config.sample_size
        raise X2IError(
            f"{width}x{height} is {tokens} image tokens; this FLUX was made for {native}x{native} "
            f"({image_tokens(flux, native, native)} tokens) and x2i allows up to {max_image_tokens} "
            f"(work grows with the square of the tokens): use a smaller size, or raise --max-image-tokens"
        )
    need, free = generation_bytes(flux, height, width, 1, text_tokens), free_bytes(device)
    if need > free:
        raise X2IError(
            f"1 image at {width}x{height} needs about {need / GIB:.1f} GiB of activations on {device}, "
            f"and {free / GIB:.1f} GiB is free: use a smaller size, or --offload"
        )
    return min(images, batch_size or images, free // need)
