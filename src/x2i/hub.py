"""Model locations: a local directory, or a hub repository id for users who have the hub."""

from __future__ import annotations

import re
from pathlib import Path

from x2i.errors import X2IError

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def resolve(location: str | Path, what: str) -> Path | str:
    """An existing local path as a Path, a hub id ("org/name") as a str; anything else is an error."""
    if Path(location).exists():
        return Path(location)
    if HUB_ID.match(str(location)) and not str(location).startswith("."):
        return str(location)
    raise X2IError(f"{what} {location} does not exist (give a local directory or a hub id like org/name)")


def unreachable(what: str, repo_id: str, error: Exception) -> X2IError:
    """The one message for a hub model that cannot be had here."""
    return X2IError(f"cannot get {what} {repo_id} from the hub ({type(error).__name__}); download it and pass its directory")
