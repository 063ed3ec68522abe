"""LoRA adapters on the FLUX transformer's attention, on peft, saved as diffusers saves them.

`add_lora` puts adapters on every attention projection of FLUX's double and single blocks (image
and text streams), as diffusers' FLUX LoRA trainers do. `LoraWeights` saves them with
`FluxPipeline.save_lora_weights` (`pytorch_lora_weights.safetensors`, the LoRA config in its
metadata), so `FluxPipeline.load_lora_weights` — ours, diffusers' own, or any tool that reads
diffusers LoRAs — loads the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import FluxPipeline
from safetensors import SafetensorError

from x2i.errors import X2IError

ATTENTION = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]
ADAPTER = "x2i"


def add_lora(transformer, rank: int, alpha: float | None = None) -> None:
    """Trainable adapters of `rank` on FLUX's attention; everything else stays frozen."""
    from peft import LoraConfig

    transformer.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian", target_modules=ATTENTION)
    transformer.add_adapter(config)


@dataclass
class LoraWeights:
    """The adapters of a transformer being trained, as checkpoints see them (`checkpoint.Trained`)."""

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


def read_lora(path: str | Path) -> dict[str, torch.Tensor]:
    """A diffusers LoRA file or directory, with one clear error when it is missing or corrupt."""
    path = Path(path)
    if not path.exists():
        raise X2IError(f"LoRA {path} does not exist")
    try:
        return FluxPipeline.lora_state_dict(str(path))
    except (OSError, ValueError, SafetensorError) as e:
        raise X2IError(f"cannot read a LoRA from {path}: {str(e).splitlines()[0]}") from e


def load_lora(flux: FluxPipeline, path: str | Path, scale: float = 1.0) -> None:
    """Load a LoRA made for this FLUX into the pipeline at `scale`; one clear line when it was made
    for another FLUX (other layers or widths). The word 'mini' names the shipped mini LoRA."""
    from x2i.mini import resolve_shipped

    path = resolve_shipped(path, "lora")
    state = read_lora(path)
    transformer = flux.transformer
    modules = dict(transformer.named_modules())
    for key, tensor in state.items():
        module_name = key.removeprefix("transformer.").split(".lora_")[0]
        layer = modules.get(module_name)
        if not isinstance(layer, torch.nn.Linear):
            raise X2IError(f"the LoRA {path} adapts {module_name}, which this FLUX does not have: use the LoRA made for this FLUX")
        wanted = layer.in_features if ".lora_A." in key else layer.out_features
        if tensor.shape[1 if ".lora_A." in key else 0] != wanted:
            raise X2IError(f"the LoRA {path} was made for a FLUX of another width ({module_name}): use the LoRA made for this FLUX")
    if ADAPTER in getattr(transformer, "peft_config", {}):
        flux.delete_adapters(ADAPTER)
    flux.load_lora_weights(state, adapter_name=ADAPTER)
    flux.set_adapters([ADAPTER], adapter_weights=[scale])
