"""Encoding a request: the original X2I procedure against ours, side by side.

reference: left-pad every prompt to 512 tokens, `generate()` 128 new tokens with
           output_hidden_states, keep the hidden states of the first step (what the original code did)
ours:      `Qwen2_5_VLEncoder.encode`: one forward pass over the prompt, no padding

Both give the same hidden states for the prompt (tests/test_encoder.py checks it). This measures the
cost on a small random Qwen2.5-VL built locally (no hub here), on this machine's CPU, one request at
a time as `x2i generate` does. Usage:

    python benchmarks/bench_encode.py [--layers 8] [--hidden 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from x2i.loaders import load_encoder
from x2i.request import Request
from x2i.tiny import build_tiny_qwen2_5_vl

CAPTIONS = [
    "a red circle",
    "a large blue square on the left and a small yellow triangle at the top",
    "un cercle vert au centre",
    "zwei lila Quadrate, eines links und eines rechts, auf hellem Hintergrund",
    "一个红色的三角形在底部",
    "a small orange circle at the bottom, seen from far away, soft light, plain background",
]


def requests() -> list[Request]:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8))
    return [Request(c) for c in CAPTIONS] + [Request("make the circle blue", [image])]


def reference(encoder, request: Request, new_tokens: int = 128) -> torch.Tensor:
    inputs = encoder.prepare([request], pad_to=512)
    out = encoder.model.generate(
        **inputs,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,  # the cost when the answer runs to the limit, as it often did
        do_sample=False,
        output_hidden_states=True,
        return_dict_in_generate=True,
    )
    return torch.stack(out.hidden_states[0], dim=1)


def ours(encoder, request: Request) -> torch.Tensor:
    return encoder.encode([request]).hidden_states


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        encoder = load_encoder(build_tiny_qwen2_5_vl(tmp, num_layers=args.layers, hidden_size=args.hidden))
        reqs = requests()
        ours(encoder, reqs[0]), reference(encoder, reqs[0], new_tokens=2)  # warm-up
        t_ref = sum(timed(lambda r=r: reference(encoder, r), args.repeats) for r in reqs)
        t_ours = sum(timed(lambda r=r: ours(encoder, r), args.repeats) for r in reqs)
        prompt_tokens = [int(encoder.prepare([r])["attention_mask"].sum()) for r in reqs]

    result = {
        "model": f"random Qwen2.5-VL, {args.layers} layers, hidden {args.hidden}",
        "requests": len(reqs),
        "mean_prompt_tokens": round(statistics.mean(prompt_tokens), 1),
        "reference_s_per_request": round(t_ref / len(reqs), 4),
        "ours_s_per_request": round(t_ours / len(reqs), 4),
        "speedup": round(t_ref / t_ours, 1),
        "machine": f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}",
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
