"""Where the mini MLLM's edit answers fail.

    python benchmarks/edit_errors.py [--mllm mini] [--n 100] [--seed S]
        exact-match answers to `n` edits per language by edit op and by the objects the scene
        holds, the words most often wrong, and four look-ups by name on two-object scenes (the
        size of "the red circle" where the two sizes differ; where it is; the color and the shape
        of what is at a place): what an edit that leaves an object as it was must do before its
        first word (an answer names the size first).

The recipe's answer to it: stage 4's `hard edit` and `two-object question`, and a deeper language
model (`x2i mini train-mllm --start-from DIR --add-layers 1 3 --edit-steps N`; BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import random
from collections import Counter

from x2i.inference.loaders import load_encoder
from x2i.inference.request import Request
from x2i.mini.examples import question
from x2i.mini.language import describe, edit
from x2i.mini.answers import greedy_answers
from x2i.mini.world import LANGUAGES, random_edit, random_scene, render


def measure(args) -> None:
    encoder = load_encoder(args.mllm)
    rng = random.Random(args.seed)
    rows = []
    for lang in LANGUAGES:
        for _ in range(args.n):
            scene = random_scene(rng)
            op = random_edit(scene, rng)
            text, result = edit(scene, op, lang, rng)
            rows.append((op["op"], len(scene["objects"]), Request(text, [render(scene, rng)]), describe(result)))
    answers = greedy_answers(encoder, [request for *_, request, _ in rows])
    total, wrong, words = Counter(), Counter(), Counter()
    for (op, objects, _, gold), got in zip(rows, answers):
        total[op, objects] += 1
        if got != gold:
            wrong[op, objects] += 1
            pairs = zip(gold.split(), got.split()) if len(gold.split()) == len(got.split()) else [("(objects)", "(other count)")]
            words.update(f"{a} -> {b}" for a, b in pairs if a != b)
    print(f"edits, {args.n} per language (seed {args.seed}): {1 - sum(wrong.values()) / len(rows):.3f} exact")
    print("| op | objects | exact | of |\n|---|---|---|---|")
    for op, objects in sorted(total):
        print(f"| {op} | {objects} | {1 - wrong[op, objects] / total[op, objects]:.3f} | {total[op, objects]} |")
    print("words most often wrong:", ", ".join(f"{w} ({k})" for w, k in words.most_common(8)))

    # Question kinds (examples.question): the size and the place of a named object, the color and the shape at a place.
    lookups = {"size": [], "where": [], "color": [], "shape": []}
    while min(len(v) for v in lookups.values()) < 2 * args.n:
        scene = random_scene(rng, 2)
        image = render(scene, rng)
        for kind, asked in lookups.items():
            if kind != "size" or scene["objects"][0]["size"] != scene["objects"][1]["size"]:  # a size look-up only where the sizes differ
                text, answer = question(scene, rng, kind)
                asked.append((Request(text, [image]), answer))
    print(f"\nlook-ups on two-object scenes by question kind, {2 * args.n} each (chance about 0.5)")
    for name, asked in lookups.items():
        got = greedy_answers(encoder, [request for request, _ in asked[: 2 * args.n]])
        print(f"  {name}: {sum(a == b for a, (_, b) in zip(got, asked)) / len(got):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mllm", default="mini", help="an MLLM directory, or mini: the shipped one")
    parser.add_argument("--n", type=int, default=100, help="edits per language; 2n look-ups of each kind")
    parser.add_argument("--seed", type=int, default=5, help="a fresh one for every reported number")
    measure(parser.parse_args())


if __name__ == "__main__":
    main()
