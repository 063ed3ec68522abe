"""One AlignNet, FLUX's derivatives: the shipped mini AlignNet (distilled on the plain mini teacher,
never on a derivative) beside each FLUX's own T5/CLIP teacher, on the same fresh cases and noise.

    python benchmarks/transfer.py --n 30 --seed 80808 [--tables fewstep style]

fewstep: for the mini FLUX at 4 and 20 steps and mini-fewstep at its 4, the teacher on English
text2image (one and two objects), X2I on every task and language.
style: the community style LoRA `mini-style` on the mini FLUX at 20 steps, teacher and X2I alike,
without and with it: the scene (judged as always) on `--english` English cases per object count, and
the style (`judge.squat`) there and on every task and language.
Then X2I per task and language in every setting run. Prints Markdown tables."""

from __future__ import annotations

import argparse

from x2i.inference.loaders import load_alignnet, load_encoder, load_flux
from x2i.inference.lora import load_flux_loras
from x2i.inference.pipeline import X2IPipeline
from x2i.mini.eval import make_cases, run_student, run_teacher
from x2i.mini.judge import squat
from x2i.mini.transfer import line_of


def share(results, objects=None, task=None) -> float:
    chosen = [r for r in results if (task is None or r["case"]["task"] == task)
              and (objects is None or (r["case"]["lang"] == "en" and r["case"]["task"] == "text2image"
                                       and len(r["case"]["expect"]["objects"]) == objects))]
    return sum(r["correct"] for r in chosen) / max(len(chosen), 1)


def squat_share(results) -> float:
    return sum(squat(r["image"]) for r in results) / max(len(results), 1)


def fewstep_table(cases, encoder, alignnet) -> dict:
    """Prints the table; returns X2I's results on `cases` for each FLUX and steps."""
    everywhere = {}
    print("| FLUX, steps | teacher en 1 / 2 obj | X2I en 1 / 2 obj | X2I / teacher | X2I all | image2image | edits | two images |")
    print("|---|---|---|---|---|---|---|---|")
    for flux_name, steps in (("mini", 20), ("mini", 4), ("mini-fewstep", 4)):
        flux = load_flux(flux_name, text_encoders=True)
        teacher = run_teacher(flux, cases, seed=0, steps=steps, progress=False)
        student = run_student(X2IPipeline(encoder, alignnet, flux), cases, seed=0, steps=steps, progress=False)
        t1, t2, s1, s2 = share(teacher, 1), share(teacher, 2), share(student, 1), share(student, 2)
        ratio = (s1 + s2) / max(t1 + t2, 1e-9)
        print(f"| {flux_name}, {steps} | {t1:.3f} / {t2:.3f} | {s1:.3f} / {s2:.3f} | {ratio:.2f} | {share(student):.3f} | "
              f"{share(student, task='image2image'):.3f} | {share(student, task='imagetext2image'):.3f} | {share(student, task='multiimage2image'):.3f} |")
        everywhere[f"{flux_name}, {steps}"] = student
    return everywhere


def style_table(cases, english, encoder, alignnet) -> dict:
    """Prints the table; returns X2I's results on `cases` without and with the LoRA."""
    results = {}
    print("| mini, 20 steps | teacher en 1 / 2 obj | X2I en 1 / 2 obj | X2I / teacher | squat: teacher en | X2I en | X2I, every task |")
    print("|---|---|---|---|---|---|---|")
    for lora in (None, "mini-style"):
        flux = load_flux("mini", text_encoders=True)
        load_flux_loras(flux, [(lora, 1.0)] if lora else [])
        pipe = X2IPipeline(encoder, alignnet, flux)
        teacher = run_teacher(flux, english, seed=0, steps=20, progress=False)
        student = run_student(pipe, english, seed=0, steps=20, progress=False)
        everywhere = run_student(pipe, cases, seed=0, steps=20, progress=False)
        t1, t2, s1, s2 = share(teacher, 1), share(teacher, 2), share(student, 1), share(student, 2)
        print(f"| {lora or 'no LoRA'} | {t1:.3f} / {t2:.3f} | {s1:.3f} / {s2:.3f} | {(s1 + s2) / max(t1 + t2, 1e-9):.2f} | "
              f"{squat_share(teacher):.3f} | {squat_share(student):.3f} | {squat_share(everywhere):.3f} |")
        results["mini, 20" + (f" + {lora}" if lora else "")] = everywhere
    return results


def lines_table(columns: dict) -> None:
    """X2I per task and language in each setting (with a LoRA: the scene, then the squat share)."""
    lines = sorted({line_of(r["case"]) for results in columns.values() for r in results})
    print("| line | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for line in lines:
        cells = []
        for name, results in columns.items():
            chosen = [r for r in results if line_of(r["case"]) == line]
            cell = f"{sum(r['correct'] for r in chosen) / len(chosen):.3f}"
            cells.append(cell + (f" ({squat_share(chosen):.2f} squat)" if "+" in name else ""))
        print(f"| {line} ({len(chosen)}) | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30, help="cases per task and language")
    parser.add_argument("--english", type=int, default=150, help="style: English text2image cases per object count")
    parser.add_argument("--seed", type=int, required=True, help="a fresh seed for every reported score")
    parser.add_argument("--tables", nargs="+", choices=("fewstep", "style"), default=("fewstep", "style"))
    args = parser.parse_args()

    cases = make_cases(args.n, seed=args.seed)
    encoder, alignnet = load_encoder("mini"), load_alignnet("mini")
    columns = {}
    if "fewstep" in args.tables:
        columns.update(fewstep_table(cases, encoder, alignnet))
        print()
    if "style" in args.tables:
        english = [c for k in (1, 2) for c in make_cases(args.english, tasks=("text2image",), langs=("en",), seed=args.seed + k, num_objects=k)]
        columns.update(style_table(cases, english, encoder, alignnet))
        print()
    lines_table(columns)


if __name__ == "__main__":
    main()
