"""Conversations in the mini world, scored by the judge: does turn N draw what the conversation asks?

Each case is a fresh conversation: turn 1 a caption (text -> image), then edit instructions, each on
the scene the conversation has reached ("now make the circle blue"), in one language. `x2i.Session`
runs it as `x2i chat` does (from turn 2 on, the last picture is the input; the MLLM reads the earlier
turns and its answers). The score of an N-turn conversation is the judge's verdict on turn N's
picture against the scene after N - 1 edits. Modes: the session's default (history + answers),
and `--no-history` (each turn reads only its own instruction and the last picture); `--condition-on`
picks the road.

    python benchmarks/conversations.py --n 40 --turns 3 --seed 90210 [--no-history] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import time

import torch
from tqdm import tqdm

from x2i.inference.locations import locate
from x2i.inference.pipeline import X2IPipeline
from x2i.inference.session import Session
from x2i.mini.judge import read_objects, scene_correct
from x2i.mini.language import caption, instruction
from x2i.mini.world import LANGUAGES, apply_edit, random_edit, random_scene


def make_conversations(n: int, turns: int, seed: int) -> list[dict]:
    """`n` conversations per language: the text of each turn and the scene it should show."""
    rng = random.Random(seed)
    cases = []
    for lang in LANGUAGES:
        for _ in range(n):
            scene = random_scene(rng)
            texts, scenes = [caption(scene, lang, rng)], [scene]
            for _ in range(turns - 1):
                op = random_edit(scene, rng)
                texts.append(instruction(scene, op, lang, rng))
                scene = apply_edit(scene, op)
                scenes.append(scene)
            cases.append({"lang": lang, "texts": texts, "expect": scenes})
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40, help="conversations per language")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--seed", type=int, required=True, help="a fresh seed for every reported score")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no-history", action="store_true")
    parser.add_argument("--answer-tokens", type=int, default=64)
    parser.add_argument("--condition-on", default=None, help="the road (default: the pipeline's, auto)")
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args()
    torch.set_num_threads(2)

    pipe = X2IPipeline.from_pretrained(locate("mini", "mllm"), locate("mini", "flux"), locate("mini", "alignnet"))
    cases = make_conversations(args.n, args.turns, args.seed)
    correct = {lang: [0] * args.turns for lang in LANGUAGES}
    start = time.time()
    for i, case in enumerate(tqdm(cases, desc="conversations")):
        session = Session(pipe, answer_tokens=args.answer_tokens, keep_history=not args.no_history, condition_on=args.condition_on,
                          num_inference_steps=args.steps, show_progress=False, height=64, width=64)
        for turn, (text, scene) in enumerate(zip(case["texts"], case["expect"])):
            image = session.send(text, seed=args.seed + 1000 * i + turn)[0]
            correct[case["lang"]][turn] += scene_correct(scene, read_objects(image))
    total = [sum(correct[lang][t] for lang in LANGUAGES) / len(cases) for t in range(args.turns)]
    result = {
        "mode": "no history" if args.no_history else f"history + answers ({args.answer_tokens} tokens)",
        "condition_on": args.condition_on or "auto",
        "conversations": len(cases), "turns": args.turns, "seed": args.seed, "steps": args.steps,
        "score_after_turn": [round(x, 3) for x in total],
        "by_lang": {lang: [round(c / args.n, 3) for c in correct[lang]] for lang in LANGUAGES},
        "seconds": round(time.time() - start),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
