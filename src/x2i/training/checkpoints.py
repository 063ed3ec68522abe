"""Training checkpoints: written atomically, read back exactly, old ones pruned. No pickles.

A checkpoint is a directory `step-000500/` holding
    alignnet/ (or lightcontrol/, lora/)
                               what is being trained, saved as users load it (`Trained.save`)
    optimizer.safetensors      every tensor of the optimizer state (AdamW or 8-bit AdamW)
    state.json                 step, data position, the optimizer's other values, the LR schedule,
                               Python's RNG state
    rng.safetensors            torch's CPU (and CUDA) RNG states
It is written under a temporary name and renamed into place, so a run killed mid-write leaves
either the previous checkpoints or a complete new one, never a half-written one.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from diffusers import FluxPipeline, ModelMixin
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from x2i.errors import X2IError
from x2i.inference.lora import read_lora
from x2i.media.files import atomic_directory

PATTERN = re.compile(r"^step-(\d+)$")


class Trained(Protocol):
    """What a run trains, as checkpoints see it: saved under `name` in the form users load, and
    restored in place (one clear error when a checkpoint was made with other settings)."""

    name: str

    def save(self, directory: Path) -> None: ...

    def load(self, directory: Path) -> None: ...


@dataclass
class TrainedModel:
    """A diffusers model (AlignNet, LightControl) trained whole: `save_pretrained` / `from_pretrained`."""

    name: str
    model: ModelMixin

    def save(self, directory: Path) -> None:
        self.model.save_pretrained(directory)

    def load(self, directory: Path) -> None:
        trained = type(self.model).from_pretrained(directory)
        if _settings(trained) != _settings(self.model):
            raise X2IError(f"its {self.name} ({_settings(trained)}) differs from this run's ({_settings(self.model)})")
        self.model.load_state_dict(trained.state_dict())


@dataclass
class LoraWeights:
    """The adapters of a transformer being trained, as checkpoints see them (`Trained`), saved as diffusers saves LoRAs."""

    transformer: torch.nn.Module
    name: str = "lora"

    def state_dict(self) -> dict[str, torch.Tensor]:
        from peft.utils import get_peft_model_state_dict

        return get_peft_model_state_dict(self.transformer)

    def save(self, directory: Path) -> None:
        FluxPipeline.save_lora_weights(directory, transformer_lora_layers=self.state_dict(),
                                       transformer_lora_adapter_metadata=self.transformer.peft_config["default"].to_dict())

    def load(self, directory: Path) -> None:
        from peft.utils import set_peft_model_state_dict

        saved = {k.removeprefix("transformer."): v for k, v in read_lora(directory).items()}
        mine = self.state_dict()
        if {k: tuple(v.shape) for k, v in saved.items()} != {k: tuple(v.shape) for k, v in mine.items()}:
            raise X2IError(f"the LoRA in {directory} has other layers or ranks than this run's")
        set_peft_model_state_dict(self.transformer, saved)


def save_checkpoint(directory: Path, step: int, trained: Trained, optimizer, scheduler, extra: dict, keep: int) -> Path:
    final = directory / f"step-{step:06d}"
    with atomic_directory(final) as tmp:
        trained.save(tmp / trained.name)
        tensors, plain = _split_optimizer_state(optimizer.state_dict())
        save_file(tensors, tmp / "optimizer.safetensors")
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
        save_file(rng, tmp / "rng.safetensors")
        state = {"step": step, "optimizer": plain, "scheduler": scheduler.state_dict(), "python_rng": random.getstate(), **extra}
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
    prune(directory, keep)
    return final


def latest_checkpoint(directory: Path) -> Path | None:
    steps = _checkpoints(directory)
    return steps[-1] if steps else None


def load_checkpoint(path: Path, trained: Trained, optimizer, scheduler) -> dict:
    """Restore everything in place; returns the state.json contents (step, data position, ...).
    A checkpoint that is cut short or belongs to another run is one line, not a traceback."""
    try:
        state = json.loads((path / "state.json").read_text())
        tensors = load_file(path / "optimizer.safetensors")
        rng = load_file(path / "rng.safetensors")
        trained.load(path / trained.name)
        optimizer.load_state_dict(_join_optimizer_state(tensors, state["optimizer"]))
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(rng["torch"])
        if torch.cuda.is_available() and "cuda.0" in rng:
            torch.cuda.set_rng_state_all([rng[f"cuda.{i}"] for i in range(torch.cuda.device_count()) if f"cuda.{i}" in rng])
        version, internal, gauss = state["python_rng"]
        random.setstate((version, tuple(internal), gauss))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError, X2IError) as e:
        raise X2IError(f"cannot resume from {path} ({e}): delete that checkpoint to resume from the one before it, "
                       "or start again with --overwrite") from e
    return state


def _settings(model: ModelMixin) -> dict:
    """The model's config as config.json holds it (tuples read back as lists)."""
    return json.loads(json.dumps({k: v for k, v in model.config.items() if not k.startswith("_")}))


def prune(directory: Path, keep: int) -> None:
    """Keep the newest `keep` checkpoints (all when keep <= 0)."""
    if keep > 0:
        for old in _checkpoints(directory)[:-keep]:
            shutil.rmtree(old)


def _checkpoints(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := PATTERN.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def _split_optimizer_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors to one safetensors file; everything else (hyper-parameters, step counts) to JSON."""
    tensors, plain = {}, {"state": {}, "param_groups": state["param_groups"]}
    for index, values in state["state"].items():
        plain["state"][str(index)] = {}
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain["state"][str(index)][name] = value
    return tensors, plain


def _join_optimizer_state(tensors: dict[str, torch.Tensor], plain: dict) -> dict:
    state = {int(i): dict(values) for i, values in plain["state"].items()}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": plain["param_groups"]}
