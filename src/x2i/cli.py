"""The `x2i` command line: generate, eval, distill, lightcontrol train, lora train, tiny-models, and the mini world's `mini ...`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from x2i.errors import X2IError

DTYPES = ("auto", "float32", "bfloat16", "float16")
DEFAULTS = argparse.ArgumentDefaultsHelpFormatter


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `command` (the first word typed), the options that come from the
    trainers' config classes are built only for that command, so that `x2i --help` and
    `x2i generate` do not import the trainers."""
    from x2i.mini.cli import add_mini_commands
    from x2i.options import add_options

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
        formatter_class=DEFAULTS,
    )
    gen.add_argument("--prompt", default="", help="text in any language the MLLM reads; with inputs, the instruction")
    # One list in the order typed: the MLLM reads the inputs in that order, then the prompt.
    gen.add_argument("--image", action=AppendMedia, dest="media", default=[], metavar="PATH", help="an input image (repeatable)")
    gen.add_argument("--audio", action=AppendMedia, dest="media", metavar="PATH", help="a sound clip: wav, mp3, flac, ogg, m4a, ... (repeatable; readers that hear: Qwen2.5-Omni)")
    gen.add_argument("--video", action=AppendMedia, dest="media", metavar="PATH", help="a video clip: mp4, webm, gif, ... (repeatable; Qwen2.5-VL, Qwen2.5-Omni)")
    gen.add_argument("--video-fps", type=float, default=2.0, metavar="FPS", help="video frames are sampled at this rate")
    gen.add_argument("--max-frames", type=int, default=64, metavar="N", help="at most N frames per clip: a longer clip is cut, with a warning")
    gen.add_argument("--out", default="x2i.png", type=Path, help="output image; with --num-images > 1, a grid (each image is also saved as OUT-N)")
    add_model_options(gen)
    add_limit_options(gen)
    add_memory_options(gen)
    gen.add_argument("--alignnet-preset", default=None, help="the MLLM an official .bin was trained for (qwen2.5-vl-7b, ...); inferred from its shapes and the MLLM when left out")
    add_generation_options(gen)
    gen.add_argument("--num-images", type=int, default=1)
    gen.add_argument("--pad-to", type=int, default=None, metavar="N", help="left-pad the prompt to N tokens (0: no padding); default: as the AlignNet was trained (512 for the official checkpoints)")
    add_condition_on_option(gen)
    add_edit_options(gen)
    gen.set_defaults(run=run_generate)

    ev = commands.add_parser(
        "eval",
        help="score models in the mini world, GenEval-style, from a JSONL file of cases",
        description="Make an image for every case, read it back with the mini world's judge, and print the "
        "fraction of cases whose every expected attribute holds, per task and per language. The teacher "
        "(FLUX with T5/CLIP) is scored on the English text2image cases; teacher and student get the same noise.",
        formatter_class=DEFAULTS,
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
    add_condition_on_option(ev)
    add_edit_options(ev)
    ev.add_argument("--device", default="auto", help="cpu, cuda, ... (auto: cuda when available); the noise is the same on every device")
    ev.set_defaults(run=run_eval)

    dis = commands.add_parser(
        "distill",
        help="train an AlignNet by attention distillation (one CPU, one GPU, or accelerate launch)",
        description="Distill AlignNet: the frozen FLUX conditioned by its T5/CLIP (teacher) and by the frozen MLLM "
        "through AlignNet (student) see the same noise; AlignNet learns to make the student's attention outputs match "
        "the teacher's in every block. English captions only. Defaults: the shipped mini teacher and mini MLLM. "
        "For many GPUs or nodes: accelerate launch -m x2i.cli distill ...",
        formatter_class=DEFAULTS,
    )
    if command in (None, "distill"):
        from x2i.distill import DistillConfig

        add_options(dis, DistillConfig)
    dis.set_defaults(run=run_distill)

    for name, what, description in (
        ("lightcontrol", "a LightControl branch (the source image's pixels into FLUX, for faithful edits)",
         "Train a LightControl branch on (source image, instruction, target image) triples: the frozen MLLM reads source + "
         "instruction, the frozen AlignNet conditions the frozen FLUX, and only the branch, which reads the SOURCE image, "
         "learns FLUX's velocity toward the target (flow matching, logit-normal timesteps). Defaults: the shipped mini models. "
         "For many GPUs: accelerate launch -m x2i.cli lightcontrol train ..."),
        ("lora", "LoRA adapters on FLUX's attention for image + instruction -> image (diffusers format)",
         "Train LoRA adapters on the FLUX transformer's attention on (source image, instruction, target image) triples, "
         "conditioned as X2IPipeline conditions FLUX (frozen MLLM and AlignNet); optionally with a trained LightControl "
         "attached. Saved as diffusers saves LoRAs (FluxPipeline.load_lora_weights reads it). Defaults: the shipped mini models."),
    ):
        group = commands.add_parser(name, help=f"train {what}").add_subparsers(dest=f"{name}_command", required=True, metavar="STEP")
        trainer = group.add_parser("train", help=f"train {what}", description=description, formatter_class=DEFAULTS)
        if command in (None, name):
            from x2i.finetune import LightControlConfig, LoraConfig

            add_options(trainer, LightControlConfig if name == "lightcontrol" else LoraConfig)
        trainer.set_defaults(run=run_finetune, trains=name)

    add_mini_commands(commands, with_recipes=command in (None, "mini"))

    srv = commands.add_parser(
        "serve",
        help="a web app (Gradio): generate from text and uploads, and hold conversations",
        description="Start a Gradio app over one X2IPipeline, loaded once: a Generate tab (prompt, uploads of the inputs the "
        "reader takes, seed, steps, size, guidance, number of images, and a gallery of results with the inputs that made them) "
        "and a Conversation tab. Requests queue and run one at a time. Without model flags, the shipped mini models.",
        formatter_class=DEFAULTS,
    )
    add_model_options(srv)
    add_limit_options(srv)
    add_memory_options(srv)
    srv.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 opens the app to the network")
    srv.add_argument("--port", type=int, default=7860)
    srv.add_argument("--steps", type=int, default=28, help="the app's default denoising steps")
    srv.add_argument("--max-inputs", type=int, default=4, metavar="N", help="at most N uploaded files per request")
    srv.add_argument("--max-upload-mb", type=float, default=50, metavar="MB", help="largest upload accepted")
    srv.add_argument("--compile", action="store_true", help="torch.compile FLUX's transformer at start (a minute or more; each new "
                     "size compiles again): faster requests for a long-running server")
    add_condition_on_option(srv)
    add_device_options(srv)
    srv.set_defaults(run=run_serve)

    chat = commands.add_parser(
        "chat",
        help="a conversation in the terminal: each turn edits the last picture, reading the earlier turns",
        description="Type a request per line; each turn's first picture is written as OUT/turn-N.png. From the second "
        "turn on, the last picture is the new turn's input and the MLLM reads the earlier turns and its answers to them "
        "(\"now make it blue\"). Commands: /image PATH, /audio PATH, /video PATH attach an input to the next turn; "
        "/reset starts over; /quit ends. When standard input is not a terminal, one turn per line (for scripts).",
        formatter_class=DEFAULTS,
    )
    chat.add_argument("--out", type=Path, default=Path("chat"), help="directory for turn-N.png")
    add_model_options(chat)
    add_limit_options(chat)
    add_memory_options(chat)
    add_generation_options(chat)
    chat.add_argument("--answer-tokens", type=int, default=64, metavar="N", help="the MLLM answers each turn in at most N tokens, "
                      "and later turns read the answers (0: no answers)")
    chat.add_argument("--no-history", action="store_true", help="each turn reads only its own inputs and the last picture")
    add_condition_on_option(chat)
    chat.set_defaults(run=run_chat)

    tiny = commands.add_parser(
        "tiny-models",
        help="build tiny random models (MLLM, FLUX, AlignNet) for a smoke run; their images mean nothing",
    )
    tiny.add_argument("directory", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--reader", default="qwen2_5_vl", choices=("qwen2_5_vl", "internvl", "qwen2_5_omni"), help="the MLLM family")
    tiny.set_defaults(run=run_tiny_models)
    return parser


class AppendMedia(argparse.Action):
    """--image/--audio/--video PATH: append (kind, PATH) to one list, so the order typed is kept."""

    def __call__(self, parser, namespace, value, option_string=None):
        setattr(namespace, self.dest, [*getattr(namespace, self.dest), (option_string.lstrip("-"), value)])


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mllm", default=None, help="MLLM directory or hub id (Qwen2.5-VL, InternVL, Qwen2.5-Omni); default: the shipped mini MLLM")
    parser.add_argument("--flux", default=None, help="FLUX pipeline directory or hub id (T5/CLIP are not loaded); default: the shipped mini FLUX")
    parser.add_argument("--alignnet", default=None, help="AlignNet directory, or an official diffusion_pytorch_model.bin; default: the shipped mini AlignNet")


def add_memory_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--offload", choices=("model", "sequential"), default=None, help="keep the parts in CPU memory and move each to "
                        "the GPU only while it runs (model), or stream every layer's weights (sequential: least memory, slowest); needs CUDA")
    parser.add_argument("--quantize", choices=("nf4", "int8"), default=None, help="quantize the FLUX transformer and the MLLM as they load: "
                        "bitsandbytes nf4 or int8 on CUDA; int8 (torchao) on the CPU")


def load_pipeline(args, device, dtype, **kwargs):
    """The pipeline for generate, chat and serve, with the memory mode asked for; defaults: the
    shipped mini models. A mode that needs CUDA says so before anything loads."""
    from x2i.mini import weights_dir
    from x2i.pipeline import X2IPipeline

    if args.offload and device.type != "cuda":
        raise X2IError("--offload moves each part to a GPU while it runs, and no CUDA GPU is visible; leave it out on the CPU")
    if args.offload and args.quantize:
        raise X2IError("--offload and --quantize are one or the other for now (moving quantized weights is untested here); pick one")
    # with offload the parts load in CPU memory, and the pipeline moves them
    pipe = X2IPipeline.from_pretrained(
        mllm=args.mllm or weights_dir("mllm"), flux=args.flux or weights_dir("teacher"), alignnet=args.alignnet or weights_dir("alignnet"),
        device="cpu" if args.offload else device, dtype=dtype, quantize=args.quantize,
        max_prompt_tokens=args.max_prompt_tokens, max_image_tokens=args.max_image_tokens, **kwargs,
    )
    if args.offload:
        getattr(pipe, f"enable_{args.offload}_cpu_offload")(device)
    return pipe


def add_limit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-prompt-tokens", type=int, default=None, metavar="N", help="refuse longer prompts; default: the length "
                        "the AlignNet was trained on (512 for the official checkpoints, 128 for the mini)")
    parser.add_argument("--max-image-tokens", type=int, default=None, metavar="N", help="refuse larger sizes; default: 4x the tokens "
                        "of the size FLUX was made for (2048x2048 for FLUX.1)")


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="same seed, same image")
    parser.add_argument("--steps", type=int, default=28, help="denoising steps (28 for dev, 4 for schnell-like models)")
    parser.add_argument("--guidance", type=float, default=3.5, help="guidance for FLUX models with a guidance embedding")
    parser.add_argument("--height", type=int, default=None, help="default: the size the FLUX VAE was made for (1024 for FLUX.1, 64 for the mini FLUX)")
    parser.add_argument("--width", type=int, default=None)
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
    from x2i.request import CONDITION_ON

    parser.add_argument("--condition-on", default="auto", choices=CONDITION_ON,
                        help="what AlignNet reads: the request's states (prompt, the paper's); the MLLM's answer, written first "
                        "(greedy, at most 128 tokens) and read as an English prompt (answer, the release's reasoning mode); both "
                        "(prompt+answer); auto: per kind of request, the road this AlignNet was measured best on (its config's "
                        "roads; the shipped mini AlignNet: English text by its prompt, other languages and media by the answer), "
                        "the prompt road for AlignNets that do not say (the official ones)")


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


