"""A whole X2I pipeline in one folder: `X2IPipeline.save_pretrained(DIR)`, then
`X2IPipeline.from_pretrained(DIR)` or `x2i generate --pipeline DIR`.

    DIR/x2i_pipeline.json   where the MLLM and FLUX are (hub ids, paths, or "mini"; with copy=True
                            DIR/mllm and DIR/flux, copies of their files), the conditioning road, the
                            padding, the LoRA's scale
    DIR/alignnet/           AlignNet, with the card of how it was made
    DIR/lightcontrol/       the LightControl branch, when one is attached
    DIR/lora/               the edit LoRA, when one is loaded (a hub id stays a hub id)
    DIR/flux-lora-K/        each community FLUX LoRA, with its strength in the file
    DIR/README.md           the model card (x2i.inference.model_card)

The folder is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from x2i.errors import X2IError
from x2i.inference.locations import SHIPPED, locate
from x2i.inference.model_card import pipeline_card
from x2i.media.files import atomic_directory, write_text

FILE = "x2i_pipeline.json"
LORA_FILE = "pytorch_lora_weights.safetensors"


def save_pipeline(pipe, directory: str | Path, copy: bool = False, scores: dict | None = None) -> Path:
    """Write `pipe` (an X2IPipeline) to `directory`; `scores`: an `x2i eval --json` report for its card."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise X2IError(f"cannot save a pipeline to {directory}: it is a file; name a folder")
    if pipe.offload is not None:
        raise X2IError("save the pipeline before turning on offload (its weights are then spread over devices)")
    sources = pipe.sources
    if not (sources.get("mllm") and sources.get("flux")):
        raise X2IError("this pipeline was not made by X2IPipeline.from_pretrained, so where its MLLM and FLUX live is unknown")
    with atomic_directory(directory) as tmp:
        pipe.alignnet.save_pretrained(tmp / "alignnet")
        parts = {"mllm": _where(sources.get("mllm")), "flux": _where(sources.get("flux")), "alignnet": "alignnet",
                 "lightcontrol": None, "lora": None, "lora_scale": sources.get("lora_scale", 1.0),
                 "condition_on": pipe.condition_on, "pad_to": pipe.pad_to or 0}
        if copy:
            for part in ("mllm", "flux"):
                _copy_model(sources[part], part, tmp / part)
            parts.update(mllm="mllm", flux="flux")
        if pipe.lightcontrol is not None:
            pipe.lightcontrol.save_pretrained(tmp / "lightcontrol")
            parts["lightcontrol"] = "lightcontrol"
        if sources.get("lora"):
            parts["lora"] = _copy_lora(sources["lora"], tmp / "lora")
        parts["flux_loras"] = [[_copy_lora(path, tmp / f"flux-lora-{k}"), scale] for k, (path, scale) in enumerate(sources.get("flux_loras", []))]
        write_text(tmp / FILE, json.dumps(parts, indent=1) + "\n")
        pipeline_card(parts, pipe.alignnet.card, scores).save(tmp / "README.md")
    return directory


def read_saved_pipeline(directory: str | Path) -> dict:
    """The parts and settings of a saved pipeline, its own folders resolved to paths."""
    directory = Path(directory)
    if not (directory / FILE).is_file():
        raise X2IError(f"{directory} is not a saved X2I pipeline (it has no {FILE}; X2IPipeline.save_pretrained writes one)")
    try:
        parts = json.loads((directory / FILE).read_text(encoding="utf-8"))
        for key in ("mllm", "flux", "alignnet", "lightcontrol", "lora"):
            if parts[key] is not None and (directory / parts[key]).exists():
                parts[key] = str(directory / parts[key])
        parts["flux_loras"] = [(str(directory / p) if (directory / p).exists() else p, float(scale)) for p, scale in parts.get("flux_loras", [])]
        parts["lora_scale"], parts["condition_on"], parts["pad_to"] = float(parts["lora_scale"]), str(parts["condition_on"]), int(parts["pad_to"])
    except (ValueError, KeyError, TypeError) as e:
        raise X2IError(f"{directory / FILE} is not a readable pipeline file ({e!r}); save the pipeline again") from e
    return parts


def _where(location) -> str | None:
    """How a part is named in the file: a shipped name or hub id as it is, a local path made absolute."""
    if location is None or str(location) in SHIPPED or not Path(location).exists():
        return None if location is None else str(location)
    return str(Path(location).resolve())


def _copy_model(location, part: str, folder: Path) -> None:
    """The model's own files as they were loaded (a hub model's from the local hub cache)."""
    from huggingface_hub import snapshot_download

    found = locate(location, part)
    shutil.copytree(Path(snapshot_download(found, local_files_only=True)) if isinstance(found, str) else found, folder)


def _copy_lora(location, folder: Path) -> str:
    found = locate(location, "lora")
    if isinstance(found, str):
        return found  # a hub id: named, not copied
    if found.is_dir():  # diffusers' name, or the one weights file of a folder (as diffusers guesses it)
        found = found / LORA_FILE if (found / LORA_FILE).is_file() else min(found.glob("*.safetensors"))
    folder.mkdir()
    shutil.copyfile(found, folder / LORA_FILE)
    return folder.name
