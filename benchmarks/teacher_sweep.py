"""Recipe sweep for the mini teacher's stage 2: train variants from the shipped VAE and score each
on fresh English text2image cases (one and two objects), at snapshots along the way.

    python benchmarks/teacher_sweep.py train --variant shipped --out runs/sweep --device cuda
    python benchmarks/teacher_sweep.py evaluate --variant shipped --out runs/sweep --device cuda

One variant per process, so several can share a GPU; `evaluate` scores whatever snapshots exist,
so a run cut short still reports. Appends one JSON line per (snapshot, cfg) to OUT/results.jsonl.
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

from diffusers import AutoencoderKL, FluxPipeline

from x2i.inference.locations import locate
from x2i.mini.eval import make_cases, run_teacher, summarize
from x2i.mini.teacher import TeacherConfig, train_teacher

# The recipe before the T5 binding probe; the sweep of BENCHMARKS.md varied one thing from it.
BEFORE = {"lr": 5e-4, "steps": 5000, "binding_weight": 0.0}
VARIANTS = {
    "shipped": {},
    "before": BEFORE,
    "long": {**BEFORE, "steps": 12000},
    "cfg": {**BEFORE, "caption_dropout": 0.1},
    "wide": {**BEFORE, "heads": 8},
    "text": {**BEFORE, "t5_layers": 4, "t5_width": 128},
    "double": {**BEFORE, "double_layers": 4, "single_layers": 2},
    "two": {**BEFORE, "two_objects": 0.8},
    "lr": {**BEFORE, "lr": 1e-3},
}


def train(variant: str, out: Path, device: str, snapshots: list[int], overrides: dict) -> None:
    config = dataclasses.replace(TeacherConfig(), **overrides)
    vae = AutoencoderKL.from_pretrained(locate("mini", "flux") / "vae")
    start = time.time()
    snapshots = tuple(s for s in snapshots if s < config.steps)
    train_teacher(config, out / variant, progress=False, vae=vae, device=device, snapshots=snapshots)
    (out / variant / "train.json").write_text(json.dumps({"seconds": round(time.time() - start), "config": dataclasses.asdict(config)}))


def evaluate(variant: str, out: Path, device: str, n: int, scales: list[float], overrides: dict) -> None:
    """Scores every pipeline saved so far (snapshots, and the final one if training finished)."""
    cases = make_cases(n, ("text2image",), ("en",), seed=101, num_objects=1)
    cases += make_cases(n, ("text2image",), ("en",), seed=102, num_objects=2)
    run_dir = out / variant
    found = sorted((int(p.parent.name[5:]), p.parent) for p in run_dir.glob("step-*/model_index.json"))
    if (run_dir / "model_index.json").is_file():
        found.append(("final", run_dir))
    if overrides.get("caption_dropout", 0) == 0:
        scales = [1.0]
    for step, directory in found:
        teacher = FluxPipeline.from_pretrained(directory).to(device)
        for cfg in scales:
            score = summarize(run_teacher(teacher, cases, seed=0, steps=20, batch=100, progress=False, cfg=cfg))
            row = {"variant": variant, "overrides": overrides, "step": step, "cfg": cfg, "by_objects": score["by_objects"]}
            print(json.dumps(row), flush=True)
            with open(out / "results.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=("train", "evaluate"))
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=200, help="cases per object count")
    parser.add_argument("--snapshots", type=int, nargs="*", default=[2500, 4000, 8000])
    parser.add_argument("--cfg", type=float, nargs="*", default=[1.0, 3.0, 5.0], help="scales tried where captions were dropped")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="further TeacherConfig overrides")
    args = parser.parse_args()

    overrides = dict(VARIANTS[args.variant])
    for item in args.set:
        key, value = item.split("=")
        overrides[key] = type(getattr(TeacherConfig, key))(value)
    if args.phase == "train":
        train(args.variant, args.out, args.device, args.snapshots, overrides)
    else:
        evaluate(args.variant, args.out, args.device, args.n, args.cfg, overrides)


if __name__ == "__main__":
    main()