def load_media(media: list[tuple[str, str]]) -> list:
    """Open and check every input file: a missing, unreadable or unsupported one fails here."""
    from x2i.images import load_image
    from x2i.media import Audio, Video

    loaders = {"image": load_image, "audio": Audio.load, "video": Video.load}
    return [loaders[kind](path) for kind, path in media]


def run_generate(args) -> None:
    from x2i.images import make_grid
    from x2i.loaders import encoder_class
    from x2i.mini import weights_dir
    from x2i.request import Request

    # Everything the user typed is checked before any model is loaded.
    request = Request(args.prompt, load_media(args.media))
    mllm = args.mllm or weights_dir("mllm")
    encoder_class(mllm).check(request, mllm)  # e.g. sound for a reader that does not hear, or too long a sound
    check_output_path(args.out)
    if args.steps < 1 or args.num_images < 1:
        raise X2IError("--steps and --num-images must be at least 1")
    if args.video_fps <= 0 or args.max_frames < 1:
        raise X2IError("--video-fps must be positive and --max-frames at least 1")
    device, dtype = resolve_device_dtype(args.device, args.dtype)

    if args.lightcontrol and not request.images:
        raise X2IError("--lightcontrol keeps an edit faithful to its source image: give one with --image")
    # Without model flags: the shipped mini models (the mini FLUX is the teacher, loaded without T5/CLIP).
    pipe = load_pipeline(args, device, dtype, pad_to=args.pad_to, alignnet_preset=args.alignnet_preset, height=args.height, width=args.width,
                         lightcontrol=args.lightcontrol, lora=args.lora, lora_scale=args.lora_scale)
    pipe.encoder.video_fps, pipe.encoder.max_video_frames = args.video_fps, args.max_frames
    images = pipe(request, height=args.height, width=args.width, num_inference_steps=args.steps, guidance_scale=args.guidance,
                  num_images_per_prompt=args.num_images, seed=args.seed, condition_on=args.condition_on, lightcontrol_scale=args.lightcontrol_scale)

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


