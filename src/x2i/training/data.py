"""What the trainers read, and how each step's batch is dealt from it.

    captions   `x2i distill`: English captions, no images (a .txt, a .jsonl, or WebDataset shards)
    triples    `x2i lightcontrol train`, `x2i lora train`: (source image, instruction, target image)
               (a .jsonl, or WebDataset shards)

Triples layouts:
    triples.jsonl   one object per line: {"source": PATH, "instruction": TEXT, "target": PATH},
                    paths relative to the file's directory (or absolute)
    WebDataset      .tar shards (a file or a directory of them); a sample is the members
                    KEY.source.{png,jpg,webp}, KEY.target.{...} and KEY.json {"instruction": TEXT}
                    (or KEY.txt)

Captions are read into memory (100K captions are a few MB); of triples only an index is read up
front and images are decoded when a step needs them, so a dataset of any size costs a few bytes
per triple, and every image is checked to exist before a run starts. Both are dealt the same way
(`global_batch`): shuffled per epoch from the seed, each step's global batch a contiguous slice of
that order, so the position in the data is a function of the step alone (exact resume).
"""

from __future__ import annotations

import functools
import io
import json
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from PIL import Image, UnidentifiedImageError

from x2i.errors import X2IError
from x2i.media.images import to_rgb

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def read_text(path: Path) -> str:
    """A UTF-8 text file, with one clear line when it is not one."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise X2IError(f"{path} is not UTF-8 text (byte {e.start}): save it as UTF-8") from e
    except IsADirectoryError as e:
        raise X2IError(f"{path} is a directory, not a file") from e


def read_jsonl(path: Path) -> Iterator[tuple[str, object]]:
    """(`file:line`, the line's JSON value) for every non-blank line."""
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            yield where, json.loads(line)
        except ValueError as e:
            raise X2IError(f"{where}: not a JSON object ({e})") from e


@dataclass(frozen=True)
class ImageRef:
    """An image file, or a member of a tar shard (its data's offset and size)."""

    path: Path
    offset: int = -1
    size: int = -1

    def open(self) -> Image.Image:
        try:
            if self.offset < 0:
                data = self.path.read_bytes()
            else:
                with open(self.path, "rb") as f:
                    f.seek(self.offset)
                    data = f.read(self.size)
            with Image.open(io.BytesIO(data)) as image:
                return to_rgb(image)
        except (OSError, UnidentifiedImageError, ValueError) as e:
            where = self.path if self.offset < 0 else f"{self.path} at byte {self.offset}"
            raise X2IError(f"cannot read training image {where}: {e}") from e


@dataclass(frozen=True)
class Triple:
    source: ImageRef
    instruction: str
    target: ImageRef


def read_captions(path: str | Path, caption_key: str = "caption") -> list[str]:
    """`.txt`: one caption per line. `.jsonl`: one object per line, caption under `caption_key`.
    WebDataset shards: each sample's `.json` member holds the caption under `caption_key` (or a `.txt` member)."""

    def read(file: Path) -> list[str]:
        if file.suffix == ".tar":
            return [_caption(sample, caption_key, f"{file}:{key}") for key, sample in read_shard(file).items()]
        if file.suffix == ".jsonl":
            return [_caption({"json": record}, caption_key, where) for where, record in read_jsonl(file)]
        if file.suffix == ".txt":
            return [line.strip() for line in read_text(file).splitlines() if line.strip()]
        raise X2IError(f"{file}: prompts come as .txt (one per line), .jsonl, or WebDataset .tar shards")

    return _read_all(path, "prompt file", "prompts", read)


def read_triples(path: str | Path) -> list[Triple]:
    def read(file: Path) -> list[Triple]:
        if file.suffix == ".tar":
            return [_shard_triple(file, key, sample) for key, sample in read_shard(file).items()]
        if file.suffix == ".jsonl":
            return [_jsonl_triple(file, where, record) for where, record in read_jsonl(file)]
        raise X2IError(f"{file}: triples come as a .jsonl file (source, instruction, target) or WebDataset .tar shards")

    return _read_all(path, "triples", "triples", read)


def _read_all(path: str | Path, what: str, items: str, read) -> list:
    """`read` over the file, or over the .tar shards of a directory; empty is an error."""
    path = Path(path)
    if not path.exists():
        raise X2IError(f"{what} {path} does not exist")
    files = sorted(path.glob("*.tar")) if path.is_dir() else [path]
    if not files:
        raise X2IError(f"{path} holds no .tar WebDataset shards")
    found = [item for file in files for item in read(file)]
    if not found:
        raise X2IError(f"{path} holds no {items}")
    return found


def read_shard(path: Path) -> dict[str, dict]:
    """A WebDataset shard's samples, KEY -> {field: value}: the JSON of `.json` members, the text of
    `.txt` members, an `ImageRef` for image members (KEY.source.png -> field "source.png")."""
    samples: dict[str, dict] = {}
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                # WebDataset's rule: the key is the path up to the first dot of the file name ("./" aside)
                folder, _, name = member.name.removeprefix("./").rpartition("/")
                stem, _, field = name.partition(".")
                key = f"{folder}/{stem}" if folder else stem
                sample = samples.setdefault(key, {})
                if field in ("json", "txt"):
                    text = tar.extractfile(member).read().decode("utf-8")
                    sample[field] = json.loads(text) if field == "json" else text
                elif field.endswith(IMAGE_SUFFIXES):
                    sample[field] = ImageRef(path, member.offset_data, member.size)
    except (tarfile.TarError, OSError, UnicodeDecodeError, ValueError) as e:
        raise X2IError(f"cannot read WebDataset shard {path}: {e}") from e
    return samples


def _caption(sample: dict, key: str, where: str) -> str:
    record = sample.get("json")
    if isinstance(record, dict) and isinstance(record.get(key), str) and record[key].strip():
        return record[key].strip()
    if "json" not in sample and isinstance(sample.get("txt"), str) and sample["txt"].strip():
        return sample["txt"].strip()
    raise X2IError(f"{where}: no caption under key {key!r} (set it with --caption-key), or an empty one")


def _jsonl_triple(file: Path, where: str, record) -> Triple:
    if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in ("source", "instruction", "target")):
        raise X2IError(f'{where}: a triple is {{"source": PATH, "instruction": TEXT, "target": PATH}}')
    refs = []
    for key in ("source", "target"):
        image = (file.parent / record[key]).resolve()
        if not image.is_file():
            raise X2IError(f"{where}: {key} image {image} does not exist")
        refs.append(ImageRef(image))
    return Triple(refs[0], record["instruction"].strip(), refs[1])


def _shard_triple(file: Path, key: str, sample: dict) -> Triple:
    record = sample.get("json")
    instruction = record.get("instruction") if isinstance(record, dict) else sample.get("txt")
    images = {field.split(".")[0]: ref for field, ref in sample.items() if isinstance(ref, ImageRef)}
    if not (isinstance(instruction, str) and "source" in images and "target" in images):
        raise X2IError(f"{file}: sample {key!r} needs {key}.source.png, {key}.target.png and {key}.json with an instruction")
    return Triple(images["source"], instruction.strip(), images["target"])


def global_batch(items: list, step: int, size: int, seed: int) -> list:
    """The `size` items (captions or triples) of `step`: consecutive slices of a per-epoch shuffle."""
    out = []
    position = step * size
    while len(out) < size:
        epoch, offset = divmod(position, len(items))
        take = _epoch_order(len(items), seed, epoch)[offset : offset + size - len(out)]
        out += [items[i] for i in take]
        position += len(take)
    return out


@functools.lru_cache(maxsize=2)
def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n))
    random.Random(f"{seed}-{epoch}").shuffle(order)
    return order
