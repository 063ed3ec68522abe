"""Inputs and outputs that are files, opened and checked when a request is made (so a bad file
fails in one line before any model loads): images (`images`), sound and video clips (`clips`)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from x2i.errors import X2IError
from x2i.media.clips import AUDIO_SUFFIXES, VIDEO_SUFFIXES, Audio, Video
from x2i.media.images import (
    check_image_path,
    load_image,
    make_grid,
    save_image,
    save_images,
)

__all__ = ["AUDIO_SUFFIXES", "VIDEO_SUFFIXES", "Audio", "Video", "check_image_path", "load_image", "make_grid", "open_input", "save_image", "save_images"]

KINDS = {"image": load_image, "audio": Audio.load, "video": Video.load}


def open_input(path: str | Path, kind: str | None = None):
    """An input file as a PIL image, an `Audio` or a `Video`: of `kind` ("image", "audio", "video"),
    or, where no flag says which (uploads), by its extension."""
    if kind is not None:
        return KINDS[kind](path)
    suffix = Path(path).suffix.lower()
    if suffix in AUDIO_SUFFIXES:
        return Audio.load(path)
    if suffix in VIDEO_SUFFIXES:
        return Video.load(path)
    if suffix in Image.registered_extensions():
        return load_image(path)
    raise X2IError(f"{Path(path).name}: unsupported file type {suffix or '(none)'}; give an image, a sound ({', '.join(AUDIO_SUFFIXES)}) "
                   f"or a video ({', '.join(VIDEO_SUFFIXES)})")
