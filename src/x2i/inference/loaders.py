"""Loading the parts from a directory or a hub id, with one-line errors: the MLLM (its encoder
chosen by the `model_type` in its config), AlignNet (ours or the authors' `.bin`), FLUX (with or
without T5/CLIP), and a LightControl branch."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from diffusers import FluxPipeline
from safetensors import SafetensorError

from x2i.errors import X2IError
from x2i.inference.alignnet import AlignNet
from x2i.inference.encoders import ENCODERS, MLLMEncoder
from x2i.inference.lightcontrol import LightControl
from x2i.inference.locations import fused_lora, locate, unreachable


def load_encoder(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, quantization=None
) -> MLLMEncoder:
    """Load the MLLM at `path` (a local directory or a hub id) with the encoder for its family;
    `quantization`: a transformers quantization config (`quantization_configs`)."""
    location = locate(path, "mllm")
    return encoder_class(location).from_pretrained(location, device=device, dtype=dtype, quantization=quantization)


def encoder_class(path: str | Path) -> type[MLLMEncoder]:
    """The encoder for the MLLM at `path`, from its config alone (nothing loads)."""
    family = model_type(path)
    if family in NOT_NATIVE:
        raise X2IError(f"{path}: {NOT_NATIVE[family]}")
    if family not in ENCODERS:
        raise X2IError(f"{path} is a {family!r} model; supported MLLM families: {', '.join(ENCODERS)}")
    return ENCODERS[family]


# Families the release used that transformers does not implement natively (remote code only).
NOT_NATIVE = {
    "internvl_chat": "InternVL in the authors' remote-code layout; convert it to transformers' -hf layout first "
    "(README, 'InternVL'), then pass the converted directory",
    "minicpmo": "MiniCPM-o runs only as remote code, which x2i cannot build or test; its AlignNet preset loads, "
    "but read with Qwen2.5-Omni for sound",
}


def model_type(path: str | Path) -> str:
    location = locate(path, "mllm")
    if isinstance(location, str):  # a hub id
        from transformers import AutoConfig

        try:
            return AutoConfig.from_pretrained(location).model_type
        except Exception as e:  # offline, unknown repo, gated repo
            raise unreachable("mllm", location, e) from e
    config_file = location / "config.json"
    if not config_file.is_file():
        raise X2IError(f"{path} is not an MLLM directory: it has no config.json")
    try:
        return json.loads(config_file.read_text())["model_type"]
    except (ValueError, KeyError) as e:
        raise X2IError(f"{config_file} is not a transformers model config ({e})") from e


# Without T5 and CLIP; those are only needed to distill a teacher, never to generate with X2I.
NO_TEXT_ENCODERS = dict(text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None)


def load_flux(path: str | Path, dtype: torch.dtype = torch.float32, text_encoders: bool = False, quantization=None) -> FluxPipeline:
    """A FLUX pipeline (FLUX.1-dev, schnell, or a derivative) from a directory or hub id; T5 and CLIP
    only when `text_encoders` (to run FLUX itself, the distillation teacher). `quantization`: a
    diffusers quantization config for the transformer (`quantization_configs`)."""
    location = locate(path, "flux")
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
        parts = {} if text_encoders else dict(NO_TEXT_ENCODERS)
        if quantization is not None:  # the transformer is quantized as it loads, never held whole
            from diffusers import FluxTransformer2DModel

            parts["transformer"] = FluxTransformer2DModel.from_pretrained(location, subfolder="transformer", dtype=dtype, quantization_config=quantization)
        flux = FluxPipeline.from_pretrained(location, dtype=dtype, **parts)
        if (derivative := fused_lora(path)) is not None:  # a shipped derivative: its base with its LoRA fused in
            flux.load_lora_weights(str(derivative), adapter_name="derivative")
            flux.fuse_lora(adapter_names=["derivative"])
            flux.unload_lora_weights()
        return flux
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:  # missing or corrupt files, unreachable hub
        if isinstance(location, str):
            raise unreachable("flux", location, e) from e
        raise X2IError(f"cannot load FLUX from {path}: {str(e).splitlines()[0]}") from e


QUANTIZE = ("nf4", "int8")


def quantization_configs(mode: str, device: torch.device, dtype: torch.dtype):
    """(diffusers config for the FLUX transformer, transformers config for the MLLM) for `mode`:
    bitsandbytes nf4 / int8 on CUDA; on the CPU, int8 weight-only by torchao."""
    if mode not in QUANTIZE:
        raise X2IError(f"--quantize takes {' or '.join(QUANTIZE)}, not {mode!r}")
    if device.type == "cuda":
        if importlib.util.find_spec("bitsandbytes") is None:
            raise X2IError("--quantize on a GPU uses bitsandbytes: pip install bitsandbytes")
        from diffusers import BitsAndBytesConfig as DiffusersConfig
        from transformers import BitsAndBytesConfig as TransformersConfig

        settings = dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype) if mode == "nf4" else dict(load_in_8bit=True)
        return DiffusersConfig(**settings), TransformersConfig(**settings)
    if mode == "nf4":
        raise X2IError("--quantize nf4 is bitsandbytes' 4-bit format, which needs a CUDA GPU; on the CPU use --quantize int8 (torchao)")
    try:
        from torchao.quantization import Int8WeightOnlyConfig
    except ImportError as e:
        raise X2IError("--quantize int8 on the CPU uses torchao: pip install torchao") from e
    from diffusers import TorchAoConfig as DiffusersConfig
    from transformers import TorchAoConfig as TransformersConfig

    return DiffusersConfig(Int8WeightOnlyConfig()), TransformersConfig(Int8WeightOnlyConfig())


def load_alignnet(path: str | Path, dtype: torch.dtype = torch.float32, preset: str | None = None, mllm: str | Path | None = None) -> AlignNet:
    """Our AlignNet directory, or one of the authors' released `.bin` files; their preset is
    inferred from the shapes and, where presets share shapes, from the family of `mllm`."""
    if Path(path).is_file():
        family = model_type(mllm) if mllm is not None and preset is None else None
        return AlignNet.from_official(path, preset=preset, family=family).to(dtype)
    if preset is not None:
        raise X2IError(f"a preset applies to the authors' checkpoint files; {path} is not a file")
    return AlignNet.from_pretrained(path, dtype=dtype)


def load_lightcontrol(path: str | Path, flux: FluxPipeline, dtype: torch.dtype = torch.float32) -> LightControl:
    """A LightControl directory ('mini': the shipped branch), checked against the FLUX it will serve."""
    path = Path(locate(path, "lightcontrol"))
    if not (path / "config.json").is_file():
        raise X2IError(f"{path} is not a LightControl directory (from x2i lightcontrol train): it has no config.json")
    try:
        branch = LightControl.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError, RuntimeError, SafetensorError) as e:
        raise X2IError(f"cannot load LightControl from {path}: {str(e).splitlines()[0]}") from e
    branch.check_fits(flux)
    return branch


def default_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on a GPU (as FLUX and the MLLMs are released), float32 on the CPU."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def device_and_dtype(device: str = "auto", dtype: str = "auto") -> tuple[torch.device, torch.dtype]:
    """The device and dtype named on a command line; "auto": CUDA when there is one, and `default_dtype`."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except RuntimeError as e:
        raise X2IError(f"unknown device {device!r} ({e})") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise X2IError("--device cuda asked for, but no CUDA GPU is visible; use --device cpu")
    return device, default_dtype(device) if dtype == "auto" else getattr(torch, dtype)


def default_size(flux: FluxPipeline) -> int:
    """The size the FLUX VAE was made for: 1024 for FLUX.1, 64 for the mini FLUX."""
    return flux.vae.config.sample_size


def check_size(flux: FluxPipeline, height: int, width: int) -> None:
    multiple = flux.vae_scale_factor * 2  # VAE downsampling, then 2x2 latent packing
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        raise X2IError(f"FLUX needs height and width that are positive multiples of {multiple}; got {height}x{width}")
