"""The `x2i` command line."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from x2i.errors import X2IError

DTYPES = ("auto", "float32", "bfloat16", "float16")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="x2i",
        description="X2I: a FLUX diffusion transformer conditioned by a multimodal LLM through AlignNet.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = commands.add_parser(
        "generate",
        help="make images from text, images, or images + an instruction",
        description="Read the request with the MLLM, turn its hidden layers into FLUX conditioning with "
        "AlignNet, and denoise with FLUX. T5 and CLIP are never loaded.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    gen.add_argument("--prompt", default="", help="text in any language the MLLM reads; with --image, the instruction")
    gen.add_argument("--image", action="append", default=[], metavar="PATH", help="an input image (repeatable)")
    gen.add_argument("--out", default="x2i.png", type=Path, help="output image; with --num-images > 1, a grid (each image is also saved as OUT-N)")
    gen.add_argument("--mllm", required=True, help="MLLM directory or hub id (Qwen2.5-VL)")
    gen.add_argument("--flux", required=True, help="FLUX pipeline directory or hub id (T5/CLIP are not loaded)")
    gen.add_argument("--alignnet", required=True, help="AlignNet directory, or an official diffusion_pytorch_model.bin")
    gen.add_argument("--alignnet-preset", default=None, help="the MLLM an official .bin was trained for (qwen2.5-vl-7b, ...); inferred from its shapes when left out")
    gen.add_argument("--seed", type=int, default=0, help="same seed, same image")
    gen.add_argument("--steps", type=int, default=28, help="denoising steps (28 for dev, 4 for schnell-like models)")
    gen.add_argument("--guidance", type=float, default=3.5, help="guidance for FLUX models with a guidance embedding")
    gen.add_argument("--height", type=int, default=1024)
    gen.add_argument("--width", type=int, default=1024)
    gen.add_argument("--num-images", type=int, default=1)
    gen.add_argument("--pad-to", type=int, default=None, metavar="N", help="left-pad the prompt to N tokens (0: no padding); default: as the AlignNet was trained (512 for the official checkpoints)")
    gen.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)")
    gen.add_argument("--dtype", default="auto", choices=DTYPES, help="auto: bfloat16 on GPU, float32 on CPU")
    gen.set_defaults(run=run_generate)

    tiny = commands.add_parser(
        "tiny-models",
        help="build tiny random models (MLLM, FLUX, AlignNet) for a smoke run; their images mean nothing",
    )
    tiny.add_argument("directory", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(run=run_tiny_models)
    return parser


def resolve_device_dtype(device: str, dtype: str):
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except RuntimeError as e:
        raise X2IError(f"unknown device {device!r} ({e})") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise X2IError("--device cuda asked for, but no CUDA GPU is visible; use --device cpu")
    if dtype == "auto":
        dtype = "bfloat16" if device.type == "cuda" else "float32"
    return device, getattr(torch, dtype)


def check_output_path(out: Path) -> None:
    from PIL import Image

    if Image.registered_extensions().get(out.suffix.lower()) is None:
        raise X2IError(f"cannot write {out}: unknown image extension {out.suffix!r} (use .png, .jpg or .webp)")


def run_generate(args) -> None:
    from x2i.images import load_image, make_grid
    from x2i.encoders import load_encoder
    from x2i.pipeline import X2IPipeline, check_size, load_alignnet, load_flux
    from x2i.request import Request

    # Everything the user typed is checked before any model is loaded.
    request = Request(args.prompt, [load_image(p) for p in args.image])
    check_output_path(args.out)
    if args.steps < 1 or args.num_images < 1:
        raise X2IError("--steps and --num-images must be at least 1")
    device, dtype = resolve_device_dtype(args.device, args.dtype)

    # The same steps as X2IPipeline.from_pretrained, with the size checked before the MLLM loads.
    alignnet = load_alignnet(args.alignnet, dtype, preset=args.alignnet_preset).to(device)
    flux = load_flux(args.flux, dtype).to(device)
    check_size(flux, args.height, args.width)
    pipe = X2IPipeline(load_encoder(args.mllm, device=device, dtype=dtype), alignnet, flux, pad_to=args.pad_to)
    images = pipe(
        request,
        height=args.height,
        width=args.width,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        num_images_per_prompt=args.num_images,
        seed=args.seed,
    )

    args.out.parent.mkdir(parents=True, exist_ok=True)
    if len(images) == 1:
        images[0].save(args.out)
        print(f"wrote {args.out}")
        return
    for i, image in enumerate(images):
        image.save(args.out.with_name(f"{args.out.stem}-{i}{args.out.suffix}"))
    captions = [f"seed {args.seed} #{i}" for i in range(len(images))]
    make_grid(images, captions).save(args.out)
    print(f"wrote {len(images)} images and their grid {args.out}")


def run_tiny_models(args) -> None:
    from x2i.tiny import build_tiny_models

    paths = build_tiny_models(args.directory, seed=args.seed)
    print("built tiny random models (for smoke runs; their images mean nothing):")
    for name, path in paths.items():
        print(f"  --{name} {path}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        args.run(args)
    except X2IError as e:
        print(f"x2i: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("x2i: interrupted", file=sys.stderr)
        return 130
    return 0


def _quiet_libraries() -> None:
    """Keep the terminal to our progress bars and messages, not library advice (set before import)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning)

if __name__ == "__main__":
    sys.exit(main())
