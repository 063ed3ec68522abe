"""Hearing, watching and reading, end to end: audio2image, video2image and document2image on fresh
cases, by language and object count, on each road, with the MLLM's exact-match answers beside them.

Each case is read by the first shipped reader that takes it (`x2i eval`'s rule: the mini Qwen2.5-VL
for clips and documents, the mini Qwen2.5-Omni for sound) with the mini AlignNet, and drawn by the mini
FLUX. The cases and their files are made with `--seed` (never one tuned on) in `--out`.

    python benchmarks/senses.py --n 50 --seed 40411 --out runs/senses --roads auto prompt --json senses.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

from x2i.inference.loaders import load_alignnet, load_encoder, load_flux
from x2i.inference.locations import alignnet_for
from x2i.inference.pipeline import X2IPipeline
from x2i.mini.eval import load_cases, make_cases, readers, run_student
from x2i.mini.answers import answer_accuracy
from x2i.mini.world import MEDIA_TASKS


def scores(results) -> dict[str, float]:
    """Per task and language, and per task, language and object count."""
    lines = defaultdict(list)
    for r in results:
        case = r["case"]
        line = f"{case['task']} {case['lang']}" if MEDIA_TASKS[case["task"]]["text"] else case["task"]
        lines[line].append(r["correct"])
        lines[f"{line}, {len(case['expect']['objects'])} obj"].append(r["correct"])
    return {line: round(sum(v) / len(v), 3) for line, v in lines.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50, help="cases per task and language")
    parser.add_argument("--seed", type=int, required=True, help="a fresh seed for every reported score")
    parser.add_argument("--out", type=Path, required=True, help="where the cases and their files go")
    parser.add_argument("--tasks", nargs="+", default=list(MEDIA_TASKS), choices=list(MEDIA_TASKS))
    parser.add_argument("--roads", nargs="+", default=["auto", "prompt"])
    parser.add_argument("--answers", type=int, default=200, help="requests per line for the MLLM's answers (0: skip)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    start = time.time()
    cases_file = args.out / "cases.jsonl"
    args.out.mkdir(parents=True, exist_ok=True)
    made = make_cases(args.n, args.tasks, seed=args.seed, media=args.out / "cases-media")
    cases_file.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in made))
    cases = load_cases(cases_file)
    report = {"n": args.n, "seed": args.seed, "steps": args.steps, "seconds": {"cases": round(time.time() - start)}, "answers": {}}
    flux = load_flux("mini")
    for reader, indices in readers(cases, None).items():
        pipe = X2IPipeline(load_encoder(reader), load_alignnet(alignnet_for(reader)), flux)
        for road in args.roads:
            start = time.time()
            report.setdefault(road, {}).update(scores(run_student(pipe, cases, args.seed, args.steps, condition_on=road, chosen=indices)))
            report["seconds"][f"{reader} {road}"] = round(time.time() - start)
        if args.answers:
            tasks = tuple(dict.fromkeys(cases[i]["task"] for i in indices))
            report["answers"].update(answer_accuracy(pipe.encoder, args.answers, args.seed + 1, tasks=tasks))
    print("| line | " + " | ".join(args.roads) + " | MLLM answers |\n|" + "---|" * (len(args.roads) + 2))
    for line in sorted(report[args.roads[0]]):
        print(f"| {line} | " + " | ".join(str(report[road].get(line, "")) for road in args.roads) + f" | {report['answers'].get(line, '')} |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
