"""LightControl and LoRA: parameters at FLUX.1 size, and what each costs at inference.

    python benchmarks/editing.py [--lightcontrol mini] [--lora mini] [--n 32] [--steps 20] [--repeats 3]

1. Parameter counts at FLUX.1-dev's shapes (the transformer built on the meta device, nothing
   downloaded): our LightControl (one shared encoder, 19 1x1 heads), the release's layout (19 whole
   branches, each ending in a 3x3 conv 256 -> 3072, as reference section 5 describes it), and a
   rank-16 LoRA on every attention projection.
2. Inference time of `n` mini edits (one batch, `steps` steps) with plain X2I, + LightControl,
   + LoRA, + both, in one process on the same inputs, best of `repeats`; ratios to plain.
"""

import argparse
import json
import random
import time

import torch
from torch import nn

FLUX_1_DEV = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128, num_attention_heads=24,
                  joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True, axes_dims_rope=(16, 56, 56))


def count(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def parameters() -> dict:
    from diffusers import FluxTransformer2DModel

    from x2i.inference.lightcontrol import LightControl
    from x2i.training.edit_training import add_lora

    ours = LightControl()  # FLUX.1's sizes by default
    trunk = count(ours) - count(ours.heads)
    # The release: per double block, the whole encoder with a 3x3 stride-2 conv 256 -> 3072 in place of our out conv and head.
    release_branch = trunk - count(ours.out) + count(nn.Conv2d(256, 3072, 3, stride=2, padding=1))
    with torch.device("meta"):
        transformer = FluxTransformer2DModel(**FLUX_1_DEV)
        add_lora(transformer, rank=16)
    return {
        "flux_transformer": count(transformer) - count(transformer, trainable_only=True),
        "lightcontrol_ours": count(ours),
        "lightcontrol_release_layout": 19 * release_branch,
        "lora_rank16_attention": count(transformer, trainable_only=True),
    }


def timings(lightcontrol: str, lora: str, n: int, steps: int, repeats: int) -> dict:
    from x2i.inference.loaders import load_lightcontrol
    from x2i.inference.locations import locate
    from x2i.inference.lora import load_lora
    from x2i.inference.pipeline import X2IPipeline
    from x2i.inference.request import Request
    from x2i.mini.eval import case_inputs, make_cases

    pipe = X2IPipeline.from_pretrained(locate("mini", "mllm"), locate("mini", "flux"), locate("mini", "alignnet"))
    branch = load_lightcontrol(lightcontrol, pipe.flux)
    cases = make_cases(n, tasks=("imagetext2image",), langs=("en",), seed=4242)
    requests = [Request(*case_inputs(c, random.Random(i))) for i, c in enumerate(cases)]

    def run():
        generators = [torch.Generator().manual_seed(i) for i in range(n)]
        start = time.perf_counter()
        pipe(requests, num_inference_steps=steps, generator=generators, show_progress=False)
        return time.perf_counter() - start

    def best():
        run()  # warm-up
        return min(run() for _ in range(repeats))

    seconds = {"plain": best()}
    pipe.lightcontrol = branch
    seconds["lightcontrol"] = best()
    load_lora(pipe.flux, lora)
    seconds["lightcontrol+lora"] = best()
    pipe.lightcontrol = None
    seconds["lora"] = best()
    return {"n": n, "steps": steps, "seconds": seconds, "ratio_to_plain": {k: round(v / seconds["plain"], 3) for k, v in seconds.items()}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lightcontrol", default="mini")
    parser.add_argument("--lora", default="mini")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps({"parameters": parameters(), "inference": timings(args.lightcontrol, args.lora, args.n, args.steps, args.repeats)}, indent=1))
