"""X2IPipeline: request -> MLLM hidden states -> AlignNet -> FLUX -> images.

FLUX runs as diffusers' own `FluxPipeline`, loaded without T5 and CLIP: AlignNet's two tensors go
in as `prompt_embeds` / `pooled_prompt_embeds`, and diffusers does the denoising loop, the latent
packing and unpacking, and the VAE decode exactly as it does for FLUX itself.

For edits, two optional parts keep the result faithful to the source image (docs/editing.md): a
LightControl branch (`load_lightcontrol`), whose outputs for the first image of each request enter
every FLUX call of the loop as `controlnet_block_samples`, and LoRA adapters on FLUX's attention
(`load_lora`, diffusers' own LoRA loading). Either, both, or neither; and any community FLUX LoRAs
(`load_flux_lora`: a style, a character) beside them.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from diffusers import FluxPipeline
from PIL import Image

from x2i.errors import X2IError
from x2i.inference import memory
from x2i.inference.alignnet import AlignNet
from x2i.inference.conditioning import FluxConditioning, condition
from x2i.inference.encoders import MLLMEncoder
from x2i.inference.lightcontrol import LightControl
from x2i.inference.loaders import (
    check_size,
    default_size,
    load_alignnet,
    load_encoder,
    load_flux,
    load_lightcontrol,
    quantization_configs,
)
from x2i.inference.lora import flux_lora_adapter, load_flux_loras, load_lora
from x2i.inference.request import CONDITION_ON, Request, request_kind
from x2i.inference.saved_pipeline import read_saved_pipeline, save_pipeline
from x2i.inference.work_bounds import (
    MAX_IMAGES,
    MAX_STEPS,
    check_counts,
    image_tokens,
    images_per_pass,
)


@dataclass
class Reading:
    """How AlignNet reads one request: `road`, and the MLLM's `answer` where the road made one."""

    road: str
    answer: str | None = None


