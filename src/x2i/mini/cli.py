"""`x2i mini ...`: make cases and prompts, check the judge, rebuild the mini models (the options;
what each step does is in `x2i.mini.commands`)."""

from __future__ import annotations

from pathlib import Path

from x2i.inference.request import CONDITION_ON
from x2i.mini.commands import (
    run_answers,
    run_check_judge,
    run_make_cases,
    run_make_prompts,
    run_make_triples,
    run_readout,
    run_train_derivative,
    run_train_mllm,
    run_train_teacher,
    run_transfer,
)
from x2i.options import HelpFormatter


def add_mini_commands(commands, with_recipes: bool = True) -> None:
    """`x2i mini ...`; the recipes' options (from their configs) only `with_recipes`."""
    from x2i.options import add_options

    mini = commands.add_parser("mini", help="the built-in mini world: make cases, check the judge, rebuild the mini models")
    steps = mini.add_subparsers(dest="mini_command", required=True, metavar="STEP")

    cases = steps.add_parser("make-cases", help="write fresh eval cases as JSONL", formatter_class=HelpFormatter)
    cases.add_argument("--out", type=Path, required=True, help="the case file (JSONL) to write")
    cases.add_argument("--n", type=int, default=50, help="cases per task and language")
    cases.add_argument("--tasks", nargs="+", default=None, help="default: the four tasks of images and text; also audio2image, video2image, "
                       "document2image, whose files go to OUT's name + -media/ beside it")
    cases.add_argument("--langs", nargs="+", default=None, help="default: en zh fr de es")
    cases.add_argument("--objects", type=int, choices=(1, 2), default=None, help="objects per scene (default: 1 or 2)")
    cases.add_argument("--seed", type=int, default=1, help="seed of the scenes, their wording and media: a fresh one for every reported score")
    cases.set_defaults(run=run_make_cases)

    triples = steps.add_parser("make-triples", formatter_class=HelpFormatter,
                               help="write edit triples (source, English instruction, target) for x2i lightcontrol/lora train")
    triples.add_argument("--out", type=Path, required=True, help="directory: triples.jsonl and images/")
    triples.add_argument("--n", type=int, default=20000, help="triples to write")
    triples.add_argument("--identity", type=float, default=0.1, metavar="P",
                         help="share of triples with no instruction whose target is the source (image -> the same image)")
    triples.add_argument("--seed", type=int, default=11, help="seed of the scenes, edits and renders")
    triples.set_defaults(run=run_make_triples)

    judge = steps.add_parser("judge", help="the judge's accuracy and confusion per attribute on fresh renders", formatter_class=HelpFormatter)
    judge.add_argument("--n", type=int, default=1000, help="fresh renders to read back")
    judge.add_argument("--seed", type=int, default=12345, help="seed of the scenes and renders")
    judge.set_defaults(run=run_check_judge)

    prompts = steps.add_parser("make-prompts", help="write English captions of random scenes, for x2i distill", formatter_class=HelpFormatter)
    prompts.add_argument("--out", type=Path, required=True, help="the text file to write, one caption a line")
    prompts.add_argument("--n", type=int, default=50000, help="captions to write")
    prompts.add_argument("--seed", type=int, default=7, help="seed of the scenes and their wording")
    prompts.set_defaults(run=run_make_prompts)

    teacher = steps.add_parser("train-teacher", help="rebuild the mini FLUX teacher (VAE, transformer, T5, CLIP)", formatter_class=HelpFormatter)
    teacher.add_argument("--out", type=Path, required=True, help="directory of the FLUX pipeline to write")
    if with_recipes:
        from x2i.mini.teacher import TeacherConfig

        add_options(teacher, TeacherConfig)
    teacher.add_argument("--snapshots", type=int, nargs="*", default=[], metavar="STEP", help="also save the pipeline after these steps, to OUT/step-N")
    teacher.set_defaults(run=run_train_teacher)

    readout = steps.add_parser(
        "readout", formatter_class=HelpFormatter,
        help="how well an MLLM's states, layer by layer, read out as the scene's English words through its LM head",
    )
    readout.add_argument("--mllm", default="mini", help="an MLLM directory (mini: the shipped mini MLLM)")
    readout.add_argument("--n", type=int, default=200, help="scenes per line (images; captions and pages in each language)")
    readout.add_argument("--seed", type=int, default=2025, help="seed of the scenes and their wording")
    readout.add_argument("--json", action="store_true", help="print the report as JSON")
    readout.set_defaults(run=run_readout)

    answers = steps.add_parser("answers", formatter_class=HelpFormatter,
                               help="the MLLM's exact-match answers on fresh requests, per task and language")
    answers.add_argument("--mllm", default="mini", help="an MLLM directory (mini: the shipped mini MLLM)")
    answers.add_argument("--n", type=int, default=200, help="requests per line")
    answers.add_argument("--seed", type=int, default=777, help="seed of the requests: a fresh one for every reported score")
    answers.add_argument("--tasks", nargs="+", default=None, help="default: every task the MLLM takes")
    answers.add_argument("--json", action="store_true", help="print the report as JSON")
    answers.set_defaults(run=run_answers)

    transfer = steps.add_parser(
        "transfer", formatter_class=HelpFormatter,
        help="per task and language: the attention-distillation distance between the teacher (the target's English caption) "
        "and the student (the request), beside the judged score of the student's pictures; a diagnostic, never a training signal",
    )
    transfer.add_argument("--n", type=int, default=40, help="fresh cases per task and language")
    transfer.add_argument("--seed", type=int, default=3, help="seed of the cases, their wording, renders and noise")
    transfer.add_argument("--steps", type=int, default=20, help="denoising steps of the judged pictures")
    transfer.add_argument("--mllm", default="mini", help="mini: the shipped mini MLLM")
    transfer.add_argument("--alignnet", default="mini", help="mini: the shipped mini AlignNet")
    transfer.add_argument("--condition-on", default=None, choices=CONDITION_ON,
                          help="the road the student reads (default: the pipeline's, auto)")
    transfer.add_argument("--json", action="store_true", help="print the report as JSON")
    transfer.set_defaults(run=run_transfer)

    derivative = steps.add_parser("train-derivative", help="rebuild a FLUX derivative of the mini teacher, made from T5/CLIP alone")
    kinds = derivative.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind, config, about in (("fewstep", "FewStepConfig", "mini-fewstep: a 4-step model by reflow, shipped as a LoRA fused into the teacher"),
                                ("style", "StyleConfig", "mini-style: a style LoRA (shapes drawn squat), loaded with --flux-lora mini-style")):
        parser = kinds.add_parser(kind, help=about, description=about, formatter_class=HelpFormatter)
        parser.add_argument("--out", type=Path, required=True, help="directory to write")
        if with_recipes:
            from x2i.mini import derivatives

            add_options(parser, getattr(derivatives, config))
        parser.set_defaults(run=run_train_derivative)

    mllm = steps.add_parser("train-mllm", help="rebuild the mini Qwen2.5-VL, or the mini Qwen2.5-Omni (its ears)", formatter_class=HelpFormatter)
    mllm.add_argument("--out", type=Path, required=True, help="directory of the model to write (moved into place whole at the end)")
    mllm.add_argument("--reader", choices=("qwen2_5_vl", "qwen2_5_omni"), default="qwen2_5_vl",
                      help="qwen2_5_vl: the mini Qwen2.5-VL, from scratch; qwen2_5_omni: the mini Qwen2.5-Omni, a new audio encoder "
                      "on the mini Qwen2.5-VL (its options: --vision-language, --hear-*, --listen-*, --spoken-languages, --audio-*)")
    if with_recipes:
        from x2i.mini.mllm import MLLMConfig
        from x2i.mini.omni import OmniConfig

        add_options(mllm, MLLMConfig)
        add_options(mllm, OmniConfig, skip=("seed",))
    mllm.set_defaults(run=run_train_mllm)
