"""Files written whole or not at all: under a temporary name beside the final one, then renamed
into place, so that a reader (or a crash) sees the old file or the whole new one, never a part."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from x2i.errors import X2IError


def write_lines(path: Path, lines: list[str]) -> None:
    """A text file of `lines`, written under a temporary name and renamed: an existing file is
    replaced whole or not at all; a directory in its place is refused."""
    path = Path(path)
    if path.is_dir():
        raise X2IError(f"cannot write {path}: it is a directory; name a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, "".join(line + "\n" for line in lines))
    except OSError as e:
        raise X2IError(f"cannot write {path}: {e.strerror or e}") from e


def write_text(path: Path, text: str) -> None:
    """`text` as the whole of `path` (UTF-8)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_directory(final: Path):
    """Write into a temporary sibling of `final`; on success fsync it and rename it into place
    (replacing an older `final`), so readers see the old directory or the whole new one. On an
    error or an interrupt the temporary one is removed (a killed process leaves it for the next
    call to clear)."""
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_tree(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def _fsync_tree(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
