"""LightControl: a light ControlNeXt-style branch that shows FLUX the source image of an edit.

    source RGB [B, 3, H, W] in [-1, 1], timestep sigma [B]
      -> stem         conv 3 -> c0 -> c0 -> c1 (the last one stride 2)
      -> two stages   time-conditioned ResNet blocks c1 -> c1 -> c2, each followed by a stride-2 conv
                      (the second without one where FLUX's token stride is 8, as in the mini FLUX)
      -> mid          a time-conditioned ResNet block c2 -> c2
      -> out          a stride-2 conv c2 -> c2: one feature per FLUX image token (total stride 16 for
                      FLUX.1, 1024 px -> 64 x 64 = 4096 tokens)
      -> heads        one zero-initialised Linear(c2 -> FLUX width) per double-stream block

The heads' outputs go into diffusers' own injection point: `FluxTransformer2DModel.forward` adds
`controlnet_block_samples[i]` to the image stream after double block i. The release builds one
whole branch per block (19 encoders, each ending in a 3x3 conv to 3072); here the 19 blocks share
one encoder and each has its own 1x1 head, ~10x fewer parameters (BENCHMARKS.md). Zero heads make
an untrained branch change nothing, as ControlNet's zero convolutions do.

The branch reads the SOURCE image only: in training the target appears in the loss alone.
"""

from __future__ import annotations

import contextlib
import math

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from x2i.errors import X2IError


class LightControl(ModelMixin, ConfigMixin):
    """Arguments (saved in config.json):

    num_blocks          FLUX's double-stream blocks (19 for FLUX.1): one output each
    inner_dim           FLUX's width (heads x head dim: 3072 for FLUX.1)
    patch_stride        pixels per FLUX image token: VAE downsampling x 2 (16 for FLUX.1; 4, 8 or 16)
    block_out_channels  (c0, c1, c2): the encoder's widths, (64, 128, 256) as the release
    time_embed_dim      width of the timestep embedding the ResNet blocks read
    norm_groups         GroupNorm groups in the ResNet blocks
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        num_blocks: int = 19,
        inner_dim: int = 3072,
        patch_stride: int = 16,
        block_out_channels: tuple[int, int, int] = (64, 128, 256),
        time_embed_dim: int = 256,
        norm_groups: int = 32,
    ):
        super().__init__()
        if patch_stride not in (4, 8, 16):
            raise X2IError(f"LightControl supports FLUX token strides of 4, 8 or 16 pixels, not {patch_stride}")
        c0, c1, c2 = block_out_channels
        self.time_proj = Timesteps(time_embed_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(time_embed_dim, time_embed_dim)
        self.stem = nn.Sequential(
            nn.Conv2d(3, c0, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c0, c0, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c0, c1, 3, stride=2, padding=1),
        )
        # stem and out take a factor 2 each; the stages take the rest of the stride.
        stage_downsamples = int(math.log2(patch_stride)) - 2
        self.resnets = nn.ModuleList([
            ResnetBlock2D(in_channels=c1, out_channels=c1, temb_channels=time_embed_dim, groups=norm_groups),
            ResnetBlock2D(in_channels=c1, out_channels=c2, temb_channels=time_embed_dim, groups=norm_groups),
            ResnetBlock2D(in_channels=c2, out_channels=c2, temb_channels=time_embed_dim, groups=norm_groups),  # mid
        ])
        self.downsamplers = nn.ModuleList([
            nn.Conv2d(c, c, 3, stride=2, padding=1) if i < stage_downsamples else nn.Identity()
            for i, c in enumerate((c1, c2))
        ])
        self.out = nn.Conv2d(c2, c2, 3, stride=2, padding=1)
        self.heads = nn.ModuleList([nn.Linear(c2, inner_dim) for _ in range(num_blocks)])
        for head in self.heads:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    @classmethod
    def for_flux(cls, flux, **kwargs) -> LightControl:
        """A new branch sized for the FLUX pipeline `flux` (blocks, width, token stride)."""
        return cls(**_flux_sizes(flux), **kwargs)

    def check_fits(self, flux) -> None:
        """One clear line when this branch was made for another FLUX."""
        wanted, mine = _flux_sizes(flux), {k: self.config[k] for k in ("num_blocks", "inner_dim", "patch_stride")}
        if wanted != mine:
            raise X2IError(f"this LightControl was made for a FLUX with {_describe(mine)}, but this FLUX has {_describe(wanted)}: "
                           "use (or train) the branch made for this FLUX")

    def forward(self, image: torch.Tensor, timestep: torch.Tensor) -> list[torch.Tensor]:
        """`image` [B, 3, H, W] in [-1, 1]; `timestep` [B], FLUX's sigma in [0, 1] (as the transformer
        gets it). Returns one [B, H*W/stride^2, inner_dim] tensor per double block, its tokens in
        the order of FLUX's packed latents (row by row)."""
        temb = self.time_embedding(self.time_proj(timestep.flatten() * 1000).to(image.dtype))
        x = self.stem(image)
        for resnet, down in zip(self.resnets[:2], self.downsamplers):
            x = down(resnet(x, temb))
        x = self.out(self.resnets[2](x, temb))
        tokens = x.flatten(2).transpose(1, 2)  # [B, h*w, c2], row-major like FLUX's packing
        return [head(tokens) for head in self.heads]

    @contextlib.contextmanager
    def controlling(self, transformer, image: torch.Tensor, scale: float = 1.0):
        """While inside, every call of `transformer` (e.g. from `FluxPipeline.__call__`) gets this
        branch's outputs for `image` at its timestep as `controlnet_block_samples`. `image` holds one
        source per prompt; rows repeat for several images per prompt."""

        def add_samples(module, args, kwargs):
            hidden = kwargs["hidden_states"]
            source = image.to(hidden.device, hidden.dtype)
            if hidden.shape[0] % source.shape[0]:
                raise X2IError(f"{source.shape[0]} source images for a batch of {hidden.shape[0]}")
            source = source.repeat_interleave(hidden.shape[0] // source.shape[0], dim=0)
            timestep = kwargs["timestep"].to(hidden.dtype).expand(hidden.shape[0])
            kwargs["controlnet_block_samples"] = [scale * s for s in self(source, timestep)]
            return args, kwargs

        handle = transformer.register_forward_pre_hook(add_samples, with_kwargs=True)
        try:
            yield
        finally:
            handle.remove()


def _flux_sizes(flux) -> dict:
    c = flux.transformer.config
    return {"num_blocks": c.num_layers, "inner_dim": c.num_attention_heads * c.attention_head_dim, "patch_stride": flux.vae_scale_factor * 2}


def _describe(sizes: dict) -> str:
    return f"{sizes['num_blocks']} double blocks, width {sizes['inner_dim']}, {sizes['patch_stride']} px per token"
