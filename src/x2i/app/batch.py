"""Many requests from one file: `x2i generate --requests FILE.jsonl --out DIR`.

One JSON object per line: `prompt`, `image` / `audio` / `video` (a path or a list of paths,
relative to the file), `seed`, `height`, `width`, `steps`, `guidance`, `condition_on`,
`num_images`; what a line leaves out comes from the command line. The file is checked whole
before any model loads (bad lines named by number). Requests with the same settings are denoised
together; each image is written under a temporary name and renamed, then its request gets a line in
`DIR/index.jsonl` (`line`, `request`, `images`, `seconds`, `process`). A second run skips the lines already
there, so a crash loses at most the requests in flight.

Under `accelerate launch` (or torchrun) each process takes every N-th request still to do, keeps
its own `index.part-R.jsonl`, and the main process merges them into `index.jsonl` at the end.
`--layout geneval` writes GenEval's folders (`00000/metadata.jsonl`, `00000/samples/0000.png`)
from its `evaluation_metadata.jsonl`, which its scorer reads unchanged; `--teacher` runs FLUX with
its own T5/CLIP over the same file and the same noise, for an A/B on any benchmark.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from x2i.errors import X2IError
from x2i.media.files import write_text

LAYOUTS = ("plain", "geneval")
MEDIA = ("image", "audio", "video")
SETTINGS = ("seed", "height", "width", "steps", "guidance", "condition_on", "num_images")
# A GenEval metadata line also holds the scorer's own keys.
GENEVAL_KEYS = ("tag", "include", "exclude")


@dataclass
class LineRequest:
    line: int  # its line number in the file, from 1
    record: dict  # the line as written: the manifest and GenEval's metadata.jsonl keep it
    prompt: str
    media: list[tuple[str, Path]]  # (kind, path) in the order written
    settings: dict  # SETTINGS, each from the line or the command line

    def batch_key(self) -> tuple:
        """Requests with equal keys are denoised in one call."""
        return tuple(self.settings[k] for k in ("height", "width", "steps", "guidance", "condition_on", "num_images"))


def read_requests(path: Path, defaults: dict, layout: str, teacher: bool, max_steps: int, max_images: int,
                  needs_image: bool = False) -> list[LineRequest]:
    """Every line of the requests file, checked; one error naming every bad line (the first ten)."""
    from x2i.training.data import read_text

    path = Path(path)
    if not path.is_file():
        raise X2IError(f"requests file {path} {'is a directory' if path.is_dir() else 'does not exist'}: give a .jsonl file")
    requests, errors = [], []
    for number, text in enumerate(read_text(path).splitlines(), start=1):
        if not text.strip():
            continue
        try:
            requests.append(_read_line(number, text, path.parent, defaults, layout, teacher, max_steps, max_images, needs_image))
        except (TypeError, ValueError) as e:
            errors.append(f"line {number}: {e}")
    if errors:
        raise X2IError(f"{path}: {_first_ten(errors)}")
    if not requests:
        raise X2IError(f"{path} holds no requests: one JSON object per line, e.g. {{\"prompt\": \"a red circle\"}}")
    return requests


def _read_line(number, text, folder, defaults, layout, teacher, max_steps, max_images, needs_image) -> LineRequest:
    from x2i.inference.request import CONDITION_ON

    try:
        record = json.loads(text)
    except ValueError as e:
        raise ValueError(f"not JSON ({e})") from e
    if not isinstance(record, dict):
        raise TypeError("not a JSON object")
    known = ("prompt", *MEDIA, *SETTINGS, *(GENEVAL_KEYS if layout == "geneval" else ()))
    if unknown := sorted(set(record) - set(known)):
        hint = "; a GenEval metadata file takes --layout geneval" if unknown[0] in GENEVAL_KEYS else ""
        raise ValueError(f"unknown key {unknown[0]!r} (known: {', '.join(known)}{hint})")
    prompt = record.get("prompt", "")
    if not isinstance(prompt, str):
        raise TypeError("'prompt' is not text")
    media = []
    for kind in MEDIA:
        paths = record.get(kind, [])
        paths = [paths] if isinstance(paths, str) else paths
        if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
            raise ValueError(f"'{kind}' is not a path or a list of paths")
        for p in paths:
            if not (folder / p).is_file():
                raise ValueError(f"{kind} {p} {'is a directory' if (folder / p).is_dir() else 'does not exist'} (paths are relative to the file)")
            media.append((kind, folder / p))
    if teacher and media:
        raise ValueError("the teacher (FLUX with T5/CLIP) reads text only")
    if needs_image and not any(kind == "image" for kind, _ in media):
        raise ValueError("--lightcontrol keeps an edit faithful to its source image, and this request has none")
    if not prompt.strip() and not media:
        raise ValueError("an empty request: give a prompt, or an image, sound or clip")
    settings = {k: record.get(k, defaults[k]) for k in SETTINGS}
    bounds = {"seed": (0, 2**64 - 1), "steps": (1, max_steps), "num_images": (1, max_images), "height": (1, None), "width": (1, None)}
    for key, (low, high) in bounds.items():
        value = settings[key]
        if value is None and key in ("height", "width"):
            continue  # the size FLUX was made for
        if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
            raise ValueError(f"'{key}' must be a whole number from {low}" + (f" to {high}" if high is not None else ""))
    guidance = settings["guidance"]
    if not isinstance(guidance, (int, float)) or isinstance(guidance, bool) or not math.isfinite(guidance):
        raise ValueError("'guidance' must be a finite number")
    if settings["condition_on"] not in CONDITION_ON:
        raise ValueError(f"'condition_on' must be one of {', '.join(CONDITION_ON)}")
    return LineRequest(number, record, prompt, media, settings)


def image_paths(request: LineRequest, layout: str) -> list[str]:
    """Where a request's images go, relative to DIR."""
    n = request.settings["num_images"]
    if layout == "geneval":
        return [f"{request.line - 1:05d}/samples/{k:04d}.png" for k in range(n)]
    return [f"{request.line:05d}-{k}.png" for k in range(n)]


