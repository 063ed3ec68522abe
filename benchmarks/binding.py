"""Which words go with which object: what a spoken caption asks of a language model that text does not.

A word said lasts about ten sound tokens (25 a second). Two measurements:

    python benchmarks/binding.py repeats [--mllm mini] [--n 32] [--seed 5]
        two-object captions (English, French, German) with each word written k times, or followed
        by k fillers: the MLLM's exact-match answers. Can its language model read words that come
        spread over many tokens and still tell which go together?

    python benchmarks/binding.py heard --mllm mini-omni [--n 40] [--seed S]
        spoken captions in the five languages: exact-match answers by language and object count,
        and, where the count of objects is right, each attribute (size, color, shape, place) per
        object right, by object count. Words heard but bound to the wrong object show as one-object
        attributes near 1 and two-object ones near chance.
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict

from x2i.inference.loaders import load_encoder
from x2i.inference.request import Request
from x2i.mini.examples import sample_with_scene
from x2i.mini.answers import greedy_answers
from x2i.mini.world import LANGUAGES

FILLERS = {"repeated": None, "spaces": " ", "commas": ",", "newlines": "\n", "end-of-text": "<|endoftext|>"}


def repeats(encoder, n: int, seed: int) -> None:
    rng = random.Random(seed)
    examples = []
    while len(examples) < n:
        example = sample_with_scene(rng, "text2image", rng.choice(("en", "fr", "de")))
        if len(example.scene["objects"]) == 2:
            examples.append(example)
    print(f"exact-match answers on {n} two-object captions (en/fr/de), each word followed by k copies of itself or of a filler")
    print(f"{'k':>3}" + "".join(f"{name:>13}" for name in FILLERS))
    for k in (0, 1, 2, 4, 7):
        row = []
        for filler in FILLERS.values():
            texts = [" ".join(w + ((" " + w) * k if filler is None else filler * k) for w in e.request.text.split()) for e in examples]
            got = greedy_answers(encoder, [Request(t) for t in texts])
            row.append(sum(a == e.answer for a, e in zip(got, examples)) / n)
        print(f"{k:>3}" + "".join(f"{score:>13.3f}" for score in row), flush=True)


def heard(encoder, n: int, seed: int) -> None:
    rng = random.Random(seed)
    right = defaultdict(lambda: [0, 0])

    def count(line: str, ok: bool) -> None:
        right[line][0] += ok
        right[line][1] += 1

    for lang in LANGUAGES:
        examples = [sample_with_scene(rng, "audio2image", lang) for _ in range(n)]
        for example, answer in zip(examples, greedy_answers(encoder, [e.request for e in examples])):
            objects = len(example.scene["objects"])
            count(f"exact, {lang}", answer == example.answer)
            count(f"exact, {objects} object(s)", answer == example.answer)
            truth, said = example.answer.split(" and "), answer.split(" and ")
            count(f"count of objects, {objects} object(s)", len(truth) == len(said))
            if len(truth) != len(said):
                continue
            for t, s in zip(truth, said):  # "a small red circle on the left": article, size, color, shape, place
                t, s = t.split(), s.split()
                for k, attribute in enumerate(("size", "color", "shape"), start=1):
                    count(f"{attribute}, {objects} object(s)", t[k : k + 1] == s[k : k + 1])
                count(f"place, {objects} object(s)", t[4:] == s[4:])
    print(f"spoken captions, {n} per language (seed {seed}): share right")
    for line, (ok, total) in right.items():
        print(f"  {line:<32} {ok / total:.3f}  ({total})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("repeats", "heard"))
    parser.add_argument("--mllm", default=None, help="default: mini (repeats), mini-omni (heard)")
    parser.add_argument("--n", type=int, default=None, help="captions (repeats, default 32) or spoken captions per language (heard, default 40)")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    if args.what == "repeats":
        repeats(load_encoder(args.mllm or "mini"), args.n or 32, args.seed)
    else:
        heard(load_encoder(args.mllm or "mini-omni"), args.n or 40, args.seed)


if __name__ == "__main__":
    main()
