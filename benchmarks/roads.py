"""Every task and language on every road, with the MLLM's exact-match answers and the teacher beside them.

On fresh cases (`--seed`, never one tuned on): the student (shipped or given MLLM + AlignNet, the
mini FLUX) reads each case by each road of `--roads`; `auto` is the pipeline's default. Beside each
line: the MLLM's exact-match answer accuracy on `--answers` fresh requests of that line, and the
teacher (FLUX with T5/CLIP) on the English text2image cases. Prints a Markdown table and, with
`--json`, writes every number.

    python benchmarks/roads.py --n 100 --seed 31337 --roads auto prompt answer prompt+answer --json roads.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

from x2i.inference.loaders import load_alignnet, load_encoder, load_flux
from x2i.inference.locations import alignnet_for
from x2i.inference.pipeline import X2IPipeline
from x2i.mini.eval import make_cases, run_student, run_teacher
from x2i.mini.answers import answer_accuracy
from x2i.mini.transfer import line_of


def scores(results) -> dict[str, float]:
    """Per line (task and language), and English text2image by object count."""
    by_line = defaultdict(list)
    for r in results:
        case = r["case"]
        by_line[line_of(case)].append(r["correct"])
        if case["task"] == "text2image" and case["lang"] == "en":
            by_line[f"text2image en, {len(case['expect']['objects'])} obj"].append(r["correct"])
    return {line: round(sum(v) / len(v), 3) for line, v in by_line.items()}


def roads_taken(results) -> dict[str, list[str]]:
    taken = defaultdict(set)
    for r in results:
        taken[line_of(r["case"])].add(r["road"])
    return {line: sorted(roads) for line, roads in taken.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="cases per task and language")
    parser.add_argument("--seed", type=int, required=True, help="a fresh seed for every reported score")
    parser.add_argument("--roads", nargs="+", default=["auto", "prompt", "answer", "prompt+answer"])
    parser.add_argument("--answers", type=int, default=200, help="requests per line for the MLLM's answer accuracy (0: skip)")
    parser.add_argument("--mllm", default="mini")
    parser.add_argument("--alignnet", default=None, help="default: the one shipped with --mllm (mini, mini-omni)")
    parser.add_argument("--lightcontrol", default=None, help="a LightControl branch for the cases with an input image")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    teacher = load_flux("mini", text_encoders=True)
    pipe = X2IPipeline(load_encoder(args.mllm), load_alignnet(args.alignnet or alignnet_for(args.mllm)), teacher)
    if args.lightcontrol:
        pipe.load_lightcontrol(args.lightcontrol)
    cases = make_cases(args.n, seed=args.seed)
    report = {"n": args.n, "seed": args.seed, "steps": args.steps, "seconds": {}}
    start = time.time()
    report["teacher"] = scores(run_teacher(teacher, cases, args.seed, args.steps))
    report["seconds"]["teacher"] = round(time.time() - start)
    for road in args.roads:
        start = time.time()
        results = run_student(pipe, cases, args.seed, args.steps, condition_on=road)
        report[road] = scores(results)
        report["taken by " + road] = roads_taken(results)
        report["seconds"][road] = round(time.time() - start)
    if args.answers:
        report["answers"] = answer_accuracy(pipe.encoder, args.answers, args.seed + 1)
    lines = list(report[args.roads[0]])
    header = "| line | " + " | ".join(args.roads) + " | MLLM answers | teacher |"
    print(header + "\n|" + "---|" * (len(args.roads) + 3))
    for line in sorted(lines):
        answers = report.get("answers", {}).get(line, "")
        print(f"| {line} | " + " | ".join(f"{report[r].get(line, '')}" for r in args.roads)
              + f" | {answers} | {report['teacher'].get(line, '')} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