class X2IPipeline:
    """Which states AlignNet reads, `condition_on` (here as the default, or per call):

    - "prompt" (the paper's): the request's own states, one forward pass of the MLLM;
    - "answer" (the release's "reasoning"): the MLLM first writes what to draw (greedy, at most
      `max_answer_tokens`), and that answer is read on its own as a text prompt, in the prompt
      format AlignNet was distilled on;
    - "prompt+answer": the request's states followed by the answer's, in one pass;
    - "auto": per kind of request (English text, text in another language, media or earlier turns),
      the road this AlignNet's own measurements chose (its config's `roads`); an AlignNet without
      them (the authors' official ones) takes the prompt road for everything.

    Prompts are left-padded to `pad_to` tokens (default: as AlignNet was trained, 512 for the
    official checkpoints; none for an AlignNet whose stream is "request", which gives FLUX only the
    request's own tokens; 0: none).

    Work is bounded before it starts: a request whose text (as typed, media and template aside) is
    longer than `max_text_tokens` tokens (default: the length
    AlignNet was trained on, 512 for the official checkpoints) is refused, and so is a size beyond
    `max_image_tokens` (default: 4x the tokens of the size FLUX was made for) or one whose memory
    will not fit, and so are more than `max_steps` steps or `max_images` images in one call
    (x2i.inference.work_bounds)."""

    def __init__(self, encoder: MLLMEncoder, alignnet: AlignNet, flux: FluxPipeline, pad_to: int | None = None,
                 max_answer_tokens: int = 128, max_text_tokens: int | None = None, max_image_tokens: int | None = None,
                 max_steps: int | None = None, max_images: int | None = None,
                 condition_on: str = "auto"):
        self.encoder = encoder
        self.condition_on = check_road(condition_on)
        self.alignnet = alignnet.eval().requires_grad_(False)
        self.flux = flux
        # Pad prompts as AlignNet saw them in training, unless the caller says otherwise (0: no padding).
        # FLUX reads no padding from an AlignNet whose stream is "request", so its prompts go
        # unpadded: a shorter MLLM pass, the same pictures (BENCHMARKS.md, "text stream").
        as_trained = alignnet.config.pad_to if alignnet.config.stream == "all" else None
        self.pad_to = as_trained if pad_to is None else (pad_to or None)
        self.max_answer_tokens = max_answer_tokens
        self.max_text_tokens = max_text_tokens or alignnet.config.pad_to or 512
        self.max_image_tokens = max_image_tokens or 4 * image_tokens(flux, self.default_size, self.default_size)
        self.max_steps, self.max_images = max_steps or MAX_STEPS, max_images or MAX_IMAGES
        self.lightcontrol: LightControl | None = None
        self.offload: tuple[str, torch.device] | None = None  # ("model" | "sequential", the device parts run on)
        # True: FLUX reads only as many tokens as the longest request has, not the padding AlignNet was
        # distilled with: 20-25% faster on the mini models, 2 points lower (BENCHMARKS.md, "text stream").
        self.trim_padding = False
        self.sources: dict = {}  # where from_pretrained found the MLLM, FLUX and LoRA, for save_pretrained
        self._check_fit()

    @classmethod
    def from_pretrained(
        cls,
        mllm: str | Path,
        flux: str | Path | None = None,
        alignnet: str | Path | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        pad_to: int | None = None,
        alignnet_preset: str | None = None,
        height: int | None = None,
        width: int | None = None,
        lightcontrol: str | Path | None = None,
        lora: str | Path | None = None,
        lora_scale: float = 1.0,
        flux_loras: Sequence[tuple[str | Path, float]] = (),
        max_text_tokens: int | None = None,
        max_image_tokens: int | None = None,
        max_steps: int | None = None,
        max_images: int | None = None,
        quantize: str | None = None,
        condition_on: str = "auto",
        offload: str | None = None,
    ) -> X2IPipeline:
        """Load the three parts (directories, hub ids, or "mini" for the shipped mini models; and a
        LightControl branch and a LoRA, when given). Everything small loads and is checked against
        FLUX (sizes, branch, LoRA) before the MLLM, the largest part. `quantize` ("nf4" or "int8"):
        the FLUX transformer and the MLLM are quantized as they load (bitsandbytes on CUDA; int8 by
        torchao on the CPU). `offload` ("model" or "sequential"): the parts load in CPU memory and
        run on `device` (a CUDA GPU) as `enable_model_cpu_offload` / `enable_sequential_cpu_offload` say.
        One folder written by `save_pretrained` names all the parts and settings (those given here win)."""
        if flux is None or alignnet is None:
            saved = read_saved_pipeline(mllm)
            mllm, flux, alignnet = saved["mllm"], saved["flux"], saved["alignnet"]
            lightcontrol = lightcontrol or saved["lightcontrol"]
            lora, lora_scale = (lora, lora_scale) if lora else (saved["lora"], saved["lora_scale"])
            flux_loras = flux_loras or saved["flux_loras"]
            condition_on = saved["condition_on"] if condition_on == "auto" else condition_on
            pad_to = saved["pad_to"] if pad_to is None else pad_to
        device = torch.device(device)
        if offload is not None:
            if offload not in ("model", "sequential"):
                raise X2IError(f"offload is 'model' or 'sequential', not {offload!r}")
            if device.type != "cuda":
                raise X2IError("--offload moves each part to a GPU while it runs, and no CUDA GPU is visible; leave it out on the CPU")
            if quantize:
                raise X2IError("--offload and --quantize are one or the other for now (moving quantized weights is untested here); pick one")
        run_on, device = device, torch.device("cpu") if offload else device
        flux_config, mllm_config = quantization_configs(quantize, device, dtype) if quantize else (None, None)
        alignnet_model = load_alignnet(alignnet, dtype, preset=alignnet_preset, mllm=mllm).to(device)
        flux_pipe = load_flux(flux, dtype, quantization=flux_config)
        if quantize is None or device.type == "cpu":  # bitsandbytes placed the transformer on the GPU as it loaded
            flux_pipe.to(device)
        else:
            flux_pipe.vae.to(device)
        size = default_size(flux_pipe)
        check_size(flux_pipe, size if height is None else height, size if width is None else width)
        branch = None if lightcontrol is None else load_lightcontrol(lightcontrol, flux_pipe, dtype).to(device)
        if lora is not None:
            load_lora(flux_pipe, lora, lora_scale)
        load_flux_loras(flux_pipe, flux_loras)
        encoder = load_encoder(mllm, device=device, dtype=dtype, quantization=mllm_config)
        pipe = cls(encoder, alignnet_model, flux_pipe, pad_to=pad_to, max_text_tokens=max_text_tokens, max_image_tokens=max_image_tokens,
                   max_steps=max_steps, max_images=max_images, condition_on=condition_on)
        pipe.lightcontrol = branch
        pipe.sources = {"mllm": mllm, "flux": flux, "lora": lora, "lora_scale": lora_scale, "flux_loras": list(flux_loras)}
        if offload:
            getattr(pipe, f"enable_{offload}_cpu_offload")(run_on)
        return pipe

    def load_lightcontrol(self, path: str | Path) -> None:
        """Attach a LightControl branch made for this FLUX (a directory from `x2i lightcontrol train`),
        placed as the pipeline's memory mode places its parts."""
        self.lightcontrol = memory.place(self, load_lightcontrol(path, self.flux, self.alignnet.dtype))

    def load_lora(self, path: str | Path, scale: float = 1.0) -> None:
        """Load a diffusers-format LoRA made for this FLUX (from `x2i lora train`, or any trainer)."""
        load_lora(self.flux, path, scale)
        self.sources.update(lora=path, lora_scale=scale)

    def load_flux_lora(self, path: str | Path, scale: float = 1.0) -> None:
        """Add a community FLUX LoRA (diffusers, kohya or xlabs format) made for this FLUX, beside any other."""
        loaded = self.sources.setdefault("flux_loras", [])
        load_lora(self.flux, path, scale, adapter=flux_lora_adapter(len(loaded)))
        loaded.append((path, scale))

    def save_pretrained(self, directory: str | Path, copy: bool = False, scores: dict | None = None) -> Path:
        """The pipeline as one folder with a model card (x2i.inference.saved_pipeline): AlignNet and any
        LightControl/LoRA as files, the MLLM and FLUX named (copied with `copy`), the road and padding."""
        return save_pipeline(self, directory, copy=copy, scores=scores)

    def enable_model_cpu_offload(self, device: str | torch.device = "cuda") -> None:
        """Every part in CPU memory, each moved to `device` only while it runs (x2i.inference.memory)."""
        memory.model_offload(self, torch.device(device))

    def enable_sequential_cpu_offload(self, device: str | torch.device = "cuda") -> None:
        """Every layer's weights streamed to `device` when the layer runs: the least memory, the slowest."""
        memory.sequential_offload(self, torch.device(device))

    def compile_transformer(self, steps: int = 2) -> None:
        """torch.compile FLUX's transformer, and compile it now with one request at the default size
        (so that no later request waits for it); if compiling fails (no C++ compiler, say), warn
        and stay uncompiled."""
        eager = self.flux.transformer
        self.flux.transformer = torch.compile(eager)
        try:
            self(Request("warm-up"), num_inference_steps=min(steps, 2), show_progress=False)
        except Exception as e:  # noqa: BLE001  (any compiler failure: keep working, uncompiled)
            self.flux.transformer = eager
            warnings.warn(f"torch.compile failed ({type(e).__name__}); running uncompiled", stacklevel=2)

    def _running(self, *parts):
        return memory.running(self, *parts)

    @property
    def execution_device(self) -> torch.device:
        return self.offload[1] if self.offload else self.flux.transformer.device

    @property
    def default_size(self) -> int:
        return default_size(self.flux)

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

    def check_text(self, text: str) -> None:
        """Refuse a request's text (as typed) longer than `max_text_tokens`."""
        if (n := self.encoder.count_tokens(text)) > self.max_text_tokens:
            raise X2IError(f"the text is {n} tokens; this model reads at most {self.max_text_tokens} "
                           f"(what its AlignNet was made for): shorten it, or raise --max-text-tokens")

    def _generators(self, seed, num_images: int) -> list[torch.Generator] | None:
        """One generator per image: image k of an int seed S is seeded S + k (so it is also what one
        image asked with seed S + k gives); a list gives each image its own seed."""
        device = self.execution_device
        if seed is None:
            return None
        seeds = [seed + k for k in range(num_images)] if isinstance(seed, int) else list(seed)
        if len(seeds) != num_images:
            raise X2IError(f"{len(seeds)} seeds for {num_images} images")
        return [torch.Generator(device).manual_seed(s % 2**64) for s in seeds]

    @torch.no_grad()
    def answer(self, requests: Sequence[Request], max_new_tokens: int = 128) -> list[str]:
        """The MLLM's greedy answers (on the GPU only while it answers, with model offload)."""
        with self._running(self.encoder.model):
            return self.encoder.answer(requests, max_new_tokens)

    def road(self, request: Request, condition_on: str | None = None) -> str:
        """The road a request takes: `condition_on` (default: the pipeline's), "auto" resolved by its kind."""
        condition_on = check_road(condition_on or self.condition_on)
        if condition_on != "auto":
            return condition_on
        return (self.alignnet.config.roads or {}).get(request_kind(request), "prompt")

    def plan(self, requests: Sequence[Request], condition_on: str | None = None) -> list[Reading]:
        """Each request's road, and the MLLM's answers where a road reads one (one batched generate).
        An empty answer leaves nothing to read: that request takes the prompt road."""
        readings = [Reading(self.road(r, condition_on)) for r in requests]
        asked = [i for i, reading in enumerate(readings) if reading.road != "prompt"]
        if asked:
            for i, answer in zip(asked, self.answer([requests[i] for i in asked], self.max_answer_tokens)):
                readings[i] = Reading(readings[i].road if answer else "prompt", answer)
        return readings

    @torch.no_grad()
    def encode(self, requests: Sequence[Request], condition_on: str | None = None, readings: Sequence[Reading] | None = None) -> FluxConditioning:
        """MLLM -> AlignNet: the conditioning FLUX reads in place of T5/CLIP; `readings` from `plan`
        (planned here when left out)."""
        readings = readings or self.plan(requests, condition_on)
        if len(readings) != len(requests):
            raise X2IError(f"{len(readings)} readings for {len(requests)} requests: plan them together")
        read = [Request(x.answer) if x.road == "answer" else r for r, x in zip(requests, readings)]
        answers = [x.answer if x.road == "prompt+answer" else None for x in readings]
        with self._running(self.encoder.model):
            states = self.encoder.encode(read, pad_to=self.pad_to, answers=answers if any(answers) else None,
                                         request_tokens=self.alignnet.config.stream == "request")
        with self._running(self.alignnet):
            conditioning = condition(self.alignnet, states)
        if self.trim_padding and conditioning.text_mask is None:
            # FLUX reads as many tokens as the longest request has (left padding: the last ones)
            keep = int(states.attention_mask.sum(1).max())
            conditioning = FluxConditioning(conditioning.prompt_embeds[:, -keep:], conditioning.pooled_prompt_embeds)
        return conditioning

    @torch.no_grad()
    def __call__(
        self,
        request: Request | Sequence[Request],
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 28,
        guidance_scale: float = 3.5,
        num_images_per_prompt: int = 1,
        seed: int | Sequence[int] | None = 0,
        show_progress: bool = True,
        generator: torch.Generator | list[torch.Generator] | None = None,
        condition_on: str | None = None,
        lightcontrol_scale: float = 1.0,
        readings: Sequence[Reading] | None = None,
        batch_size: int | None = None,
    ) -> list[Image.Image]:
        """`seed` makes the noise on the pipeline's device: image k of seed S is seeded S + k, or give
        one seed per image as a list; a `generator` (or one per image) replaces it, e.g. CPU
        generators for the same noise on any device. Images are denoised in passes of at most
        `batch_size` (default: all at once), fewer where they would not fit in free memory; with
        seeds (or one generator per image) an image does not depend on the passes.
        `condition_on`: the road (default: the pipeline's); `readings`: roads and answers already
        planned with `plan` (to show or keep the MLLM's answers).
        With a LightControl loaded, every request needs an image (its first is the source);
        `lightcontrol_scale` 0 turns the branch off."""
        requests = [request] if isinstance(request, Request) else list(request)
        if not requests:
            raise X2IError("empty request list")
        if num_inference_steps < 1 or num_images_per_prompt < 1 or (batch_size is not None and batch_size < 1):
            raise X2IError("steps, number of images and batch size must be at least 1")
        check_counts(num_inference_steps, len(requests) * num_images_per_prompt, self.max_steps, self.max_images)
        height = self.default_size if height is None else height
        width = self.default_size if width is None else width
        check_size(self.flux, height, width)
        control = self.lightcontrol is not None and lightcontrol_scale != 0
        if control and not all(r.images for r in requests):
            raise X2IError("LightControl keeps an edit faithful to its source image, and a request has no image: give one (--image), or leave out --lightcontrol")
        for r in requests:
            self.check_text(r.text)
        images = len(requests) * num_images_per_prompt
        flux_image_tokens = image_tokens(self.flux, height, width)
        per_pass = images_per_pass(self.flux, height, width, images, self.pad_to or self.max_text_tokens, self.execution_device,
                                   self.max_image_tokens, batch_size)

        conditioning = self.encode(requests, condition_on, readings)

        # One row per image, in FluxPipeline's order (each request's images together); each image
        # has its own generator, so that an image is the same whatever the passes it is made in.
        rows = [i for i in range(len(requests)) for _ in range(num_images_per_prompt)]
        if generator is None:
            generator = self._generators(seed, images)
        if isinstance(generator, list) and len(generator) != images:
            raise X2IError(f"{len(generator)} generators for {images} images")
        made = []
        for start in range(0, images, per_pass):
            part = rows[start : start + per_pass]
            self.flux.set_progress_bar_config(disable=not show_progress, desc="denoising" if per_pass == images
                                              else f"denoising images {start + 1}-{start + len(part)} of {images}")
            with contextlib.ExitStack() as stack:
                stack.enter_context(self._running(self.lightcontrol))
                if control:
                    source = self.flux.image_processor.preprocess([requests[i].images[0] for i in part], height, width)
                    stack.enter_context(self.lightcontrol.controlling(self.flux.transformer, source, lightcontrol_scale))
                made += self.flux(
                    **conditioning.rows(part).pipeline_kwargs(self.flux.transformer.dtype, flux_image_tokens),
                    height=height,
                    width=width,
                    num_inference_steps=num_inference_steps,
                    guidance_scale=guidance_scale,  # used only by FLUX models with a guidance embedding (dev)
                    generator=generator[start : start + len(part)] if isinstance(generator, list) else generator,
                    output_type="pil",
                ).images
        return made


def check_road(condition_on: str) -> str:
    if condition_on not in CONDITION_ON:
        raise X2IError(f"condition_on must be one of {', '.join(CONDITION_ON)}, not {condition_on!r}")
    return condition_on

