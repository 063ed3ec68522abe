"""Loading a FLUX LoRA (diffusers' format, from `x2i lora train` or any trainer) into the pipeline,
checked against the FLUX it will adapt. Training adapters is `x2i.training.edit_training`'s; it
saves them with `FluxPipeline.save_lora_weights`, so diffusers' own loader reads them too.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import FluxPipeline
from safetensors import SafetensorError

from x2i.errors import X2IError
from x2i.inference.locations import locate

ADAPTER = "x2i"


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
    path = locate(path, "lora")
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
    set_lora_scale(flux, scale)


def set_lora_scale(flux: FluxPipeline, scale: float) -> None:
    """The strength of the loaded LoRA (0: off)."""
    flux.set_adapters([ADAPTER], adapter_weights=[scale])
