"""Measurements at real scale with random weights of the true shapes (no download: the public
configs of Qwen2.5-VL-3B/7B and FLUX.1-dev are in benchmarks/configs/).

    python benchmarks/real_scale.py weights               # every part's weights at bf16 and nf4 (computed on the meta device)
    python benchmarks/real_scale.py cpu-encode            # this CPU: encode at the 3B shape in bf16
    python benchmarks/real_scale.py gpu                   # a CUDA GPU, one command of at most ~8 minutes
    python benchmarks/real_scale.py gpu --tiny            # the same code on tiny shapes on the CPU (checks the script)

cpu-encode: one pass (x2i) against the reference's pad-512 + generate-128, at the Qwen2.5-VL-3B shape
in bf16, on a caption wrapped in X2I's prompt (a BPE tokenizer trained here on captions stands in
for Qwen's, for realistic token counts; the weights are random, so only times mean anything).

gpu: peak GPU memory of one 1024x1024 generation at the Qwen2.5-VL-7B + FLUX.1-dev shape with no
offload, model offload, sequential offload and nf4; the encode speedup at 7B; one distillation
step's time and peak memory with x2i's streamed loss against the release's way (every block output
of both passes kept and stacked, KL in bf16). Results print as JSON; BENCHMARKS.md has them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_encode import CAPTIONS, reference, timed  # noqa: E402

from x2i.inference.alignnet import AlignNet, preset_config  # noqa: E402
from x2i.inference.request import Request  # noqa: E402

CONFIGS = Path(__file__).parent / "configs"
TINY = dict(text_layers=2, hidden=64, flux_layers=(1, 1))


def mllm_config(name: str, tiny: bool):
    from transformers import Qwen2_5_VLConfig

    spec = json.loads((CONFIGS / f"{name}.json").read_text())
    if tiny:
        spec["text_config"].update(num_hidden_layers=TINY["text_layers"], hidden_size=TINY["hidden"], intermediate_size=128,
                                   num_attention_heads=4, num_key_value_heads=2, vocab_size=4096)
        spec["vision_config"].update(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=TINY["hidden"], fullatt_block_indexes=[0])
        spec["text_config"]["rope_parameters"]["mrope_section"] = [2, 3, 3]
    spec = {k: v for k, v in spec.items() if not k.startswith("_") and k not in ("model_type", "architectures")}
    return Qwen2_5_VLConfig(**spec)


def random_encoder(name: str, device, dtype, tiny: bool = False):
    """A Qwen2.5-VL encoder of the public shape with random weights, and a BPE tokenizer trained on
    captions (realistic token counts; ids all below the vocabulary size)."""
    from transformers import (
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
    )

    from x2i.architectures import QWEN_VL_CHAT_TEMPLATE, build_qwen_tokenizer
    from x2i.inference.encoders.qwen2_5_vl import Qwen2_5_VLEncoder, _Processor
    from x2i.inference.encoders.video_processor import QwenVideoProcessor

    tokenizer = build_qwen_tokenizer([QWEN_VL_CHAT_TEMPLATE, *CAPTIONS * 50, str({"Text input": "", "Instruction editing description": "no", "image input": "no"})], vocab_size=1024)
    image_processor = Qwen2VLImageProcessorPil()
    processor = _Processor(image_processor=image_processor, tokenizer=tokenizer, video_processor=QwenVideoProcessor(image_processor),
                           chat_template=tokenizer.chat_template)
    config = mllm_config(name, tiny)
    for key, token in (("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
                       ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")):
        setattr(config, key, tokenizer.convert_tokens_to_ids(token))  # the stand-in tokenizer's ids
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    return Qwen2_5_VLEncoder(model.eval(), processor)


def random_flux(device, dtype, tiny: bool = False):
    """FluxPipeline (no T5/CLIP) of FLUX.1-dev's shape with random weights."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )

    spec = json.loads((CONFIGS / "flux.1-dev.json").read_text())
    if tiny:
        spec["transformer"].update(num_layers=TINY["flux_layers"][0], num_single_layers=TINY["flux_layers"][1], num_attention_heads=2,
                                   attention_head_dim=16, axes_dims_rope=[4, 6, 6], joint_attention_dim=64, pooled_projection_dim=32)
        spec["vae"].update(block_out_channels=[8, 8, 8, 8], norm_num_groups=4, layers_per_block=1)
    with torch.device(device), default_dtype(dtype):  # built in bf16: never a 48 GB fp32 copy of FLUX.1 on the GPU
        transformer = FluxTransformer2DModel(**spec["transformer"])
        vae = AutoencoderKL(**spec["vae"])
    return FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**spec["scheduler"]), vae=vae, transformer=transformer,
                        text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None)


