"""Images in and out: reading inputs with clear errors, writing results, and laying them out as a grid."""

from __future__ import annotations

import io
import math
import os
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from x2i.errors import X2IError


def load_image(path: str | Path) -> Image.Image:
    path = Path(path)
    if path.is_dir():
        raise X2IError(f"image {path} is a directory; give an image file")
    if not path.is_file():
        raise X2IError(f"image {path} does not exist")
    try:
        with Image.open(path) as image:
            return to_rgb(image)  # also forces the full decode, so truncated files fail here
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise X2IError(f"cannot read image {path}: not a readable PNG/JPEG/WebP/... file ({e})") from e


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB. PIL's own convert clips 16-bit grey (mode I;16, or I from older readers) and float
    pictures (F) instead of scaling them, so that mid-grey became white: those are scaled here."""
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or (image.mode == "I" and values.max() > 255):
            values = values / 257  # 0..65535 onto 0..255
        elif image.mode == "F" and values.max() <= 1:
            values = values * 255  # floats in 0..1
        image = Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8))
    return image.convert("RGB")


def check_image_path(out: Path) -> None:
    """Refuse, before any work, an output path that cannot be written: an extension PIL does not
    write RGB pictures as, a directory in its place, or a parent that is a file or read-only."""
    out = Path(out)
    fmt = Image.registered_extensions().get(out.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise X2IError(f"cannot write {out}: unknown image extension {out.suffix!r} (use .png, .jpg or .webp)")
    try:
        Image.new("RGB", (8, 8)).save(io.BytesIO(), format=fmt)
    except (OSError, ValueError, KeyError) as e:
        raise X2IError(f"cannot write {out}: {fmt} does not hold RGB pictures ({e}); use .png, .jpg or .webp") from e
    if out.is_dir():
        raise X2IError(f"cannot write {out}: it is a directory; name an image file")
    parent = next((p for p in out.parents if p.exists()), Path("."))
    if not parent.is_dir():
        raise X2IError(f"cannot write {out}: {parent} is a file, not a directory")
    try:  # a file made and removed there: permissions, read-only mounts, /proc
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as e:
        raise X2IError(f"cannot write {out}: {parent} is not writable ({e.strerror})") from e


def save_image(image: Image.Image, out: Path) -> None:
    """Write under a temporary name beside `out`, then rename: an existing file is replaced whole or
    not at all."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp{out.suffix}")
    try:
        image.save(tmp, format=Image.registered_extensions()[out.suffix.lower()])
        os.replace(tmp, out)
    except (OSError, ValueError) as e:
        tmp.unlink(missing_ok=True)
        raise X2IError(f"cannot write {out}: {e}") from e


def save_images(images: list[Image.Image], out: Path, captions: list[str]) -> str:
    """One image as `out`; several as OUT-0, OUT-1, ... and their captioned grid as `out`. Says what it wrote."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if len(images) == 1:
        save_image(images[0], out)
        return f"wrote {out}"
    for i, image in enumerate(images):
        save_image(image, out.with_name(f"{out.stem}-{i}{out.suffix}"))
    save_image(make_grid(images, captions), out)
    return f"wrote {len(images)} images and their grid {out}"


def make_grid(images: list[Image.Image], captions: list[str] | None = None, cols: int | None = None) -> Image.Image:
    """Images side by side in rows; an optional caption above each, wrapped to the image width."""
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    w = max(im.width for im in images)
    h = max(im.height for im in images)
    chars_per_line = max(4, w // 6)  # PIL's default bitmap font is about 6 px wide
    wrapped = [textwrap.wrap(c, chars_per_line) or [""] for c in captions] if captions else []
    top = 11 * max(len(lines) for lines in wrapped) + 2 if wrapped else 0
    grid = Image.new("RGB", (cols * w, rows * (h + top)), "white")
    draw = ImageDraw.Draw(grid)
    for i, image in enumerate(images):
        x, y = (i % cols) * w, (i // cols) * (h + top)
        grid.paste(image, (x, y + top))
        if wrapped:
            draw.multiline_text((x + 2, y + 1), "\n".join(wrapped[i]), fill="black", spacing=1)
    return grid
