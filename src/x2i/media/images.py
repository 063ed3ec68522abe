"""Images in and out: reading inputs with clear errors, writing results, and laying them out as a grid."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, UnidentifiedImageError

from x2i.errors import X2IError


def load_image(path: str | Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise X2IError(f"image {path} does not exist")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")  # also forces the full decode, so truncated files fail here
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise X2IError(f"cannot read image {path}: not a readable PNG/JPEG/WebP/... file ({e})") from e


def check_image_path(out: Path) -> None:
    """Refuse, before any work, an output path whose extension PIL cannot write."""
    if Image.registered_extensions().get(Path(out).suffix.lower()) is None:
        raise X2IError(f"cannot write {out}: unknown image extension {Path(out).suffix!r} (use .png, .jpg or .webp)")


def save_images(images: list[Image.Image], out: Path, captions: list[str]) -> str:
    """One image as `out`; several as OUT-0, OUT-1, ... and their captioned grid as `out`. Says what it wrote."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if len(images) == 1:
        images[0].save(out)
        return f"wrote {out}"
    for i, image in enumerate(images):
        image.save(out.with_name(f"{out.stem}-{i}{out.suffix}"))
    make_grid(images, captions).save(out)
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