def read_manifest(out: Path, requests: list[LineRequest]) -> set[int]:
    """The lines already done (in index.jsonl or a process's part, with every image on disk); a
    DIR made from another requests file is refused."""
    by_line = {r.line: r for r in requests}
    done = set()
    for entry in _manifest_entries(out):
        request = by_line.get(entry.get("line"))
        if request is None or entry.get("request") != request.record:
            raise X2IError(f"{out} holds the results of other requests (line {entry.get('line')} differs): give another --out")
        if all((out / p).is_file() for p in entry["images"]):
            done.add(request.line)
    return done


def merge_manifest(out: Path) -> int:
    """The parts and the earlier index as one index.jsonl, a line per request in file order."""
    parts = sorted(out.glob("index.part-*.jsonl"))
    entries = {entry["line"]: entry for entry in _manifest_entries(out)}
    write_text(out / "index.jsonl", "".join(json.dumps(entries[k], ensure_ascii=False) + "\n" for k in sorted(entries)))
    for part in parts:
        part.unlink()
    return len(entries)


def _manifest_entries(out: Path):
    """Every whole line of index.jsonl, then of each process's part (a line cut by a crash is
    skipped: its request is made again)."""
    for manifest in [out / "index.jsonl", *sorted(out.glob("index.part-*.jsonl"))]:
        if manifest.is_file():
            for text in manifest.read_text(encoding="utf-8").splitlines():
                try:
                    yield json.loads(text)
                except ValueError:
                    continue


def batches(requests: list[LineRequest], images_per_call: int) -> list[list[LineRequest]]:
    """Consecutive requests with equal settings, up to `images_per_call` images a call."""
    groups: list[list[LineRequest]] = []
    for r in requests:
        last = groups[-1] if groups else None
        n = r.settings["num_images"]
        if last and last[0].batch_key() == r.batch_key() and (len(last) + 1) * n <= max(images_per_call, n):
            last.append(r)
        else:
            groups.append([r])
    return groups


