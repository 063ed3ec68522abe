"""Where a model is: a shipped model's name, a local path, or a hub repository id.

The shipped models are named here and nowhere else: `--mllm mini`, `--lightcontrol mini`,
`X2IPipeline.from_pretrained("mini", "mini", "mini")`. Their weights are files inside the package,
so the core never imports the mini world's code to find them.

    mini          the mini world's MLLM, FLUX (the teacher, with its T5/CLIP), AlignNet, LightControl
                  and edit LoRA (docs/mini-world.md); the commands' default when no model is named
    mini-omni     the mini world's Qwen2.5-Omni: the mini MLLM given ears (`--mllm mini-omni --audio
                  said.wav`), and the AlignNet distilled on it (its language model learned to listen)
    mini-fewstep  a 4-step FLUX distilled from the mini teacher on T5/CLIP alone: the teacher with a
                  reflow LoRA fused in as it loads (`--flux mini-fewstep`; docs/transfer.md)
    mini-style    a style LoRA trained on the mini teacher with T5/CLIP alone, as community FLUX
                  LoRAs are (`--flux-lora mini-style`: shapes drawn squat)
"""

from __future__ import annotations

import functools
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlsplit

from x2i.errors import X2IError

_WEIGHTS = Path(__file__).parents[1] / "mini" / "weights"
PARTS = {"mllm": "MLLM", "flux": "FLUX", "alignnet": "AlignNet", "lightcontrol": "LightControl", "lora": "LoRA"}
SHIPPED = {
    "mini": {"mllm": _WEIGHTS / "mllm", "flux": _WEIGHTS / "teacher", "alignnet": _WEIGHTS / "alignnet",
             "lightcontrol": _WEIGHTS / "lightcontrol", "lora": _WEIGHTS / "lora"},
    "mini-omni": {"mllm": _WEIGHTS / "omni", "alignnet": _WEIGHTS / "omni-alignnet"},
    # A derivative shipped as its base and the LoRA that makes it, fused in when it loads.
    "mini-fewstep": {"flux": _WEIGHTS / "teacher", "fused_lora": _WEIGHTS / "fewstep"},
    "mini-style": {"lora": _WEIGHTS / "style"},
}
# The denoising steps each shipped FLUX is measured at (every mini score: 20); any other FLUX gets
# FLUX.1-dev's usual 28 unless told (schnell-like models: --steps 4).
MEASURED_STEPS = {"mini": 20, "mini-fewstep": 4}
DEFAULT_STEPS = 28
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def locate(location: str | Path, part: str) -> Path | str:
    """The shipped model named `location` (its `part`: "mllm", "flux", ...), an existing local path
    as a Path, or a hub id ("org/name") as a str; anything else is an error."""
    name = PARTS[part]
    if str(location) in SHIPPED:
        path = SHIPPED[str(location)].get(part)
        if path is None:
            raise X2IError(f"the shipped {location} models have no {name}")
        if not path.is_dir():
            raise X2IError(f"the {location} {name} is not in this installation ({path}); reinstall x2i, or rebuild it (docs/mini-world.md)")
        return path
    if Path(location).exists():
        return Path(location)
    if HUB_ID.match(str(location)) and not str(location).startswith("."):
        return hub_or_cache(str(location), part)
    shipped = " / ".join(k for k, parts in SHIPPED.items() if part in parts)
    raise X2IError(f"{name} {location} does not exist (give a local directory, a hub id like org/name, or {shipped})")


def alignnet_for(mllm: str | Path) -> str:
    """The AlignNet a command uses when none is named: a shipped MLLM's own (`mini-omni` has its
    own language model, so its own AlignNet), else the mini one."""
    return str(mllm) if "alignnet" in SHIPPED.get(str(mllm), {}) else "mini"


def fused_lora(flux: str | Path) -> Path | None:
    """The LoRA a shipped derivative FLUX fuses into its base as it loads, if it is one."""
    return SHIPPED.get(str(flux), {}).get("fused_lora")


def default_steps(flux: str | Path) -> int:
    """The steps a generation takes unless told: a shipped FLUX's own, else FLUX.1-dev's 28."""
    return MEASURED_STEPS.get(str(flux), DEFAULT_STEPS)


def hub_or_cache(repo_id: str, part: str) -> Path | str:
    """The hub id itself where the hub answers. Where it cannot be reached (no network, or
    HF_HUB_OFFLINE), its copy in the local hub cache, or one line at once: the libraries would
    retry each file for half a minute first."""
    from huggingface_hub import constants, snapshot_download

    if hub_reachable():
        return repo_id
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (OSError, ValueError) as e:
        why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else f"{constants.ENDPOINT} cannot be reached"
        raise X2IError(f"{PARTS[part]} {repo_id} is not in the local hub cache and {why}: download it where the hub "
                       "is reachable and pass its directory") from e


@functools.cache
def hub_reachable() -> bool:
    """One connection to the hub's host (the endpoint the user set, if any), at most once a process."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # only the proxy knows: let the libraries try through it
    url = urlsplit(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=5).close()
        return True
    except OSError:
        return False


def unreachable(part: str, repo_id: str, error: Exception) -> X2IError:
    """The one message for a hub model that cannot be had here."""
    return X2IError(f"cannot get {PARTS[part]} {repo_id} from the hub ({type(error).__name__}); download it and pass its directory")
