"""What each `x2i mini ...` step does, given its parsed options (`x2i.mini.cli`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from x2i.errors import X2IError
from x2i.media.files import atomic_directory, write_lines


def run_make_cases(args) -> None:
    from x2i.mini.eval import make_cases
    from x2i.mini.world import ALL_TASKS, LANGUAGES, TASKS

    tasks, langs = args.tasks or tuple(TASKS), args.langs or LANGUAGES
    unknown = [t for t in tasks if t not in ALL_TASKS] + [lang for lang in langs if lang not in LANGUAGES]
    if unknown:
        raise X2IError(f"unknown task or language {unknown}; tasks: {', '.join(ALL_TASKS)}; languages: {', '.join(LANGUAGES)}")
    if args.n < 1:
        raise X2IError("--n must be at least 1")
    if args.out.is_dir():
        raise X2IError(f"cannot write {args.out}: it is a directory; name a file")
    media = args.out.with_name(args.out.stem + "-media")
    cases = make_cases(args.n, tasks, langs, seed=args.seed, num_objects=args.objects, media=media)
    write_lines(args.out, [json.dumps(c) for c in cases])
    print(f"wrote {len(cases)} cases to {args.out}")


def run_make_prompts(args) -> None:
    from x2i.mini.teacher import english_corpus

    if args.n < 1:
        raise X2IError("--n must be at least 1")
    write_lines(args.out, english_corpus(args.n, args.seed))
    print(f"wrote {args.n} English captions to {args.out}")


def run_make_triples(args) -> None:
    import random

    from tqdm.auto import tqdm

    from x2i.mini.language import instruction
    from x2i.mini.world import apply_edit, random_edit, random_scene, render

    if args.n < 1 or not 0 <= args.identity <= 1:
        raise X2IError("--n must be at least 1 and --identity between 0 and 1")
    if args.out.exists() and not args.out.is_dir():
        raise X2IError(f"--out {args.out} is a file; triples are written into a directory")
    rng = random.Random(args.seed)
    images = args.out / "images"
    images.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in tqdm(range(args.n), desc="triples"):
        scene = random_scene(rng)
        if rng.random() < args.identity:
            text, result = "", scene
        else:
            op = random_edit(scene, rng)
            text, result = instruction(scene, op, "en", rng), apply_edit(scene, op)
        look = rng.getrandbits(32)  # one background and one jitter for both: the target differs only by the edit
        render(scene, random.Random(look)).save(images / f"{i:06d}-source.png")
        render(result, random.Random(look)).save(images / f"{i:06d}-target.png")
        lines.append({"source": f"images/{i:06d}-source.png", "instruction": text, "target": f"images/{i:06d}-target.png"})
    write_lines(args.out / "triples.jsonl", [json.dumps(line) for line in lines])
    print(f"wrote {args.n} triples to {args.out / 'triples.jsonl'}")


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
    from x2i.mini.teacher import TeacherConfig, train_teacher
    from x2i.options import config_from_args

    start = time.time()
    path = train_teacher(config_from_args(TeacherConfig, args), args.out, snapshots=tuple(args.snapshots))
    print(f"wrote the mini teacher to {path} in {time.time() - start:.0f} s")


def run_train_derivative(args) -> None:
    from x2i.mini import derivatives
    from x2i.options import config_from_args

    if args.out.exists() and not args.out.is_dir():
        raise X2IError(f"--out {args.out} is a file; a derivative is written into a directory")
    kind, train = {"fewstep": (derivatives.FewStepConfig, derivatives.train_fewstep),
                   "style": (derivatives.StyleConfig, derivatives.train_style)}[args.kind]
    config = config_from_args(kind, args)
    counts = [name for name, value in vars(config).items() if isinstance(value, int) and name != "seed"]
    if min(getattr(config, name) for name in counts) < 1 or not config.lr > 0:
        raise X2IError(f"{', '.join('--' + n.replace('_', '-') for n in counts)} must be at least 1 and --lr positive")
    start = time.time()
    path = train(config, args.out)
    print(f"wrote the mini {args.kind} LoRA to {path} in {time.time() - start:.0f} s")


def run_train_mllm(args) -> None:
    from x2i.mini.mllm import MLLMConfig, train_mllm
    from x2i.mini.omni import OmniConfig, train_omni
    from x2i.options import config_from_args

    start, out = time.time(), Path(args.out)
    with atomic_directory(out) as tmp:  # a run stopped part-way leaves no half-made model (and an older one in --out stays whole)
        if args.reader == "qwen2_5_omni":
            train_omni(config_from_args(OmniConfig, args), tmp)
        else:
            train_mllm(config_from_args(MLLMConfig, args), tmp)
    print(f"wrote the mini {'Qwen2.5-Omni' if args.reader == 'qwen2_5_omni' else 'MLLM'} to {out} in {time.time() - start:.0f} s")


def run_readout(args) -> None:
    from x2i.inference.loaders import load_encoder
    from x2i.mini.readout import readout

    report = readout(load_encoder(args.mllm), args.n, args.seed)
    if args.json:
        print(json.dumps(report))
        return
    layers = len(report["image"]["color"])
    print("share of objects whose states read out as their English color / shape (chance 0.17 / 0.33)")
    print(f"{'line':<8}" + "".join(f"{'layer ' + str(i):>14}" for i in range(layers)))
    for line, scores in report.items():
        print(f"{line:<8}" + "".join(f"{c:>8.2f} / {s:.2f}" for c, s in zip(scores["color"], scores["shape"])))


def run_transfer(args) -> None:
    from x2i.inference.loaders import load_alignnet, load_encoder, load_flux
    from x2i.inference.pipeline import X2IPipeline
    from x2i.mini.eval import make_cases
    from x2i.mini.transfer import KINDS, transfer

    if args.n < 1 or args.steps < 1:
        raise X2IError("--n and --steps must be at least 1")
    teacher = load_flux("mini", text_encoders=True)
    pipe = X2IPipeline(load_encoder(args.mllm), load_alignnet(args.alignnet), teacher)
    report = transfer(pipe, teacher, make_cases(args.n, seed=args.seed), args.seed, args.steps, args.condition_on)
    if args.json:
        print(json.dumps(report))
        return
    print(f"{'line':<22}" + "".join(f"{k:>14}" for k in KINDS) + f"{'score':>8}{'n':>6}")
    for line, row in report["lines"].items():
        print(f"{line:<22}" + "".join(f"{row[k]:>14.4f}" for k in KINDS) + f"{row['score']:>8.3f}{row['n']:>6}")
    print(f"rank correlation of distance and score over the lines: {report['spearman']:+.3f} (negative: closer, better)")


def run_answers(args) -> None:
    from x2i.inference.loaders import load_encoder
    from x2i.mini.examples import TRAINING_MIX
    from x2i.mini.answers import answer_accuracy
    from x2i.mini.world import MEDIA_TASKS

    if args.n < 1:
        raise X2IError("--n must be at least 1")
    unknown = [t for t in args.tasks or () if t not in (*TRAINING_MIX, *MEDIA_TASKS)]
    if unknown:
        raise X2IError(f"unknown task {unknown}; tasks: {', '.join((*TRAINING_MIX, *MEDIA_TASKS))}")
    report = answer_accuracy(load_encoder(args.mllm), args.n, args.seed, tasks=args.tasks)
    if args.json:
        print(json.dumps(report))
        return
    print(f"exact-match answers, {args.n} fresh requests per line (seed {args.seed})")
    for line, score in report.items():
        print(f"  {line:<20} {score:.3f}")
