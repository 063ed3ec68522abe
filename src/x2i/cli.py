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
        "AlignNet, and denoise with FLUX. T5 and CLIP are never loaded. Without model flags, the shipped mini "
        "models run (a world of colored shapes, in en/zh/fr/de/es, from text, one or two images, or an image "
        "and an instruction).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    gen.add_argument("--prompt", default="", help="text in any language the MLLM reads; with --image, the instruction")
    gen.add_argument("--image", action="append", default=[], metavar="PATH", help="an input image (repeatable)")
    gen.add_argument("--out", default="x2i.png", type=Path, help="output image; with --num-images > 1, a grid (each image is also saved as OUT-N)")
    gen.add_argument("--mllm", default=None, help="MLLM directory or hub id (Qwen2.5-VL); default: the shipped mini MLLM")
    gen.add_argument("--flux", default=None, help="FLUX pipeline directory or hub id (T5/CLIP are not loaded); default: the shipped mini FLUX")
    gen.add_argument("--alignnet", default=None, help="AlignNet directory, or an official diffusion_pytorch_model.bin; default: the shipped mini AlignNet")
    gen.add_argument("--alignnet-preset", default=None, help="the MLLM an official .bin was trained for (qwen2.5-vl-7b, ...); inferred from its shapes when left out")
    gen.add_argument("--seed", type=int, default=0, help="same seed, same image")
    gen.add_argument("--steps", type=int, default=28, help="denoising steps (28 for dev, 4 for schnell-like models)")
    gen.add_argument("--guidance", type=float, default=3.5, help="guidance for FLUX models with a guidance embedding")
    gen.add_argument("--height", type=int, default=None, help="default: the size the FLUX VAE was made for (1024 for FLUX.1, 64 for the mini FLUX)")
    gen.add_argument("--width", type=int, default=None)
    gen.add_argument("--num-images", type=int, default=1)
    gen.add_argument("--pad-to", type=int, default=None, metavar="N", help="left-pad the prompt to N tokens (0: no padding); default: as the AlignNet was trained (512 for the official checkpoints)")
    gen.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (auto: cuda when available)")
    gen.add_argument("--dtype", default="auto", choices=DTYPES, help="auto: bfloat16 on GPU, float32 on CPU")
    gen.set_defaults(run=run_generate)

    ev = commands.add_parser(
        "eval",
        help="score models in the mini world, GenEval-style, from a JSONL file of cases",
        description="Make an image for every case, read it back with the mini world's judge, and print the "
        "fraction of cases whose every expected attribute holds, per task and per language. The teacher "
        "(FLUX with T5/CLIP) is scored on the English text2image cases.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    ev.add_argument("cases", type=Path, help="JSONL file of cases (make some with `x2i mini make-cases`)")
    ev.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ev.add_argument("--save", type=Path, metavar="DIR", help="also write every image and a cases.jsonl with the judge's readings")
    ev.add_argument("--teacher", default=None, help="teacher FLUX directory (default: the shipped mini teacher); the student uses the same FLUX")
    ev.add_argument("--mllm", default=None, help="the student's MLLM (default: the shipped mini MLLM)")
    ev.add_argument("--alignnet", default=None, help="the student's AlignNet (default: the shipped mini AlignNet)")
    ev.add_argument("--models", choices=("both", "teacher", "student"), default="both", help="which models to score")
    ev.add_argument("--seed", type=int, default=0, help="case i uses seed + i for its wording, render and noise")
    ev.add_argument("--steps", type=int, default=20, help="denoising steps")
    ev.set_defaults(run=run_eval)

    dis = commands.add_parser(
        "distill",
        help="train an AlignNet by attention distillation (one CPU, one GPU, or accelerate launch)",
        description="Distill AlignNet: the frozen FLUX conditioned by its T5/CLIP (teacher) and by the frozen MLLM "
        "through AlignNet (student) see the same noise; AlignNet learns to make the student's attention outputs match "
        "the teacher's in every block. English captions only. Defaults: the shipped mini teacher and mini MLLM. "
        "For many GPUs or nodes: accelerate launch -m x2i.cli distill ...",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    dis.add_argument("--prompts", required=True, type=Path, help="captions: .txt (one per line), .jsonl, or WebDataset .tar shards (a file or a directory)")
    dis.add_argument("--out", required=True, type=Path, help="run directory: alignnet/, checkpoints/, log.jsonl, loss.png")
    dis.add_argument("--mllm", default=None, help="MLLM directory or hub id (default: the shipped mini MLLM)")
    dis.add_argument("--flux", default=None, help="FLUX pipeline with T5 and CLIP, the teacher (default: the shipped mini teacher)")
    dis.add_argument("--caption-key", default="caption", help="JSON key of the caption in .jsonl lines or WebDataset .json members (the authors': caption_en)")
    dis.add_argument("--steps", type=int, default=10000)
    dis.add_argument("--batch", type=int, default=1, help="prompts per process per step; the global batch is this times the number of processes")
    dis.add_argument("--lr", type=float, default=1e-4)
    dis.add_argument("--warmup", type=int, default=100, help="linear warm-up steps before the cosine decay")
    dis.add_argument("--weight-decay", type=float, default=1e-2)
    dis.add_argument("--max-grad-norm", type=float, default=1.0)
    dis.add_argument("--temperature", type=float, default=3.0)
    dis.add_argument("--timesteps", choices=("original", "logit-normal"), default="original", help="original: t = 1.0 only, as the authors; logit-normal: t drawn per sample, latents from the teacher's own flow")
    dis.add_argument("--height", type=int, default=None, help="default: the size the FLUX VAE was made for")
    dis.add_argument("--width", type=int, default=None)
    dis.add_argument("--guidance", type=float, default=3.5, help="for FLUX models with a guidance embedding")
    dis.add_argument("--pad-to", type=int, default=None, metavar="N", help="left-pad MLLM prompts to N tokens, in training and (saved in the AlignNet) at inference; default: T5's length")
    dis.add_argument("--fusion", choices=("conv", "scale"), default="conv", help="how AlignNet fuses the MLLM's layers")
    dis.add_argument("--pooling", choices=("mean", "masked_mean"), default="masked_mean", help="how AlignNet pools the vector FLUX reads in place of CLIP's")
    dis.add_argument("--prompt-dropout", type=float, default=0.0, metavar="P", help="with probability P hide a prompt's content from AlignNet, all but the chat template's closing tokens, so it also learns to read the MLLM's summary there (where image requests and captions look alike); 0: the original recipe")
    dis.add_argument("--closing-tokens", type=int, default=6, metavar="K", help="how many final prompt tokens --prompt-dropout keeps (6 for Qwen2.5-VL: '}<|im_end|>\\n<|im_start|>assistant\\n')")
    dis.add_argument("--seed", type=int, default=0)
    dis.add_argument("--checkpoint-every", type=int, default=500, metavar="N")
    dis.add_argument("--keep-checkpoints", type=int, default=3, metavar="K", help="older checkpoints are deleted (0: keep all)")
    dis.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUT/checkpoints")
    dis.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false", help="faster, more memory")
    dis.set_defaults(run=run_distill)

    mini = commands.add_parser("mini", help="the built-in mini world: make cases, check the judge, rebuild the mini models")
    mini_commands = mini.add_subparsers(dest="mini_command", required=True, metavar="STEP")
    cases = mini_commands.add_parser("make-cases", help="write fresh eval cases as JSONL", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cases.add_argument("--out", type=Path, required=True)
    cases.add_argument("--n", type=int, default=50, help="cases per task and language")
    cases.add_argument("--tasks", nargs="+", default=None, help="default: all four tasks")
    cases.add_argument("--langs", nargs="+", default=None, help="default: en zh fr de es")
    cases.add_argument("--objects", type=int, choices=(1, 2), default=None, help="objects per scene (default: 1 or 2)")
    cases.add_argument("--seed", type=int, default=1)
    cases.set_defaults(run=run_make_cases)
    judge = mini_commands.add_parser("judge", help="the judge's accuracy and confusion per attribute on fresh renders")
    judge.add_argument("--n", type=int, default=1000)
    judge.add_argument("--seed", type=int, default=12345)
    judge.set_defaults(run=run_check_judge)
    prompts = mini_commands.add_parser("make-prompts", help="write English captions of random scenes, for x2i distill", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    prompts.add_argument("--out", type=Path, required=True)
    prompts.add_argument("--n", type=int, default=50000)
    prompts.add_argument("--seed", type=int, default=7)
    prompts.set_defaults(run=run_make_prompts)
    teacher = mini_commands.add_parser("train-teacher", help="rebuild the mini FLUX teacher (VAE, transformer, T5, CLIP)", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    teacher.add_argument("--out", type=Path, required=True)
    teacher.add_argument("--seed", type=int, default=0)
    teacher.add_argument("--steps", type=int, default=6000, help="transformer training steps (stage 2)")
    teacher.add_argument("--vae-steps", type=int, default=1000)
    teacher.add_argument("--snapshots", type=int, nargs="*", default=[], metavar="STEP", help="also save the pipeline after these steps, to OUT/step-N")
    teacher.set_defaults(run=run_train_teacher)
    mllm = mini_commands.add_parser("train-mllm", help="rebuild the mini Qwen2.5-VL", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    mllm.add_argument("--out", type=Path, required=True)
    mllm.add_argument("--seed", type=int, default=0)
    mllm.add_argument("--steps", type=int, default=5000)
    mllm.set_defaults(run=run_train_mllm)

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
    from x2i.encoders import load_encoder
    from x2i.images import load_image, make_grid
    from x2i.mini import weights_dir
    from x2i.pipeline import X2IPipeline, check_size, load_alignnet, load_flux
    from x2i.request import Request

    # Everything the user typed is checked before any model is loaded.
    request = Request(args.prompt, [load_image(p) for p in args.image])
    check_output_path(args.out)
    if args.steps < 1 or args.num_images < 1:
        raise X2IError("--steps and --num-images must be at least 1")
    device, dtype = resolve_device_dtype(args.device, args.dtype)

    # The same steps as X2IPipeline.from_pretrained, with the size checked before the MLLM loads.
    # Without model flags: the shipped mini models (the mini FLUX is the teacher, loaded without T5/CLIP).
    alignnet = load_alignnet(args.alignnet or weights_dir("alignnet"), dtype, preset=args.alignnet_preset).to(device)
    flux = load_flux(args.flux or weights_dir("teacher"), dtype).to(device)
    height, width = args.height or flux.vae.config.sample_size, args.width or flux.vae.config.sample_size
    check_size(flux, height, width)
    pipe = X2IPipeline(load_encoder(args.mllm or weights_dir("mllm"), device=device, dtype=dtype), alignnet, flux, pad_to=args.pad_to)
    images = pipe(
        request,
        height=height,
        width=width,
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


def run_eval(args) -> None:
    import json

    from x2i.encoders import load_encoder
    from x2i.mini import weights_dir
    from x2i.mini.eval import load_cases, run_student, run_teacher, save_results, summarize
    from x2i.pipeline import X2IPipeline, load_alignnet, load_flux

    cases = load_cases(args.cases)
    teacher_path = args.teacher or weights_dir("teacher")
    report, results, teacher = {"teacher": None, "student": None, "n": len(cases)}, [], None
    if args.models in ("both", "teacher"):
        teacher = load_flux(teacher_path, text_encoders=True)
        results += run_teacher(teacher, cases, seed=args.seed, steps=args.steps)
        report["teacher"] = summarize(results)
    if args.models in ("both", "student"):
        alignnet = load_alignnet(args.alignnet or weights_dir("alignnet"))
        flux = teacher or load_flux(teacher_path)  # the student denoises with the teacher's FLUX; T5/CLIP go unused
        student = X2IPipeline(load_encoder(args.mllm or weights_dir("mllm")), alignnet, flux)
        student_results = run_student(student, cases, seed=args.seed, steps=args.steps)
        report["student"] = summarize(student_results)
        results += student_results
    if args.save:
        save_results(results, args.save)
    if args.json:
        print(json.dumps(report))
        return
    print(f"{len(cases)} cases, {args.steps} steps, seed {args.seed}")
    for model in ("teacher", "student"):
        if report[model] is not None:
            scope = "English text2image cases" if model == "teacher" else "cases"
            print(f"{model}: {report[model]['n']} {scope}")
            for name, part in report[model].items():
                if name != "n":
                    print(f"  {name}: {part}")


def run_make_cases(args) -> None:
    import json

    from x2i.mini.eval import TASKS, make_cases
    from x2i.mini.world import LANGUAGES

    tasks, langs = args.tasks or TASKS, args.langs or LANGUAGES
    unknown = [t for t in tasks if t not in TASKS] + [lang for lang in langs if lang not in LANGUAGES]
    if unknown:
        raise X2IError(f"unknown task or language {unknown}; tasks: {', '.join(TASKS)}; languages: {', '.join(LANGUAGES)}")
    cases = make_cases(args.n, tasks, langs, seed=args.seed, num_objects=args.objects)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(c) + "\n" for c in cases))
    print(f"wrote {len(cases)} cases to {args.out}")


def run_distill(args) -> None:
    import time

    from x2i.mini import weights_dir
    from x2i.train import DistillConfig, distill

    config = DistillConfig(
        prompts=str(args.prompts), out=str(args.out), mllm=args.mllm or str(weights_dir("mllm")),
        flux=args.flux or str(weights_dir("teacher")), caption_key=args.caption_key, steps=args.steps,
        batch=args.batch, lr=args.lr, warmup=args.warmup, weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm, temperature=args.temperature, timesteps=args.timesteps,
        height=args.height, width=args.width, guidance=args.guidance, pad_to=args.pad_to, fusion=args.fusion,
        pooling=args.pooling, prompt_dropout=args.prompt_dropout, closing_tokens=args.closing_tokens, seed=args.seed, checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints, resume=args.resume, gradient_checkpointing=args.gradient_checkpointing,
    )
    start = time.time()
    path = distill(config)
    print(f"wrote the AlignNet to {path} in {time.time() - start:.0f} s (loss curve: {args.out / 'loss.png'})")


def run_make_prompts(args) -> None:
    from x2i.mini.teacher import english_corpus

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(line + "\n" for line in english_corpus(args.n, args.seed)))
    print(f"wrote {args.n} English captions to {args.out}")


def run_check_judge(args) -> None:
    from x2i.mini.judge import check_judge

    report = check_judge(args.n, args.seed)
    print(f"{report['renders']} renders: scene accuracy {report['scene_accuracy']:.4f}, wrong object counts {report['object_count_errors']}")
    for attr, matrix in report["confusion"].items():
        print(f"\n{attr}: accuracy {report['attribute_accuracy'][attr]:.4f} (rows: truth, columns: judged)")
        values = list(matrix)
        print("  " + "".join(f"{v:>9}" for v in ["", *values]))
        for truth in values:
            print("  " + f"{truth:>9}" + "".join(f"{matrix[truth][v]:>9}" for v in values))


def run_train_teacher(args) -> None:
    import time

    from x2i.mini.teacher import TeacherConfig, train_teacher

    start = time.time()
    config = TeacherConfig(seed=args.seed, steps=args.steps, vae_steps=args.vae_steps)
    path = train_teacher(config, args.out, snapshots=tuple(args.snapshots))
    print(f"wrote the mini teacher to {path} in {time.time() - start:.0f} s")


def run_train_mllm(args) -> None:
    import time

    from x2i.mini.mllm import MLLMConfig, train_mllm

    start = time.time()
    path = train_mllm(MLLMConfig(seed=args.seed, steps=args.steps), args.out)
    print(f"wrote the mini MLLM to {path} in {time.time() - start:.0f} s")


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