def run_requests(args, load_pipeline) -> None:
    """`x2i generate --requests`: this process's share of the requests still to do."""
    from accelerate import PartialState
    from tqdm.auto import tqdm

    from x2i.app.arguments import flux_lora_pairs
    from x2i.inference.loaders import default_size, device_and_dtype, load_flux
    from x2i.inference.lora import load_flux_loras
    from x2i.inference.work_bounds import MAX_IMAGES, MAX_STEPS
    from x2i.media import check_image_path

    if args.prompt or args.media:
        raise X2IError("--requests holds the prompts and inputs: leave out --prompt, --image, --audio and --video")
    if args.layout not in LAYOUTS:
        raise X2IError(f"--layout must be one of {', '.join(LAYOUTS)}")
    if args.out is None:
        raise X2IError("--requests writes a folder of images and index.jsonl: give it with --out DIR")
    if args.teacher and (args.lightcontrol or args.lora):
        raise X2IError("--teacher runs FLUX with its own T5/CLIP; --lightcontrol and --lora are X2I's edit parts: leave them out")
    out = Path(args.out)
    if out.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp") or (out.exists() and not out.is_dir()):
        raise X2IError(f"with --requests, --out is a directory for the images and index.jsonl, not {out}")
    check_image_path(out / "00000" / "samples" / "0000.png")
    defaults = {"seed": args.seed, "height": args.height, "width": args.width, "steps": args.steps, "guidance": args.guidance,
                "condition_on": args.condition_on, "num_images": args.num_images}
    requests = read_requests(args.requests, defaults, args.layout, args.teacher, args.max_steps or MAX_STEPS, args.max_images or MAX_IMAGES,
                             needs_image=bool(args.lightcontrol) and not args.teacher)

    state = PartialState(cpu=not torch.cuda.is_available())
    done = read_manifest(out, requests) if out.is_dir() else set()
    state.wait_for_everyone()  # every process has read what is done before any writes
    mine = [r for r in requests if r.line not in done][state.process_index :: state.num_processes]
    device, dtype = device_and_dtype(args.device, args.dtype)
    if state.num_processes > 1 and args.device == "auto":
        device = state.device  # one GPU per process

    if args.teacher:
        flux = load_flux(args.flux, dtype, text_encoders=True).to(device)
        load_flux_loras(flux, flux_lora_pairs(args))  # a community LoRA adapts the teacher as it adapts X2I
        flux.set_progress_bar_config(disable=True)
        size = default_size(flux)
    else:
        pipe = load_pipeline(args, device=device, alignnet_preset=args.alignnet_preset)
        pipe.encoder.video_fps, pipe.encoder.max_video_frames = args.video_fps, args.max_frames
        flux, size = pipe.flux, pipe.default_size
    for r in requests:  # checked against the loaded models, still before any generation
        r.settings["height"], r.settings["width"] = r.settings["height"] or size, r.settings["width"] or size
    _check_against_models(requests, flux, None if args.teacher else pipe)

    out.mkdir(parents=True, exist_ok=True)
    failed = []
    bar = tqdm(total=len(mine), desc="requests", unit="request", disable=not state.is_main_process)
    with open(out / f"index.part-{state.process_index}.jsonl", "a", encoding="utf-8") as manifest:
        for batch in batches(mine, args.batch_size or 8):
            start = time.time()
            try:
                images = make_images(batch, flux if args.teacher else pipe, args, device)
            except X2IError as e:  # e.g. an input that cannot be decoded: the other requests go on
                failed += [r.line for r in batch]
                tqdm.write(f"x2i: lines {', '.join(str(r.line) for r in batch)} failed: {e}")
            else:
                n, seconds = batch[0].settings["num_images"], (time.time() - start) / len(batch)
                for i, r in enumerate(batch):
                    paths = write_images(out, args.layout, r, images[i * n : (i + 1) * n])
                    entry = {"line": r.line, "request": r.record, "images": paths, "seconds": round(seconds, 3), "process": state.process_index}
                    manifest.write(json.dumps(entry, ensure_ascii=False) + "\n")
                    manifest.flush()
                    os.fsync(manifest.fileno())  # the line is on disk before the next batch starts
            bar.update(len(batch))
    bar.close()
    state.wait_for_everyone()
    if state.is_main_process:
        total = merge_manifest(out)
        print(f"{total} of {len(requests)} requests done in {out / 'index.jsonl'} ({len(done)} were done before)")
    if failed:
        raise X2IError(f"{len(failed)} requests failed (lines {', '.join(map(str, failed[:10]))}): see above; run again to retry them")


def make_images(batch: list[LineRequest], model, args, device: torch.device) -> list:
    """One call for the batch (equal settings): X2I, or the teacher FLUX with its T5/CLIP; every
    image with its own generator (seed + k) on `device`, the same noise for both."""
    from x2i.inference.pipeline import X2IPipeline
    from x2i.inference.request import Request
    from x2i.media import open_input

    s, n = batch[0].settings, batch[0].settings["num_images"]
    generators = [torch.Generator(device).manual_seed((r.settings["seed"] + k) % 2**64) for r in batch for k in range(n)]
    common = {"height": s["height"], "width": s["width"], "num_inference_steps": s["steps"], "guidance_scale": s["guidance"],
              "num_images_per_prompt": n, "generator": generators}
    if isinstance(model, X2IPipeline):
        inputs = [Request(r.prompt, [open_input(p, kind) for kind, p in r.media]) for r in batch]
        return model(inputs, condition_on=s["condition_on"], show_progress=False, batch_size=args.batch_size,
                     lightcontrol_scale=args.lightcontrol_scale, **common)
    return model(prompt=[r.prompt for r in batch], max_sequence_length=min(512, model.tokenizer_2.model_max_length), **common).images


def write_images(out: Path, layout: str, request: LineRequest, images: list) -> list[str]:
    """A request's images under their names (and GenEval's metadata and grid); the paths, relative to `out`."""
    from x2i.media import make_grid, save_image

    paths = image_paths(request, layout)
    for path, image in zip(paths, images):
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        save_image(image, out / path)
    if layout == "geneval":
        folder = out / paths[0].split("/")[0]
        write_text(folder / "metadata.jsonl", json.dumps(request.record))
        if len(images) > 1:
            save_image(make_grid(images), folder / "grid.png")
    return paths


def _check_against_models(requests: list[LineRequest], flux, pipe) -> None:
    """Sizes FLUX cannot make and prompts longer than the model reads, by line, before any generation."""
    from x2i.inference.loaders import check_size

    errors = []
    for r in requests:
        try:
            check_size(flux, r.settings["height"], r.settings["width"])
            if pipe is not None:
                pipe.check_text(r.prompt)
        except X2IError as e:
            errors.append(f"line {r.line}: {e}")
    if errors:
        raise X2IError(_first_ten(errors))


def _first_ten(errors: list[str]) -> str:
    return "; ".join(errors[:10]) + (f"; and {len(errors) - 10} more" if len(errors) > 10 else "")