def run_serve(args) -> None:
    if args.steps < 1 or args.max_inputs < 0 or args.max_upload_mb <= 0:
        raise X2IError("--steps must be at least 1, --max-inputs at least 0 and --max-upload-mb positive")
    device, dtype = resolve_device_dtype(args.device, args.dtype)
    pipe = load_pipeline(args, device, dtype)
    if args.compile:
        compile_transformer(pipe, args.steps)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from the app
    try:
        from x2i.serve import build_app
    except ImportError as e:
        raise X2IError("x2i serve needs Gradio: pip install 'x2i[serve]'") from e

    app = build_app(pipe, max_inputs=args.max_inputs, default_steps=args.steps, condition_on=args.condition_on)
    app.queue(default_concurrency_limit=1, max_size=64).launch(
        server_name=args.host, server_port=args.port, max_file_size=int(args.max_upload_mb * 1024 * 1024), show_error=True,
    )


def compile_transformer(pipe, steps: int) -> None:
    """torch.compile FLUX's transformer and compile it now, with one request at the default size,
    so that no visitor waits for it; if compiling fails (no C++ compiler, say), serve uncompiled."""
    import torch

    from x2i.request import Request

    eager = pipe.flux.transformer
    pipe.flux.transformer = torch.compile(eager)
    print("compiling FLUX's transformer (once per size)...", file=sys.stderr)
    try:
        pipe(Request("warm-up"), num_inference_steps=min(steps, 2), show_progress=False)
    except Exception as e:  # noqa: BLE001  (any compiler failure: keep serving, uncompiled)
        pipe.flux.transformer = eager
        print(f"x2i: warning: torch.compile failed ({type(e).__name__}); serving uncompiled", file=sys.stderr)


