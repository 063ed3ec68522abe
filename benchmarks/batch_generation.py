"""Throughput of `x2i generate --requests` on the mini models: one process per request (a shell loop
of `x2i generate --prompt`), one process over the whole file, and two processes (torchrun, gloo)
sharing it. Prints images per second for each and the speed-up over one process per request.

    python benchmarks/batch_generation.py --n 48 --steps 20 [--loop 8]

The per-request loop is timed on its first `--loop` requests (it pays the start-up every time)."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from x2i.mini.language import caption
from x2i.mini.world import random_scene


def timed(command: list[str], env: dict) -> float:
    start = time.time()
    subprocess.run(command, check=True, env=env, capture_output=True)
    return time.time() - start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=48, help="requests in the file")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--loop", type=int, default=8, help="requests timed one process each")
    parser.add_argument("--seed", type=int, default=4242)
    args = parser.parse_args()

    import random

    rng = random.Random(args.seed)
    prompts = [caption(random_scene(rng), "en", rng) for _ in range(args.n)]
    folder = Path(tempfile.mkdtemp())
    requests = folder / "requests.jsonl"
    requests.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    x2i = [sys.executable, "-m", "x2i", "generate", "--steps", str(args.steps)]

    loop = sum(timed([*x2i, "--prompt", p, "--out", str(folder / f"loop-{i}.png")], env) for i, p in enumerate(prompts[: args.loop]))
    per_request = args.loop / loop
    one = args.n / timed([*x2i, "--requests", str(requests), "--out", str(folder / "one")], env)
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    two_env = {**env, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // 2))}
    two = args.n / timed([*launch, "-m", "x2i", "generate", "--steps", str(args.steps), "--requests", str(requests), "--out", str(folder / "two")], two_env)
    print(f"| {args.n} requests, {args.steps} steps, {os.cpu_count()} CPU cores | {per_request:.2f} | {one:.2f} ({one / per_request:.1f}x) "
          f"| {two:.2f} ({two / per_request:.1f}x) |")


if __name__ == "__main__":
    main()
