"""X2IPipeline: request -> MLLM hidden states -> AlignNet -> FLUX -> images.

FLUX runs as diffusers' own `FluxPipeline`, loaded without T5 and CLIP: AlignNet's two tensors go
in as `prompt_embeds` / `pooled_prompt_embeds`, and diffusers does the denoising loop, the latent
packing and unpacking, and the VAE decode exactly as it does for FLUX itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from diffusers import FluxPipeline
from safetensors import SafetensorError
from PIL import Image

from x2i.alignnet import AlignNet
from x2i.encoders import MLLMEncoder, load_encoder
from x2i.errors import X2IError
from x2i.hub import resolve, unreachable
from x2i.request import Request

# Without T5 and CLIP; those are only needed to distill a teacher, never to generate with X2I.
NO_TEXT_ENCODERS = dict(text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None)


def load_flux(path: str | Path, dtype: torch.dtype = torch.float32, text_encoders: bool = False) -> FluxPipeline:
    """A FLUX pipeline (FLUX.1-dev, schnell, or a derivative) from a directory or hub id; T5 and CLIP
    only when `text_encoders` (to run FLUX itself, the distillation teacher)."""
    location = resolve(path, "FLUX")
    if isinstance(location, Path):
        index = location / "model_index.json"
        if not index.is_file():
            raise X2IError(f"{path} is not a diffusers pipeline directory: it has no model_index.json")
        try:
            components = json.loads(index.read_text())
        except ValueError as e:
            raise X2IError(f"{index} is not valid JSON ({e})") from e
        class_name = components.get("_class_name", "")
        if "Flux" not in class_name:
            raise X2IError(f"{path} holds a {class_name or 'unnamed'} pipeline, not a FLUX one")
        if text_encoders and any(components.get(k, [None])[0] is None for k in ("text_encoder", "text_encoder_2")):
            raise X2IError(f"{path} has no T5/CLIP text encoders: running FLUX itself (the distillation teacher) needs them")
    try:
        return FluxPipeline.from_pretrained(location, dtype=dtype, **({} if text_encoders else NO_TEXT_ENCODERS))
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:  # missing or corrupt files, unreachable hub
        if isinstance(location, str):
            raise unreachable("FLUX", location, e) from e
        raise X2IError(f"cannot load FLUX from {path}: {str(e).splitlines()[0]}") from e

def load_alignnet(path: str | Path, dtype: torch.dtype = torch.float32, preset: str | None = None) -> AlignNet:
    """Our AlignNet directory, or one of the authors' released `.bin` files (`preset` inferred when None)."""
    if Path(path).is_file():
        return AlignNet.from_official(path, preset=preset).to(dtype)
    if preset is not None:
        raise X2IError(f"a preset applies to the authors' checkpoint files; {path} is not a file")
    return AlignNet.from_pretrained(path, dtype=dtype)


def check_size(flux: FluxPipeline, height: int, width: int) -> None:
    multiple = flux.vae_scale_factor * 2  # VAE downsampling, then 2x2 latent packing
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        raise X2IError(f"FLUX needs height and width that are positive multiples of {multiple}; got {height}x{width}")


class X2IPipeline:
    def __init__(self, encoder: MLLMEncoder, alignnet: AlignNet, flux: FluxPipeline, pad_to: int | None = None):
        self.encoder = encoder
        self.alignnet = alignnet.eval().requires_grad_(False)
        self.flux = flux
        # Pad prompts as AlignNet saw them in training, unless the caller says otherwise (0: no padding).
        self.pad_to = alignnet.config.pad_to if pad_to is None else (pad_to or None)
        self._check_fit()

    @classmethod
    def from_pretrained(
        cls,
        mllm: str | Path,
        flux: str | Path,
        alignnet: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        pad_to: int | None = None,
        alignnet_preset: str | None = None,
    ) -> X2IPipeline:
        alignnet_model = load_alignnet(alignnet, dtype, preset=alignnet_preset).to(device)
        flux_pipe = load_flux(flux, dtype).to(device)
        encoder = load_encoder(mllm, device=device, dtype=dtype)  # the largest part, loaded last
        return cls(encoder, alignnet_model, flux_pipe, pad_to=pad_to)

    def _check_fit(self) -> None:
        a, t = self.alignnet.config, self.flux.transformer.config
        if (a.num_hidden_states, a.hidden_size) != (self.encoder.num_hidden_states, self.encoder.hidden_size):
            raise X2IError(
                f"AlignNet reads {a.num_hidden_states} hidden states of size {a.hidden_size}, but the MLLM gives "
                f"{self.encoder.num_hidden_states} of size {self.encoder.hidden_size}: use the AlignNet made for this MLLM"
            )
        if (a.joint_attention_dim, a.pooled_projection_dim) != (t.joint_attention_dim, t.pooled_projection_dim):
            raise X2IError(
                f"AlignNet outputs ({a.joint_attention_dim}, {a.pooled_projection_dim}) do not fit FLUX's "
                f"joint_attention_dim {t.joint_attention_dim} and pooled_projection_dim {t.pooled_projection_dim}"
            )

    @torch.no_grad()
    def encode(self, requests: Sequence[Request]):
        """MLLM -> AlignNet: the conditioning FLUX reads in place of T5/CLIP."""
        states = self.encoder.encode(requests, pad_to=self.pad_to)
        hidden = states.hidden_states.to(self.alignnet.mlp.layernorm.weight.dtype)
        return self.alignnet(hidden, attention_mask=states.attention_mask)

    @torch.no_grad()
    def __call__(
        self,
        request: Request | Sequence[Request],
        height: int = 1024,
        width: int = 1024,
        num_inference_steps: int = 28,
        guidance_scale: float = 3.5,
        num_images_per_prompt: int = 1,
        seed: int | Sequence[int] | None = 0,
        show_progress: bool = True,
    ) -> list[Image.Image]:
        requests = [request] if isinstance(request, Request) else list(request)
        if not requests:
            raise X2IError("empty request list")
        if num_inference_steps < 1 or num_images_per_prompt < 1:
            raise X2IError("steps and number of images must be at least 1")
        check_size(self.flux, height, width)

        conditioning = self.encode(requests)

        device = self.flux.transformer.device
        if seed is None or isinstance(seed, int):
            generator = None if seed is None else torch.Generator(device).manual_seed(seed)
        else:  # one seed per image, so each image is reproducible on its own
            if len(seed) != len(requests) * num_images_per_prompt:
                raise X2IError(f"{len(seed)} seeds for {len(requests) * num_images_per_prompt} images")
            generator = [torch.Generator(device).manual_seed(s) for s in seed]
        self.flux.set_progress_bar_config(disable=not show_progress, desc="denoising")
        return self.flux(
            prompt_embeds=conditioning.prompt_embeds.to(self.flux.transformer.dtype),
            pooled_prompt_embeds=conditioning.pooled_prompt_embeds.to(self.flux.transformer.dtype),
            height=height,
            width=width,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,  # used only by FLUX models with a guidance embedding (dev)
            num_images_per_prompt=num_images_per_prompt,
            generator=generator,
            output_type="pil",
        ).images