@contextlib.contextmanager
def default_dtype(dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def random_alignnet(encoder, flux, dtype) -> AlignNet:
    config = preset_config("qwen2.5-vl-7b") if encoder.hidden_size == 3584 else dict(pad_to=512)
    config.update(num_hidden_states=encoder.num_hidden_states, hidden_size=encoder.hidden_size,
                  joint_attention_dim=flux.transformer.config.joint_attention_dim, pooled_projection_dim=flux.transformer.config.pooled_projection_dim)
    return AlignNet(**config).to(flux.transformer.device, dtype)


def weights(args) -> dict:
    """Weight memory of each part, counted on the meta device: bf16, and nf4 as bitsandbytes stores
    it (the Linear weights in 4 bits plus one fp32 absmax per 64 values; everything else bf16, the
    LM head too, which transformers leaves unquantized)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    def sizes(model) -> dict:
        linear = sum(m.weight.numel() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head"))
        total = sum(p.numel() for p in model.parameters())  # a tied LM head counts once
        nf4 = linear * (0.5 + 4 / 64) + (total - linear) * 2
        return {"parameters_b": round(total / 1e9, 2), "bf16_gib": round(total * 2 / 1024**3, 1), "nf4_gib": round(nf4 / 1024**3, 1)}

    with torch.device("meta"):
        parts = {name: sizes(Qwen2_5_VLForConditionalGeneration._from_config(mllm_config(name, False))) for name in ("qwen2.5-vl-3b", "qwen2.5-vl-7b")}
        flux = random_flux("meta", torch.bfloat16)
        parts["flux.1-dev transformer"] = sizes(flux.transformer)
        parts["flux.1-dev vae"] = sizes(flux.vae)
    return parts


def cpu_encode(args) -> dict:
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    encoder = random_encoder("qwen2.5-vl-3b", "cpu", torch.bfloat16, tiny=args.tiny)
    built = time.perf_counter() - start
    requests = [Request(c) for c in CAPTIONS[: args.requests]]
    encoder.encode(requests[:1])  # warm-up
    ours = sum(timed(lambda r=r: encoder.encode([r]), 1) for r in requests) / len(requests)
    ref = sum(timed(lambda r=r: reference(encoder, r), 1) for r in requests) / len(requests)
    tokens = [int(encoder.prepare([r])["attention_mask"].sum()) for r in requests]
    return {"what": "encode one request, Qwen2.5-VL-3B shape, bf16, random weights", "requests": len(requests),
            "prompt_tokens": tokens, "reference_s": round(ref, 2), "ours_s": round(ours, 2), "speedup": round(ref / ours, 1),
            "build_s": round(built), "machine": f"{platform.machine()} CPU, {args.threads} threads, torch {torch.__version__}"}


@contextlib.contextmanager
def peak_memory(result: dict, key: str, device):
    """Peak GPU memory allocated inside the block, in GiB (on the CPU: not measured)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize()
        result[key] = {"peak_gib": round(torch.cuda.max_memory_allocated() / 1024**3, 2)}
    else:
        result[key] = {"peak_gib": None}
    result[key]["seconds"] = round(time.perf_counter() - start, 2)


def generation_modes(args, device, dtype, result: dict) -> None:
    from x2i.inference.pipeline import X2IPipeline

    size, steps = (1024, args.steps) if not args.tiny else (64, 2)
    request = Request(CAPTIONS[1])
    encoder = random_encoder("qwen2.5-vl-7b", device, dtype, tiny=args.tiny)
    flux = random_flux(device, dtype, tiny=args.tiny)
    pipe = X2IPipeline(encoder, random_alignnet(encoder, flux, dtype), flux, pad_to=512)

    def generate():
        pipe(request, height=size, width=size, num_inference_steps=steps, show_progress=False)

    generate()  # warm-up (kernels, allocator)
    with peak_memory(result, "generate, no offload", device):
        generate()
    result["encode speedup"] = encode_speedup(encoder)
    quantized_generation(args, encoder, flux, pipe.alignnet, device, dtype, size, steps, request, result)  # leaves the parts on the CPU
    for mode in ("model", "sequential"):  # sequential last: its hooks keep the weights for good
        if mode == "sequential" and device.type != "cuda":
            result["generate, sequential offload"] = "needs CUDA (accelerate cannot stream to the CPU)"
            continue
        offloaded = X2IPipeline(encoder, pipe.alignnet, flux, pad_to=512)
        getattr(offloaded, f"enable_{mode}_cpu_offload")(device)
        with peak_memory(result, f"generate, {mode} offload", device):
            offloaded(request, height=size, width=size, num_inference_steps=steps, show_progress=False)
        flux.remove_all_hooks()


def quantized_generation(args, encoder, flux, alignnet, device, dtype, size, steps, request, result) -> None:
    """nf4 (int8 by torchao in --tiny on the CPU): the random models are saved once and loaded back
    quantized, as `--quantize` loads a checkpoint. The plain parts go to the CPU meanwhile."""
    from x2i.inference.pipeline import X2IPipeline

    mode = "nf4" if device.type == "cuda" else "int8"
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        encoder.model.save_pretrained(f"{tmp}/mllm")
        encoder.processor.tokenizer.save_pretrained(f"{tmp}/mllm")
        encoder.processor.image_processor.save_pretrained(f"{tmp}/mllm")
        encoder.processor.video_processor.save_pretrained(f"{tmp}/mllm")
        flux.save_pretrained(f"{tmp}/flux")
        alignnet.save_pretrained(f"{tmp}/alignnet")
        encoder.model.to("cpu"), flux.to("cpu"), alignnet.to("cpu")
        if device.type == "cuda":
            torch.cuda.empty_cache()
        pipe = X2IPipeline.from_pretrained(f"{tmp}/mllm", f"{tmp}/flux", f"{tmp}/alignnet", device=device, dtype=dtype, quantize=mode)
        pipe(request, height=size, width=size, num_inference_steps=1, show_progress=False)
        with peak_memory(result, f"generate, {mode}", device):
            pipe(request, height=size, width=size, num_inference_steps=steps, show_progress=False)
        del pipe
    if device.type == "cuda":
        torch.cuda.empty_cache()


def encode_speedup(encoder) -> dict:
    requests = [Request(c) for c in CAPTIONS]
    encoder.encode(requests[:1])
    ours = sum(timed(lambda r=r: encoder.encode([r]), 3) for r in requests)
    ref = sum(timed(lambda r=r: reference(encoder, r), 1) for r in requests)
    return {"reference_s_per_request": round(ref / len(requests), 3), "ours_s_per_request": round(ours / len(requests), 4),
            "speedup": round(ref / ours, 1)}


def release_style_loss(transformer, inputs, teacher, student, temperature: float = 3.0):
    """The release's way: keep every block's attention output of both passes, stack them, KL in bf16."""
    kept = {"teacher": [], "student": []}
    mode = {"now": None}
    blocks = [b.attn for b in transformer.transformer_blocks] + [b.attn for b in transformer.single_transformer_blocks]
    handles = [a.register_forward_hook(lambda m, i, o: kept[mode["now"]].extend(o if isinstance(o, tuple) else (o,))) for a in blocks]
    try:
        mode["now"] = "teacher"
        with torch.no_grad():
            inputs.run(transformer, teacher)
        mode["now"] = "student"
        inputs.run(transformer, student)
    finally:
        for h in handles:
            h.remove()
    loss = 0
    for shape in {tuple(t.shape) for t in kept["teacher"]}:  # image stream, text stream, joint stream: one stack each
        t = torch.stack([x for x in kept["teacher"] if tuple(x.shape) == shape])
        s = torch.stack([x for x in kept["student"] if tuple(x.shape) == shape])
        log_p = torch.nn.functional.log_softmax(t / temperature, dim=-1)
        q = torch.nn.functional.softmax(s / temperature, dim=-1)
        loss = loss + torch.nn.functional.kl_div(log_p, q, reduction="batchmean")
    return loss


def distill_step(args, device, dtype, result: dict) -> None:
    import gc

    from x2i.inference.conditioning import FluxConditioning, condition
    from x2i.training.loss import AttentionTaps, FluxInputs, distillation_loss

    gc.collect()  # the generation measurements' models go before these are built
    if device.type == "cuda":
        torch.cuda.empty_cache()
    size = 1024 if not args.tiny else 64
    encoder = random_encoder("qwen2.5-vl-7b", device, dtype, tiny=args.tiny)
    flux = random_flux(device, dtype, tiny=args.tiny)
    transformer = flux.transformer.requires_grad_(False)
    transformer.enable_gradient_checkpointing()
    alignnet = random_alignnet(encoder, flux, torch.float32)
    states = encoder.encode([Request(CAPTIONS[1])], pad_to=512)
    width = transformer.config.joint_attention_dim
    teacher = FluxConditioning(torch.randn(1, 512, width, device=device, dtype=dtype), torch.randn(1, transformer.config.pooled_projection_dim, device=device, dtype=dtype))
    latents, ids = flux.prepare_latents(1, transformer.config.in_channels // 4, size, size, dtype, device, torch.Generator(device).manual_seed(0))
    inputs = FluxInputs(latents, ids, torch.full((1,), 0.7, device=device), torch.full((1,), 3.5, device=device))
    taps = AttentionTaps(transformer)

    def ours():
        with torch.autocast(device.type, dtype=dtype):
            student = condition(alignnet, states)
        loss = distillation_loss(transformer, taps, inputs, teacher, student, terms="padded").loss
        loss.backward()
        taps.clear()

    def release():
        taps.remove()
        with torch.autocast(device.type, dtype=dtype):
            student = condition(alignnet, states)
        release_style_loss(transformer, inputs, teacher, student).backward()

    ours()
    with peak_memory(result, "distill step, x2i streamed loss", device):
        ours()
    release()
    with peak_memory(result, "distill step, release's stacked bf16 KL", device):
        release()


def gpu(args) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    if device.type != "cuda" and not args.tiny:
        raise SystemExit("the gpu measurements need a CUDA GPU (or --tiny to check the script on the CPU)")
    dtype = torch.bfloat16
    result = {"machine": torch.cuda.get_device_name() if device.type == "cuda" else "CPU (tiny shapes: checks the script only)",
              "shapes": "tiny" if args.tiny else "Qwen2.5-VL-7B + FLUX.1-dev, 1024x1024", "steps": args.steps}
    generation_modes(args, device, dtype, result)
    distill_step(args, device, dtype, result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("weights", "cpu-encode", "gpu"))
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (checks the script in seconds)")
    parser.add_argument("--requests", type=int, default=2, help="cpu-encode: captions encoded (each both ways)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4, help="gpu: denoising steps per measured generation (peak memory does not depend on them)")
    parser.add_argument("--scratch", default=None, help="gpu: where the random checkpoints are written for the nf4 run")
    args = parser.parse_args()
    result = {"weights": weights, "cpu-encode": cpu_encode, "gpu": gpu}[args.what](args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