def run_chat(args) -> None:
    from x2i.session import Session

    if args.steps < 1 or args.answer_tokens < 0:
        raise X2IError("--steps must be at least 1 and --answer-tokens at least 0")
    device, dtype = resolve_device_dtype(args.device, args.dtype)
    pipe = load_pipeline(args, device, dtype, height=args.height, width=args.width)
    session = Session(pipe, answer_tokens=args.answer_tokens, keep_history=not args.no_history, condition_on=args.condition_on, seed=args.seed,
                      num_inference_steps=args.steps, guidance_scale=args.guidance, height=args.height, width=args.width)
    args.out.mkdir(parents=True, exist_ok=True)
    chat_loop(session, args.out, interactive=sys.stdin.isatty())


def chat_loop(session, out: Path, interactive: bool) -> None:
    """Read turns and commands until /quit or the end of input; a bad turn says why in one line and
    the conversation goes on."""
    if interactive:
        import importlib

        importlib.import_module("readline")  # line editing and history for input()

        print("type a request; /image PATH, /audio PATH, /video PATH attach an input; /reset; /quit")
    attached, turn = [], 0
    while True:
        try:
            line = input("x2i> " if interactive else "").strip()
        except EOFError:
            break
        command, _, argument = line.partition(" ")
        try:
            if not line:
                continue
            if command == "/quit":
                break
            if command == "/reset":
                session.reset()
                attached = []
                print("new conversation")
            elif command in ("/image", "/audio", "/video"):
                attached += load_media([(command[1:], argument.strip())])
                print(f"attached {argument.strip()} to the next turn")
            else:
                images = session.send(line, attached)
                attached, turn = [], turn + 1
                path = out / f"turn-{turn}.png"
                images[0].save(path)
                answer = session.history[-1].answer
                print(f"wrote {path}" + (f"  (the MLLM: {answer})" if answer else ""))
        except X2IError as e:
            print(f"x2i: error: {e}", file=sys.stderr)


