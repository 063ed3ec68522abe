"""Where a model is: a shipped model's name, a local path, or a hub repository id.

The shipped models are named here and nowhere else: `--mllm mini`, `--lightcontrol mini`,
`X2IPipeline.from_pretrained("mini", "mini", "mini")`. Their weights are files inside the package,
so the core never imports the mini world's code to find them.

    mini    the mini world's MLLM, FLUX (the teacher, with its T5/CLIP), AlignNet, LightControl and
            LoRA (docs/mini-world.md); the commands' default when no model is named
"""

from __future__ import annotations

import re
from pathlib import Path

from x2i.errors import X2IError

_WEIGHTS = Path(__file__).parents[1] / "mini" / "weights"
PARTS = {"mllm": "MLLM", "flux": "FLUX", "alignnet": "AlignNet", "lightcontrol": "LightControl", "lora": "LoRA"}
SHIPPED = {
    "mini": {"mllm": _WEIGHTS / "mllm", "flux": _WEIGHTS / "teacher", "alignnet": _WEIGHTS / "alignnet",
             "lightcontrol": _WEIGHTS / "lightcontrol", "lora": _WEIGHTS / "lora"},
}
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
        return str(location)
    raise X2IError(f"{name} {location} does not exist (give a local directory, a hub id like org/name, or {' / '.join(SHIPPED)})")


def unreachable(part: str, repo_id: str, error: Exception) -> X2IError:
    """The one message for a hub model that cannot be had here."""
    return X2IError(f"cannot get {PARTS[part]} {repo_id} from the hub ({type(error).__name__}); download it and pass its directory")
