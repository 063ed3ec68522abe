"""How long FLUX's text stream is, against time and scores, beside the teacher (T5: 32 tokens). For
each AlignNet given: one whose stream is "all" with its prompts padded as distilled, with the
padding dropped from FLUX's stream (`trim_padding`: as many tokens as the longest request of the
batch), and with no padding at all (`pad_to=0`); one whose stream is "request" (FLUX reads the
request's own tokens) padded as distilled and unpadded.

    python benchmarks/text_stream.py --n 20 --seed 60601 --alignnet mini OTHER_ALIGNNET

Time: 16 pictures of one request, 20 steps, 64x64, the fastest of `--repeats` runs (MLLM and AlignNet
included for X2I; T5/CLIP for the teacher). Scores: fresh cases of every task and language, judged."""

from __future__ import annotations

import argparse
import time

import torch

from x2i.inference.loaders import load_alignnet, load_encoder, load_flux
from x2i.inference.pipeline import X2IPipeline
from x2i.inference.request import Request
from x2i.mini.eval import make_cases, run_student, run_teacher, summarize

# (name, pad_to: None as distilled, 0 none; trim_padding), for each stream
VARIANTS = {
    "all": [("padded as distilled", None, False), ("padding dropped from the stream", None, True), ("no padding", 0, True)],
    "request": [("padded as distilled", None, False), ("no padding", 0, False)],
}


def fastest(run, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20, help="cases per task and language (0: time only)")
    parser.add_argument("--seed", type=int, required=True, help="a fresh seed for every reported score")
    parser.add_argument("--repeats", type=int, default=3, help="time each run this many times, keep the fastest")
    parser.add_argument("--alignnet", nargs="+", default=["mini"], help="AlignNets of the mini MLLM to compare (default: the shipped one)")
    args = parser.parse_args()

    teacher = load_flux("mini", text_encoders=True)
    teacher.set_progress_bar_config(disable=True)
    encoder = load_encoder("mini")
    cases = make_cases(args.n, seed=args.seed)
    request = [Request("a big red circle on the left and a small blue square at the top")] * 16
    seeds = list(range(16))

    def teacher_run():
        teacher(prompt=[r.text for r in request], num_inference_steps=20, height=64, width=64, generator=[torch.Generator().manual_seed(s) for s in seeds],
                max_sequence_length=teacher.tokenizer_2.model_max_length)

    teacher_seconds = fastest(teacher_run, args.repeats)
    teacher_score = summarize(run_teacher(teacher, cases, seed=0, steps=20, progress=False)) if cases else {"overall": float("nan")}
    print(f"| teacher (T5, {teacher.tokenizer_2.model_max_length} tokens) | {teacher_seconds:.2f} | 1.00 | {teacher_score['overall']:.3f} (English t2i) | |")
    for path in args.alignnet:
        alignnet = load_alignnet(path)
        stream = alignnet.config.stream
        for name, pad_to, trim in VARIANTS[stream]:
            pipe = X2IPipeline(encoder, alignnet, teacher, pad_to=pad_to)
            pipe.trim_padding = trim
            tokens = pipe.encode(request[:1]).prompt_embeds.shape[1]
            seconds = fastest(lambda: pipe(request, num_inference_steps=20, height=64, width=64, seed=seeds, show_progress=False), args.repeats)
            score = summarize(run_student(pipe, cases, seed=0, steps=20, progress=False)) if cases else {"overall": float("nan"), "by_task": {}}
            tasks = ", ".join(f"{k} {v:.3f}" for k, v in score["by_task"].items())
            print(f"| X2I {path}, stream {stream}, {name} ({tokens} tokens) | {seconds:.2f} | {seconds / teacher_seconds:.2f} "
                  f"| {score['overall']:.3f} | {tasks} |")


if __name__ == "__main__":
    main()
