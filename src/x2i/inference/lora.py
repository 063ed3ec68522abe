"""Loading FLUX LoRAs into a FLUX pipeline (X2I's, or the teacher's), each checked against the FLUX it
will adapt: the edit LoRA (`x2i lora train`, adapter "x2i") and any community FLUX LoRA (`--flux-lora`,
adapters "flux-lora-0", ...), in the formats diffusers' `FluxPipeline.load_lora_weights` reads
(diffusers, kohya, xlabs: converted by `FluxPipeline.lora_state_dict`). Every loaded LoRA stays
active at its own strength. Training adapters is `x2i.training.edit_training`'s; it saves them with
`FluxPipeline.save_lora_weights`, so diffusers' own loader reads them too.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import FluxPipeline
from safetensors import SafetensorError

from x2i.errors import X2IError
from x2i.inference.locations import locate

ADAPTER = "x2i"  # the edit LoRA's adapter name


def read_lora(path: str | Path) -> dict[str, torch.Tensor]:
    """A diffusers LoRA file or directory, with one clear error when it is missing or corrupt."""
    path = Path(path)
    if not path.exists():
        raise X2IError(f"LoRA {path} does not exist")
    try:
        return FluxPipeline.lora_state_dict(str(path))
    except (OSError, ValueError, SafetensorError) as e:
        raise X2IError(f"cannot read a LoRA from {path}: {str(e).splitlines()[0]}") from e


def load_lora(flux: FluxPipeline, path: str | Path, scale: float = 1.0, adapter: str = ADAPTER) -> None:
    """Load a LoRA made for this FLUX into the pipeline as `adapter` at `scale`, beside those already
    loaded; one clear line when it was made for another FLUX (other layers or widths). 'mini' names
    the shipped mini edit LoRA."""
    path = locate(path, "lora")
    state = read_lora(path)
    transformer = flux.transformer
    modules = dict(transformer.named_modules())
    for key, tensor in state.items():
        module_name = key.removeprefix("transformer.").split(".lora_")[0]
        layer = modules.get(module_name)
        layer = getattr(layer, "base_layer", layer)  # a layer another LoRA already adapts
        if not isinstance(layer, torch.nn.Linear):
            raise X2IError(f"the LoRA {path} adapts {module_name}, which this FLUX does not have: use the LoRA made for this FLUX")
        wanted = layer.in_features if ".lora_A." in key else layer.out_features
        if tensor.shape[1 if ".lora_A." in key else 0] != wanted:
            raise X2IError(f"the LoRA {path} was made for a FLUX of another width ({module_name}): use the LoRA made for this FLUX")
    if adapter in getattr(transformer, "peft_config", {}):
        flux.delete_adapters(adapter)
    flux.load_lora_weights(state, adapter_name=adapter)
    set_lora_scale(flux, scale, adapter)


def set_lora_scale(flux: FluxPipeline, scale: float, adapter: str = ADAPTER) -> None:
    """One LoRA's strength (0: off); the others keep theirs (diffusers' set_adapters takes them all)."""
    scales = {**(getattr(flux, "x2i_lora_scales", None) or {}), adapter: scale}
    flux.x2i_lora_scales = scales
    flux.set_adapters(list(scales), adapter_weights=list(scales.values()))


def flux_lora_adapter(k: int) -> str:
    """The adapter name of the k-th community FLUX LoRA loaded (from 0)."""
    return f"flux-lora-{k}"


def load_flux_loras(flux: FluxPipeline, loras) -> None:
    """Community FLUX LoRAs, `[(path, scale), ...]`, as adapters flux-lora-0, flux-lora-1, ..."""
    for k, (path, scale) in enumerate(loras):
        load_lora(flux, path, scale, adapter=flux_lora_adapter(k))
