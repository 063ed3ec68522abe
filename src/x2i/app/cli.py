"""The `x2i` command line: its commands and their options; `x2i.app.commands` runs them.

    generate, chat, serve     make pictures (the app)
    eval                      score models in the mini world
    distill                   train an AlignNet
    lightcontrol train, lora train    train for faithful edits
    mini ...                  the mini world: cases, data, recipes, diagnostics
    tiny-models               tiny random models for a smoke run
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from x2i.errors import X2IError
from x2i.options import HelpFormatter


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `command` (the first word typed), the options that come from the
    trainers' config classes are built only for that command, so that `x2i --help` and
    `x2i generate` do not import the trainers."""
    from x2i.app.arguments import (
        AppendMedia,
        add_condition_on_option,
        add_device_options,
        add_edit_options,
        add_flux_lora_options,
        add_generation_options,
        add_limit_options,
        add_memory_options,
        add_model_options,
    )
    from x2i.app.commands import (
        run_chat,
        run_eval,
        run_generate,
        run_serve,
        run_tiny_models,
        run_training,
    )
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
        formatter_class=HelpFormatter,
    )
    gen.add_argument("--prompt", default="", help="text in any language the MLLM reads; with inputs, the instruction")
    # One list in the order typed: the MLLM reads the inputs in that order, then the prompt.
    gen.add_argument("--image", action=AppendMedia, dest="media", default=[], metavar="PATH", help="an input image (repeatable)")
    gen.add_argument("--audio", action=AppendMedia, dest="media", metavar="PATH", help="a sound clip: wav, mp3, flac, ogg, m4a, ... (repeatable; readers that hear: Qwen2.5-Omni)")
    gen.add_argument("--video", action=AppendMedia, dest="media", metavar="PATH", help="a video clip: mp4, webm, gif, ... (repeatable; Qwen2.5-VL, Qwen2.5-Omni)")
    gen.add_argument("--video-fps", type=float, default=2.0, metavar="FPS", help="video frames are sampled at this rate")
    gen.add_argument("--max-frames", type=int, default=64, metavar="N", help="at most N frames per clip: a longer clip is cut, with a warning")
    gen.add_argument("--out", default=None, type=Path, help="output image (default x2i.png); with --num-images > 1, a grid (each image is "
                     "also saved as OUT-N); with --requests, a directory")
    gen.add_argument("--requests", type=Path, metavar="FILE.jsonl", help="many requests, one JSON object per line (prompt, image/audio/video, "
                     "seed, height, width, steps, guidance, condition_on, num_images; the options give the rest): resumable, batched, split "
                     "over the processes of accelerate launch; see docs/batch.md")
    gen.add_argument("--layout", choices=("plain", "geneval"), default="plain", help="with --requests: OUT/LINE-K.png, or GenEval's "
                     "folders from its evaluation_metadata.jsonl")
    gen.add_argument("--teacher", action="store_true", help="with --requests: FLUX with its own T5/CLIP (text only), the same noise as X2I")
    add_model_options(gen)
    add_limit_options(gen)
    add_memory_options(gen)
    gen.add_argument("--alignnet-preset", default=None, help="the MLLM an official .bin was trained for (qwen2.5-vl-7b, ...); inferred from its shapes and the MLLM when left out")
    add_generation_options(gen)
    gen.add_argument("--num-images", type=int, default=1, metavar="N", help="images of the request; image k has seed SEED + k")
    gen.add_argument("--batch-size", type=int, default=None, metavar="B", help="denoise at most B images at once (default: as many "
                     "as fit in free memory); an image is the same whatever B")
    gen.add_argument("--pad-to", type=int, default=None, metavar="N", help="left-pad the prompt to N tokens (0: no padding); default: as the AlignNet was trained (512 for the official checkpoints)")
    add_condition_on_option(gen)
    add_edit_options(gen)
    add_flux_lora_options(gen)
    gen.set_defaults(run=run_generate)

    ev = commands.add_parser(
        "eval",
        help="score models in the mini world, GenEval-style, from a JSONL file of cases",
        description="Make an image for every case, read it back with the mini world's judge, and print the "
        "fraction of cases whose every expected attribute holds, per task and per language. The teacher "
        "(FLUX with T5/CLIP) is scored on the English text2image cases; teacher and student get the same noise.",
        formatter_class=HelpFormatter,
    )
    ev.add_argument("cases", type=Path, help="JSONL file of cases (make some with `x2i mini make-cases`)")
    ev.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ev.add_argument("--save", type=Path, metavar="DIR", help="also write every image and a cases.jsonl with the judge's readings")
    ev.add_argument("--teacher", default="mini", help="teacher FLUX directory (mini: the shipped mini FLUX); the student uses the same FLUX")
    ev.add_argument("--mllm", default=None, help="the student's MLLM for every case (default: per case, the first shipped mini reader "
                    "that takes its media: mini for text, images, clips and pages, mini-omni for sound)")
    ev.add_argument("--alignnet", default=None, help="the student's AlignNet (mini: the shipped mini AlignNet; default: each shipped "
                    "reader's own, else mini)")
    ev.add_argument("--models", choices=("both", "teacher", "student"), default="both", help="which models to score")
    ev.add_argument("--seed", type=int, default=0, help="case i uses seed + i for its wording, render and noise")
    ev.add_argument("--steps", type=int, default=None, help="denoising steps (default: the FLUX's own: 20 for mini, 4 for mini-fewstep, 28 else)")
    add_condition_on_option(ev)
    add_edit_options(ev)
    add_flux_lora_options(ev)
    ev.add_argument("--device", default="auto", help="cpu, cuda, ... (auto: cuda when available); the noise is the same on every device")
    ev.set_defaults(run=run_eval)

    dis = commands.add_parser(
        "distill",
        help="train an AlignNet by attention distillation (one CPU, one GPU, or accelerate launch)",
        description="Distill AlignNet: the frozen FLUX conditioned by its T5/CLIP (teacher) and by the frozen MLLM "
        "through AlignNet (student) see the same noise; AlignNet learns to make the student's attention outputs match "
        "the teacher's in every block. English captions only. Defaults: the shipped mini teacher and mini MLLM. "
        "For many GPUs or nodes: accelerate launch -m x2i distill ...",
        formatter_class=HelpFormatter,
    )
    if command in (None, "distill"):
        from x2i.training.distill import DistillConfig

        add_options(dis, DistillConfig)
    dis.set_defaults(run=run_training, trains="distill")

    for name, what, description in (
        ("lightcontrol", "a LightControl branch (the source image's pixels into FLUX, for faithful edits)",
         "Train a LightControl branch on (source image, instruction, target image) triples: the frozen MLLM reads source + "
         "instruction, the frozen AlignNet conditions the frozen FLUX, and only the branch, which reads the SOURCE image, "
         "learns FLUX's velocity toward the target (flow matching, logit-normal timesteps). Defaults: the shipped mini models. "
         "For many GPUs: accelerate launch -m x2i lightcontrol train ..."),
        ("lora", "LoRA adapters on FLUX's attention for image + instruction -> image (diffusers format)",
         "Train LoRA adapters on the FLUX transformer's attention on (source image, instruction, target image) triples, "
         "conditioned as X2IPipeline conditions FLUX (frozen MLLM and AlignNet); optionally with a trained LightControl "
         "attached. Saved as diffusers saves LoRAs (FluxPipeline.load_lora_weights reads it). Defaults: the shipped mini models."),
    ):
        group = commands.add_parser(name, help=f"train {what}").add_subparsers(dest=f"{name}_command", required=True, metavar="STEP")
        trainer = group.add_parser("train", help=f"train {what}", description=description, formatter_class=HelpFormatter)
        if command in (None, name):
            from x2i.training.edit_training import LightControlConfig, LoraConfig

            add_options(trainer, LightControlConfig if name == "lightcontrol" else LoraConfig)
        trainer.set_defaults(run=run_training, trains=name)

    add_mini_commands(commands, with_recipes=command in (None, "mini"))

    srv = commands.add_parser(
        "serve",
        help="a web app (Gradio): generate from text and uploads, and hold conversations",
        description="Start a Gradio app over one X2IPipeline, loaded once: a Generate tab (prompt, uploads of the inputs the "
        "reader takes, seed, steps, size, guidance, number of images, and a gallery of results with the inputs that made them) "
        "and a Conversation tab. Requests queue and run one at a time. Without model flags, the shipped mini models.",
        formatter_class=HelpFormatter,
    )
    add_model_options(srv)
    add_limit_options(srv)
    add_memory_options(srv)
    srv.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 opens the app to the network")
    srv.add_argument("--port", type=int, default=7860, help="the port the app listens on")
    srv.add_argument("--steps", type=int, default=None, help="the app's default denoising steps (default: 28, as FLUX.1-dev takes; "
                     "the mini FLUX 20, the steps its scores are measured at)")
    srv.add_argument("--max-inputs", type=int, default=4, metavar="N", help="at most N uploaded files per request")
    srv.add_argument("--max-upload-mb", type=float, default=50, metavar="MB", help="largest upload accepted")
    srv.add_argument("--compile", action="store_true", help="torch.compile FLUX's transformer at start (a minute or more; each new "
                     "size compiles again): faster requests for a long-running server")
    add_condition_on_option(srv)
    add_edit_options(srv)
    add_flux_lora_options(srv)
    add_device_options(srv)
    srv.set_defaults(run=run_serve)

    chat = commands.add_parser(
        "chat",
        help="a conversation in the terminal: each turn edits the last picture, reading the earlier turns",
        description="Type a request per line; each turn's first picture is written as OUT/turn-N.png. From the second "
        "turn on, the last picture is the new turn's input and the MLLM reads the earlier turns and its answers to them "
        "(\"now make it blue\"). Commands: /image PATH, /audio PATH, /video PATH attach an input to the next turn; "
        "/reset starts over; /quit ends. When standard input is not a terminal, one turn per line (for scripts).",
        formatter_class=HelpFormatter,
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
    tiny.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    tiny.add_argument("--reader", default="qwen2_5_vl", choices=("qwen2_5_vl", "internvl", "qwen2_5_omni"), help="the MLLM family")
    tiny.set_defaults(run=run_tiny_models)
    return parser


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
