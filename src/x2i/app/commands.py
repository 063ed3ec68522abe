"""What each `x2i` command does: check what was typed, then one call into the library.

Everything the user typed is checked before any model loads, so a typo costs no loading time.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from x2i.errors import X2IError


def check_numbers(args) -> None:
    """Numbers typed for a generation: finite, and seeds within what a torch generator takes."""
    for name in ("guidance", "lightcontrol_scale", "lora_scale", "video_fps"):
        value = getattr(args, name, None)
        if value is not None and not math.isfinite(value):
            raise X2IError(f"--{name.replace('_', '-')} must be a finite number, not {value}")
    if getattr(args, "seed", None) is not None and not 0 <= args.seed < 2**64:
        raise X2IError("--seed must be between 0 and 2^64 - 1")
    if getattr(args, "pad_to", None) is not None and args.pad_to < 0:
        raise X2IError("--pad-to must be at least 0 (0: no padding)")
    for name in ("max_text_tokens", "max_image_tokens", "max_steps", "max_images"):
        if getattr(args, name, None) is not None and getattr(args, name) < 1:
            raise X2IError(f"--{name.replace('_', '-')} must be at least 1")


def resolve_model_options(args) -> None:
    """The model options not typed: from --pipeline DIR (a saved pipeline's parts and settings), the
    AlignNet from the MLLM and the steps from the FLUX (x2i.inference.locations)."""
    from x2i.inference.locations import alignnet_for, default_steps

    if getattr(args, "pipeline", None) is not None:
        use_saved_pipeline(args)
    if args.alignnet is None:
        args.alignnet = alignnet_for(args.mllm)
    if args.steps is None:
        args.steps = default_steps(args.flux)


def use_saved_pipeline(args) -> None:
    from x2i.inference.saved_pipeline import read_saved_pipeline

    if (args.mllm, args.flux, args.alignnet) != ("mini", "mini", None):
        raise X2IError("--pipeline names the MLLM, FLUX and AlignNet: leave out --mllm, --flux and --alignnet")
    saved = read_saved_pipeline(args.pipeline)
    args.mllm, args.flux, args.alignnet = saved["mllm"], saved["flux"], saved["alignnet"]
    args.lightcontrol = getattr(args, "lightcontrol", None) or saved["lightcontrol"]
    if getattr(args, "lora", None) is None:
        args.lora, args.lora_scale = saved["lora"], saved["lora_scale"]
    if not getattr(args, "flux_lora", None):
        args.flux_lora, args.flux_lora_scale = [p for p, _ in saved["flux_loras"]], [s for _, s in saved["flux_loras"]]
    args.condition_on = saved["condition_on"] if args.condition_on == "auto" else args.condition_on
    args.pad_to = saved["pad_to"] if getattr(args, "pad_to", None) is None else args.pad_to


def load_pipeline(args, device=None, **kwargs):
    """The pipeline of generate, chat and serve, from the model, memory and limit options (on
    `device` when given: a process's own GPU)."""
    from x2i.app.arguments import flux_lora_pairs
    from x2i.inference.loaders import device_and_dtype
    from x2i.inference.pipeline import X2IPipeline

    named, dtype = device_and_dtype(args.device, args.dtype)
    device = device or named
    parts = {"pad_to": getattr(args, "pad_to", None), "lightcontrol": getattr(args, "lightcontrol", None), "lora": getattr(args, "lora", None),
             "lora_scale": getattr(args, "lora_scale", 1.0), "flux_loras": flux_lora_pairs(args), **kwargs}
    return X2IPipeline.from_pretrained(args.mllm, args.flux, args.alignnet, device=device, dtype=dtype, quantize=args.quantize,
                                       offload=args.offload, max_text_tokens=args.max_text_tokens, max_image_tokens=args.max_image_tokens,
                                       max_steps=args.max_steps, max_images=args.max_images, condition_on=args.condition_on, **parts)


def run_generate(args) -> None:
    from x2i.inference.loaders import encoder_class
    from x2i.inference.locations import locate
    from x2i.inference.request import Request
    from x2i.inference.work_bounds import MAX_IMAGES, MAX_STEPS, check_counts
    from x2i.media import check_image_path, open_input, save_images

    check_numbers(args)
    resolve_model_options(args)
    if args.steps < 1 or args.num_images < 1 or (args.batch_size is not None and args.batch_size < 1):
        raise X2IError("--steps, --num-images and --batch-size must be at least 1")
    if args.video_fps <= 0 or args.max_frames < 1:
        raise X2IError("--video-fps must be positive and --max-frames at least 1")
    if args.requests is not None:
        from x2i.app.batch import run_requests

        return run_requests(args, load_pipeline)
    args.out = args.out or Path("x2i.png")
    try:
        args.prompt.encode("utf-8")
    except UnicodeEncodeError as e:  # bytes that were not text in the terminal's encoding
        raise X2IError("--prompt is not text in the terminal's encoding; type it again") from e
    request = Request(args.prompt, [open_input(path, kind) for kind, path in args.media])
    mllm = locate(args.mllm, "mllm")
    encoder_class(mllm).check(request, mllm)  # e.g. sound for a reader that does not hear, or too long a sound
    check_image_path(args.out)
    check_counts(args.steps, args.num_images, args.max_steps or MAX_STEPS, args.max_images or MAX_IMAGES)  # before anything loads
    if args.lightcontrol and not request.images:
        raise X2IError("--lightcontrol keeps an edit faithful to its source image: give one with --image")
    pipe = load_pipeline(args, alignnet_preset=args.alignnet_preset, height=args.height, width=args.width)
    pipe.encoder.video_fps, pipe.encoder.max_video_frames = args.video_fps, args.max_frames
    images = pipe(request, height=args.height, width=args.width, num_inference_steps=args.steps, guidance_scale=args.guidance,
                  num_images_per_prompt=args.num_images, seed=args.seed, lightcontrol_scale=args.lightcontrol_scale,
                  batch_size=args.batch_size)
    print(save_images(images, args.out, [f"seed {args.seed + i}" for i in range(len(images))]))


def run_serve(args) -> None:
    check_numbers(args)
    resolve_model_options(args)
    if args.steps < 1 or args.max_inputs < 0 or not args.max_upload_mb > 0 or not math.isfinite(args.max_upload_mb):
        raise X2IError("--steps must be at least 1, --max-inputs at least 0 and --max-upload-mb positive")
    try:
        from x2i.app.serve import build_app
    except ImportError as e:
        raise X2IError("x2i serve needs Gradio: pip install 'x2i[serve]'") from e
    pipe = load_pipeline(args)
    if args.compile:
        print("compiling FLUX's transformer (once per size)...", file=sys.stderr)
        pipe.compile_transformer(args.steps)
    app = build_app(pipe, max_inputs=args.max_inputs, default_steps=args.steps, lightcontrol_scale=args.lightcontrol_scale)
    app.queue(default_concurrency_limit=1, max_size=64).launch(
        server_name=args.host, server_port=args.port, max_file_size=int(args.max_upload_mb * 1024 * 1024), show_error=True,
    )


def run_chat(args) -> None:
    from x2i.app.chat import chat_loop
    from x2i.inference.session import Session
    from x2i.media import check_image_path

    check_numbers(args)
    resolve_model_options(args)
    if args.steps < 1 or args.answer_tokens < 0:
        raise X2IError("--steps must be at least 1 and --answer-tokens at least 0")
    check_image_path(args.out / "turn-1.png")  # --out must be (or become) a writable directory
    pipe = load_pipeline(args, height=args.height, width=args.width)
    session = Session(pipe, answer_tokens=args.answer_tokens, keep_history=not args.no_history, seed=args.seed,
                      num_inference_steps=args.steps, guidance_scale=args.guidance, height=args.height, width=args.width)
    args.out.mkdir(parents=True, exist_ok=True)
    chat_loop(session, args.out, interactive=sys.stdin.isatty())


def run_eval(args) -> None:
    from x2i.app.arguments import flux_lora_pairs
    from x2i.inference.loaders import device_and_dtype
    from x2i.inference.locations import default_steps
    from x2i.media import check_image_path
    from x2i.mini.eval import evaluate, load_cases, save_results

    args.steps = default_steps(args.teacher) if args.steps is None else args.steps
    if args.steps < 1 or not 0 <= args.seed < 2**63:
        raise X2IError("--steps must be at least 1 and --seed between 0 and 2^63 - 1")
    check_numbers(args)
    if args.save:
        check_image_path(args.save / "00000-student.png")  # --save must be (or become) a writable directory
    cases = load_cases(args.cases)
    device, _ = device_and_dtype(args.device, "float32")
    report, results = evaluate(cases, args.models, flux=args.teacher, mllm=args.mllm, alignnet=args.alignnet, lightcontrol=args.lightcontrol,
                               lora=args.lora, lora_scale=args.lora_scale, lightcontrol_scale=args.lightcontrol_scale,
                               condition_on=args.condition_on, seed=args.seed, steps=args.steps, device=device, flux_loras=flux_lora_pairs(args))
    if args.save:
        save_results(results, args.save)
    if args.json:
        print(json.dumps(report))
        return
    print(f"{len(cases)} cases, {args.steps} steps, seed {args.seed}")
    for model in [m for m in ("teacher", "student") if report[m] is not None]:
        print(f"{model}: {report[model]['n']} {'English text2image cases' if model == 'teacher' else 'cases'}")
        print("".join(f"  {name}: {part}\n" for name, part in report[model].items() if name != "n"), end="")


def run_training(args) -> None:
    """x2i distill, x2i lightcontrol train, x2i lora train: the config from the options, then the trainer."""
    from x2i.options import config_from_args
    from x2i.training.distill import DistillConfig, distill
    from x2i.training.edit_training import (
        LightControlConfig,
        LoraConfig,
        train_lightcontrol,
        train_lora,
    )

    config_class, trainer, what = {"distill": (DistillConfig, distill, "AlignNet"), "lightcontrol": (LightControlConfig, train_lightcontrol, "LightControl"),
                                   "lora": (LoraConfig, train_lora, "LoRA")}[args.trains]
    start = time.time()
    path = trainer(config_from_args(config_class, args))
    print(f"wrote the {what} to {path} in {time.time() - start:.0f} s (loss curve: {Path(args.out) / 'loss.png'})")


def run_tiny_models(args) -> None:
    from x2i.tiny_models import build_tiny_models

    if args.directory.exists() and not args.directory.is_dir():
        raise X2IError(f"{args.directory} is a file; tiny models are written into a directory")
    paths = build_tiny_models(args.directory, seed=args.seed, reader=args.reader)
    print("built tiny random models (for smoke runs; their images mean nothing):", *(f"--{k} {v}" for k, v in paths.items()))
