"""The option groups that several `x2i` commands share, each written once."""

from __future__ import annotations

import argparse
import math

from x2i.errors import X2IError

DTYPES = ("auto", "float32", "bfloat16", "float16")


class AppendMedia(argparse.Action):
    """--image/--audio/--video PATH: append (kind, PATH) to one list, so the order typed is kept."""

    def __call__(self, parser, namespace, value, option_string=None):
        setattr(namespace, self.dest, [*getattr(namespace, self.dest), (option_string.lstrip("-"), value)])


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pipeline", default=None, metavar="DIR", help="a folder written by X2IPipeline.save_pretrained: its MLLM, FLUX, "
                        "AlignNet, LightControl, LoRA, road and padding (options given beside it win, except the three models)")
    parser.add_argument("--mllm", default="mini", help="MLLM directory or hub id (Qwen2.5-VL, InternVL, Qwen2.5-Omni); mini: the shipped mini MLLM")
    parser.add_argument("--flux", default="mini", help="FLUX pipeline directory or hub id (T5/CLIP are not loaded); mini: the shipped mini FLUX")
    parser.add_argument("--alignnet", default=None, help="AlignNet directory, or an official diffusion_pytorch_model.bin; mini: the shipped "
                        "mini AlignNet (default: the one shipped with --mllm mini or mini-omni, else mini)")


def add_memory_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--offload", choices=("model", "sequential"), default=None, help="keep the parts in CPU memory and move each to "
                        "the GPU only while it runs (model), or stream every layer's weights (sequential: least memory, slowest); needs CUDA")
    parser.add_argument("--quantize", choices=("nf4", "int8"), default=None, help="quantize the FLUX transformer and the MLLM as they load: "
                        "bitsandbytes nf4 or int8 on CUDA; int8 (torchao) on the CPU")


def add_limit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-text-tokens", type=int, default=None, metavar="N", help="refuse a request whose text (as typed) is longer; "
                        "default: the length the AlignNet was trained on (512 for the official checkpoints, 128 for the mini)")
    parser.add_argument("--max-image-tokens", type=int, default=None, metavar="N", help="refuse larger sizes; default: 4x the tokens "
                        "of the size FLUX was made for (2048x2048 for FLUX.1)")
    parser.add_argument("--max-steps", type=int, default=None, metavar="N", help="refuse more denoising steps per request; default: 200")
    parser.add_argument("--max-images", type=int, default=None, metavar="N", help="refuse more images in one call; default: 64")


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="same seed, same image")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: 28, as FLUX.1-dev takes; a shipped FLUX "
                        "its own, the mini 20, the steps its scores are measured at; use 4 for schnell-like models)")
    parser.add_argument("--guidance", type=float, default=3.5, help="guidance for FLUX models with a guidance embedding")
    parser.add_argument("--height", type=int, default=None, help="default: the size the FLUX VAE was made for (1024 for FLUX.1, 64 for the mini FLUX)")
    parser.add_argument("--width", type=int, default=None, help="default: as --height")
    add_device_options(parser)


def add_device_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)")
    parser.add_argument("--dtype", default="auto", choices=DTYPES, help="auto: bfloat16 on GPU, float32 on CPU")


def add_edit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lightcontrol", default=None, metavar="PATH", help="a LightControl branch (from x2i lightcontrol train; 'mini': the "
                        "shipped one): FLUX also sees the first input image's pixels, for edits faithful to it")
    parser.add_argument("--lightcontrol-scale", type=float, default=1.0, metavar="S", help="strength of the LightControl branch (0: off)")
    parser.add_argument("--lora", default=None, metavar="PATH", help="a diffusers-format FLUX LoRA (from x2i lora train; 'mini': the shipped one)")
    parser.add_argument("--lora-scale", type=float, default=1.0, metavar="S", help="strength of the LoRA")


def add_condition_on_option(parser: argparse.ArgumentParser) -> None:
    from x2i.inference.request import CONDITION_ON

    parser.add_argument("--condition-on", default="auto", choices=CONDITION_ON,
                        help="what AlignNet reads: the request's states (prompt, the paper's); the MLLM's answer, written first "
                        "(greedy, at most 128 tokens) and read as an English prompt (answer, the release's reasoning mode); both "
                        "(prompt+answer); auto: per kind of request, the road this AlignNet was measured best on (its config's "
                        "roads; the shipped mini AlignNet: English text by its prompt, other languages and media by the answer), "
                        "the prompt road for AlignNets that do not say (the official ones)")


def add_flux_lora_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--flux-lora", action="append", default=[], metavar="PATH", help="a community FLUX LoRA (a style, a character: "
                        "diffusers, kohya or xlabs format, a file, a folder or a hub id) made for this FLUX, beside any edit --lora (repeatable); "
                        "mini-style: the mini world's style LoRA (shapes drawn squat)")
    parser.add_argument("--flux-lora-scale", action="append", type=float, default=[], metavar="S", help="its strength: one for all, or "
                        "one per --flux-lora in order (default 1)")


def flux_lora_pairs(args) -> list[tuple[str, float]]:
    """[(path, scale), ...] from --flux-lora and --flux-lora-scale."""
    paths, scales = getattr(args, "flux_lora", []), getattr(args, "flux_lora_scale", [])
    if len(scales) > 1 and len(scales) != len(paths):
        raise X2IError(f"{len(scales)} --flux-lora-scale for {len(paths)} --flux-lora: give one for all, or one for each")
    if not all(math.isfinite(s) for s in scales):
        raise X2IError("--flux-lora-scale must be a finite number")
    return [(path, scales[k] if len(scales) > 1 else scales[0] if scales else 1.0) for k, path in enumerate(paths)]
