"""Encoding a request: the original X2I procedure against ours, side by side.

reference: left-pad every prompt to 512 tokens, `generate()` 128 new tokens with
           output_hidden_states, keep the hidden states of the first step (what the original code did)
ours:      the encoder's `encode`: one forward pass over the prompt, no padding

Both give the same hidden states for the prompt (tests/test_encoder.py and tests/test_readers.py
check it). This measures the cost for every reader (Qwen2.5-VL, InternVL, Qwen2.5-Omni) on small
random models built locally (no hub here), on this machine's CPU, one request at a time as
`x2i generate` does: text in several languages, an image + instruction, and the inputs each reader
adds (a video clip for Qwen2.5-VL and Qwen2.5-Omni, a sound for Qwen2.5-Omni). Usage:

    python benchmarks/bench_encode.py [--reader all] [--layers 8] [--hidden 256] [--repeats 3]
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

from x2i.inference.loaders import load_encoder
from x2i.inference.request import Request
from x2i.media import Audio, Video
from x2i.tiny_models import READERS

CAPTIONS = [
    "a red circle",
    "a large blue square on the left and a small yellow triangle at the top",
    "un cercle vert au centre",
    "zwei lila Quadrate, eines links und eines rechts, auf hellem Hintergrund",
    "一个红色的三角形在底部",
    "a small orange circle at the bottom, seen from far away, soft light, plain background",
]


def write_clip(path: str, seconds: int = 4, fps: int = 8) -> Video:
    import av

    with av.open(path, "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 56, 56, "yuv420p"
        for i in range(seconds * fps):
            frame = np.zeros((56, 56, 3), np.uint8)
            frame[:, i % 56] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Video.load(path)


def requests(reader: str, clip: Video) -> list[Request]:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8))
    reqs = [Request(c) for c in CAPTIONS] + [Request("make the circle blue", [image])]
    if reader != "internvl":
        reqs.append(Request("a picture of this clip", [clip]))
    if reader == "qwen2_5_omni":
        tone = np.sin(2 * np.pi * 440 * np.arange(3 * 16000) / 16000).astype(np.float32)
        reqs.append(Request("draw what you hear", [Audio.from_array(tone, 16000)]))
    return reqs


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


def bench(reader: str, args, tmp: str, clip: Video) -> dict:
    encoder = load_encoder(READERS[reader](f"{tmp}/{reader}", num_layers=args.layers, hidden_size=args.hidden))
    reqs = requests(reader, clip)
    ours(encoder, reqs[0]), reference(encoder, reqs[0], new_tokens=2)  # warm-up
    t_ref = sum(timed(lambda r=r: reference(encoder, r), args.repeats) for r in reqs)
    t_ours = sum(timed(lambda r=r: ours(encoder, r), args.repeats) for r in reqs)
    prompt_tokens = [int(encoder.prepare([r])["attention_mask"].sum()) for r in reqs]
    return {
        "model": f"random {encoder.name}, {args.layers} layers, hidden {args.hidden}",
        "requests": len(reqs),
        "mean_prompt_tokens": round(statistics.mean(prompt_tokens), 1),
        "reference_s_per_request": round(t_ref / len(reqs), 4),
        "ours_s_per_request": round(t_ours / len(reqs), 4),
        "speedup": round(t_ref / t_ours, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reader", default="all", choices=["all", *READERS])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    readers = list(READERS) if args.reader == "all" else [args.reader]
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_clip(f"{tmp}/clip.mp4")
        results = [bench(reader, args, tmp, clip) for reader in readers]
    machine = f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}"
    print(json.dumps({"machine": machine, "readers": results}, indent=2))


if __name__ == "__main__":
    main()