def run_eval(args) -> None:
    import json

    from x2i.loaders import load_alignnet, load_encoder, load_flux
    from x2i.mini import weights_dir
    from x2i.mini.eval import load_cases, run_student, run_teacher, save_results, summarize
    from x2i.pipeline import X2IPipeline

    cases = load_cases(args.cases)
    device, _ = resolve_device_dtype(args.device, "float32")
    teacher_path = args.teacher or weights_dir("teacher")
    report, results, teacher = {"teacher": None, "student": None, "n": len(cases)}, [], None
    if args.models in ("both", "teacher"):
        teacher = load_flux(teacher_path, text_encoders=True).to(device)
        results += run_teacher(teacher, cases, seed=args.seed, steps=args.steps)
        report["teacher"] = summarize(results)
    if args.models in ("both", "student"):
        alignnet = load_alignnet(args.alignnet or weights_dir("alignnet")).to(device)
        flux = teacher or load_flux(teacher_path).to(device)  # the student denoises with the teacher's FLUX; T5/CLIP go unused
        student = X2IPipeline(load_encoder(args.mllm or weights_dir("mllm"), device=device), alignnet, flux)
        if args.lightcontrol:
            student.load_lightcontrol(args.lightcontrol)
        if args.lora:
            student.load_lora(args.lora, args.lora_scale)
        student_results = run_student(student, cases, seed=args.seed, steps=args.steps, condition_on=args.condition_on,
                                      lightcontrol_scale=args.lightcontrol_scale)
        report["student"] = summarize(student_results)
        results += student_results
    if args.save:
        save_results(results, args.save)
    if args.json:
        print(json.dumps(report))
        return
    print(f"{len(cases)} cases, {args.steps} steps, seed {args.seed}")
    for model in [m for m in ("teacher", "student") if report[m] is not None]:
        print(f"{model}: {report[model]['n']} {'English text2image cases' if model == 'teacher' else 'cases'}")
        print("".join(f"  {name}: {part}\n" for name, part in report[model].items() if name != "n"), end="")


def run_distill(args) -> None:
    from x2i.distill import DistillConfig, distill
    from x2i.options import config_from_args

    start = time.time()
    path = distill(config_from_args(DistillConfig, args))
    print(f"wrote the AlignNet to {path} in {time.time() - start:.0f} s (loss curve: {Path(args.out) / 'loss.png'})")


def run_finetune(args) -> None:
    from x2i.finetune import LightControlConfig, LoraConfig, train_lightcontrol, train_lora
    from x2i.options import config_from_args

    start = time.time()
    if args.trains == "lightcontrol":
        path = train_lightcontrol(config_from_args(LightControlConfig, args))
    else:
        path = train_lora(config_from_args(LoraConfig, args))
    print(f"wrote the {args.trains} to {path} in {time.time() - start:.0f} s (loss curve: {Path(args.out) / 'loss.png'})")


def run_tiny_models(args) -> None:
    from x2i.tiny import build_tiny_models

    paths = build_tiny_models(args.directory, seed=args.seed, reader=args.reader)
    print("built tiny random models (for smoke runs; their images mean nothing):", *(f"--{k} {v}" for k, v in paths.items()))


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv else None).parse_args(argv)
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
    # torchao (when installed, for --quantize) reports on import the GPU kernels it cannot load here.
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.formatwarning = lambda message, *args, **kwargs: f"x2i: warning: {message}\n"


if __name__ == "__main__":
    sys.exit(main())
