"""Where a person waits: a cold `x2i generate` against a bare `import torch`, and a warm `x2i serve`.

    python benchmarks/startup.py [--repeats 3]

cold: wall time of `x2i generate` on the shipped mini models (a new process: imports, loading,
encoding, the mini's 20 denoising steps, writing the PNG) over the wall time of `python -c "import
torch"`, medians of `--repeats` runs each, one after the other on the same machine.
warm: `x2i serve` on the mini models, called through its API (gradio_client, which like a browser
fetches no picture twice) with the app's defaults (the mini's 20 steps, 64x64); the median seconds
per image over 10 requests after one warm-up; then at 28 steps (FLUX.1-dev's default, as measured
before the mini got its own), and with `x2i serve --compile`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=ENV)
    return time.perf_counter() - start


def warm_serve(requests: int = 10, steps: int = 20, *flags: str) -> float:
    from gradio_client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "x2i.app.cli", "serve", "--port", str(port), *flags], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(3000):  # --compile takes a minute or more
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        client = Client(url, verbose=False, download_files=False)  # as a browser: new pictures only, by URL
        times = []
        for i in range(requests + 1):
            start = time.perf_counter()
            client.predict("a large red circle on the left", [], i, steps, 64, 64, 3.5, 1, "auto", 1.0, 1.0, 1.0, api_name="/generate")
            times.append(time.perf_counter() - start)
        return statistics.median(times[1:])
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        torch_s = statistics.median(wall([sys.executable, "-c", "import torch"]) for _ in range(args.repeats))
        generate_s = statistics.median(
            wall([sys.executable, "-m", "x2i.app.cli", "generate", "--prompt", "a large red circle on the left", "--out", f"{tmp}/o.png"])
            for _ in range(args.repeats)
        )
    serve_s, serve_28_s, compiled_s = warm_serve(), warm_serve(10, 28), warm_serve(10, 20, "--compile")
    print(json.dumps({
        "import_torch_s": round(torch_s, 2), "cold_generate_s": round(generate_s, 2), "cold_ratio": round(generate_s / torch_s, 2),
        "warm_serve_s_per_image": round(serve_s, 3), "warm_serve_28_steps_s_per_image": round(serve_28_s, 3),
        "warm_serve_compiled_s_per_image": round(compiled_s, 3),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }, indent=2))


if __name__ == "__main__":
    main()
