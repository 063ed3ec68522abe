"""Distillation recipes for the mini AlignNet, side by side: distill each variant (one process
each, so several share a GPU), then score every checkpoint on a dev set and the last one on a
held-out set, with the world's judge. A run cut short still reports what it has.

    python benchmarks/student_sweep.py run --out runs/sweep --variants image words words-mixed \\
        --steps 4000 --deadline 300 --dev-seed 4242 --final-seed 9157

Writes OUT/results.jsonl (one line per evaluated checkpoint and case set) and OUT/VARIANT/ (the
distillation run: log.jsonl, checkpoints/). The dev set picks; the held-out set is only reported.
`plot --out score.png --results A/results.jsonl B/results.jsonl` draws dev score against steps.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

COMMON = ["--pad-to", "128", "--batch", "32", "--lr", "1e-3", "--warmup", "100", "--no-gradient-checkpointing", "--keep-checkpoints", "0"]
MIXED = ["--timesteps", "mixed", "--sampling-steps", "20"]
VARIANTS = {
    "image": ["--terms", "image"],  # the shipped recipe: image tokens only, t = 1.0
    "padded": ["--terms", "padded"],  # the release's pairing: T5 and the MLLM both padded to 128
    "words": ["--terms", "words"],
    "words-mixed": ["--terms", "words", *MIXED],
    "words-refiner": ["--terms", "words", "--refiner-layers", "2"],
    "words-mixed-refiner": ["--terms", "words", *MIXED, "--refiner-layers", "2"],
    "words-logit-normal": ["--terms", "words", "--timesteps", "logit-normal"],
    "image-mixed": ["--terms", "image", *MIXED],
    "image-refiner": ["--terms", "image", "--refiner-layers", "2"],
}


def case_sets(out: Path, dev_seed: int, final_seed: int, dev_n: int, final_n: int) -> dict[str, list[dict]]:
    from x2i.mini.eval import make_cases

    sets = {
        "dev": make_cases(dev_n, seed=dev_seed),
        "final": make_cases(final_n, seed=final_seed),
        "final-en-1obj": make_cases(final_n, ("text2image",), ("en",), seed=final_seed + 1, num_objects=1),
        "final-en-2obj": make_cases(final_n, ("text2image",), ("en",), seed=final_seed + 2, num_objects=2),
    }
    for name, cases in sets.items():
        (out / f"cases-{name}.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    return sets


def evaluate(out: Path, variant: str, device: str, final_sets: list[str], every: int) -> None:
    """Score every checkpoint of `variant` on the dev set, the last one on the held-out sets too."""
    import torch

    from x2i.inference.loaders import load_alignnet, load_encoder, load_flux
    from x2i.inference.locations import locate
    from x2i.inference.pipeline import X2IPipeline
    from x2i.mini.eval import load_cases, run_student, run_teacher, summarize

    flux = load_flux(locate("mini", "flux"), text_encoders=True).to(device)
    encoder = load_encoder(locate("mini", "mllm"), device=device)
    with open(out / "results.jsonl", "a") as results:
        if variant == "teacher":
            for name in ("final-en-1obj", "final-en-2obj"):
                cases = load_cases(out / f"cases-{name}.jsonl")
                for length in (32, 128):  # T5 as trained, and padded as the all-terms recipes read it
                    flux.tokenizer_2.model_max_length = length
                    score = summarize(run_teacher(flux, cases, seed=0, steps=20, progress=False))
                    results.write(json.dumps({"variant": f"teacher-t5-{length}", "set": name, "score": score}) + "\n")
                    results.flush()
            return
        checkpoints = sorted((out / variant / "checkpoints").glob("step-*"))
        checkpoints = [c for c in checkpoints if int(c.name.split("-")[1]) % every == 0 or c == checkpoints[-1]]
        for i, checkpoint in enumerate(checkpoints):
            alignnet = load_alignnet(checkpoint / "alignnet").to(device)
            pipe = X2IPipeline(encoder, alignnet, flux)
            last = i == len(checkpoints) - 1
            for name in ["dev", *(final_sets if last else [])]:
                start = time.time()
                score = summarize(run_student(pipe, load_cases(out / f"cases-{name}.jsonl"), seed=0, steps=20, progress=False))
                step = int(checkpoint.name.split("-")[1])
                results.write(json.dumps({"variant": variant, "step": step, "set": name, "score": score, "seconds": round(time.time() - start, 1)}) + "\n")
                results.flush()
            torch.cuda.empty_cache() if device == "cuda" else None


def run(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prompts = out / "prompts.txt"
    subprocess.run([sys.executable, "-m", "x2i.app.cli", "mini", "make-prompts", "--out", str(prompts), "--n", "20000"], check=True, stdout=subprocess.DEVNULL)
    case_sets(out, args.dev_seed, args.final_seed, args.dev_n, args.final_n)
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    start = time.time()
    runs = {}
    for variant in args.variants:
        log = open(out / f"{variant}.log", "w")
        command = [sys.executable, "-m", "x2i.app.cli", "distill", "--prompts", str(prompts), "--out", str(out / variant),
                   "--steps", str(args.steps), "--checkpoint-every", str(args.checkpoint_every), *COMMON, *VARIANTS[variant]]
        runs[variant] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    teacher = subprocess.Popen([sys.executable, __file__, "evaluate", "--out", str(out), "--variant", "teacher", "--device", args.device,
                                "--eval-every", str(args.eval_every)], env=env)
    while time.time() - start < args.deadline and any(r.poll() is None for r in runs.values()):
        time.sleep(2)
    for variant, r in runs.items():
        if r.poll() is None:
            r.send_signal(signal.SIGTERM)
            print(f"{variant}: stopped at the deadline", flush=True)
        r.wait()
    print(f"distillation: {time.time() - start:.0f} s", flush=True)
    evals = [subprocess.Popen([sys.executable, __file__, "evaluate", "--out", str(out), "--variant", v, "--device", args.device,
                               "--eval-every", str(args.eval_every)], env=env)
             for v in args.variants]
    for e in [*evals, teacher]:
        e.wait()
    print(f"total: {time.time() - start:.0f} s", flush=True)


def plot(results: list[Path], image: Path) -> None:
    """Dev-set text2image score against distillation steps, one line per variant (several sweeps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for n, path in enumerate(results, start=1):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for variant in sorted({r["variant"] for r in rows if "step" in r}):
            points = sorted((r["step"], r["score"]["by_task"]["text2image"]) for r in rows if r["variant"] == variant and r["set"] == "dev")
            ax.plot(*zip(*points), marker="o", label=f"{variant} (sweep {n})")
    ax.set_xlabel("distillation step (batch 32)")
    ax.set_ylabel("dev text2image score (5 languages)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(image, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("run", "evaluate", "plot"))
    parser.add_argument("--out", required=True, help="the sweep directory; with plot, the PNG to write")
    parser.add_argument("--results", nargs="*", default=[], help="with plot: results.jsonl files of sweeps")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--variant", help="with evaluate: one variant, or 'teacher'")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--eval-every", type=int, default=1000, help="score the checkpoints at multiples of this on the dev set (and the last one)")
    parser.add_argument("--deadline", type=float, default=300, help="seconds of distillation before the runs are stopped")
    parser.add_argument("--dev-seed", type=int, default=4242)
    parser.add_argument("--final-seed", type=int, default=9157)
    parser.add_argument("--dev-n", type=int, default=40, help="dev cases per task and language")
    parser.add_argument("--final-n", type=int, default=150, help="held-out cases per task and language (and per object count, English)")
    parser.add_argument("--final-sets", nargs="*", default=["final", "final-en-1obj", "final-en-2obj"])
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    if args.action == "run":
        run(args)
    elif args.action == "plot":
        plot([Path(r) for r in args.results], Path(args.out))
    else:
        evaluate(Path(args.out), args.variant, args.device, args.final_sets, args.eval_every)


if __name__ == "__main__":
    main()
