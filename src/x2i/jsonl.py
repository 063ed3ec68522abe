"""JSON Lines files (prompts, edit triples, eval cases), with errors that name the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from x2i.errors import X2IError


def read_jsonl(path: Path) -> Iterator[tuple[str, object]]:
    """(`file:line`, the line's JSON value) for every non-blank line."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            yield where, json.loads(line)
        except ValueError as e:
            raise X2IError(f"{where}: not a JSON object ({e})") from e
