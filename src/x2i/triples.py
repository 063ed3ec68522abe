"""Edit triples (source image, instruction, target image), for `x2i lightcontrol train` and
`x2i lora train`.

Two layouts:
    triples.jsonl   one object per line: {"source": PATH, "instruction": TEXT, "target": PATH},
                    paths relative to the file's directory (or absolute)
    WebDataset      .tar shards (a file or a directory of them); a sample is the members
                    KEY.source.{png,jpg,webp}, KEY.target.{...} and KEY.json {"instruction": TEXT}
                    (or KEY.txt)

Only an index is read up front; images are decoded when a step needs them, so a dataset of any
size costs a few bytes of memory per triple. Every source is checked to exist when the index is
read, so a run does not fail hours in.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from x2i.errors import X2IError
from x2i.jsonl import read_jsonl

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass(frozen=True)
class ImageRef:
    """A file, or a member of a tar shard (its data's offset and size)."""

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
                return image.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError) as e:
            where = self.path if self.offset < 0 else f"{self.path} at byte {self.offset}"
            raise X2IError(f"cannot read training image {where}: {e}") from e


@dataclass(frozen=True)
class Triple:
    source: ImageRef
    instruction: str
    target: ImageRef


def read_triples(path: str | Path) -> list[Triple]:
    path = Path(path)
    if not path.exists():
        raise X2IError(f"triples {path} do not exist")
    if path.is_dir():
        shards = sorted(path.glob("*.tar"))
        if not shards:
            raise X2IError(f"{path} holds no .tar WebDataset shards")
        triples = [t for shard in shards for t in _read_shard(shard)]
    elif path.suffix == ".tar":
        triples = _read_shard(path)
    elif path.suffix == ".jsonl":
        triples = _read_jsonl(path)
    else:
        raise X2IError(f"{path}: triples come as a .jsonl file (source, instruction, target) or WebDataset .tar shards")
    if not triples:
        raise X2IError(f"{path} holds no triples")
    return triples


def _read_jsonl(path: Path) -> list[Triple]:
    triples = []
    for where, record in read_jsonl(path):
        if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in ("source", "instruction", "target")):
            raise X2IError(f'{where}: a triple is {{"source": PATH, "instruction": TEXT, "target": PATH}}')
        refs = []
        for key in ("source", "target"):
            image = (path.parent / record[key]).resolve()
            if not image.is_file():
                raise X2IError(f"{where}: {key} image {image} does not exist")
            refs.append(ImageRef(image))
        triples.append(Triple(refs[0], record["instruction"].strip(), refs[1]))
    return triples


def _read_shard(path: Path) -> list[Triple]:
    samples: dict[str, dict] = {}
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, field = member.name.partition(".")
                sample = samples.setdefault(key, {})
                if field in ("json", "txt"):
                    text = tar.extractfile(member).read().decode("utf-8")
                    sample["instruction"] = json.loads(text).get("instruction") if field == "json" else text
                elif any(field.endswith(s) for s in IMAGE_SUFFIXES) and field.split(".")[0] in ("source", "target"):
                    sample[field.split(".")[0]] = ImageRef(path, member.offset_data, member.size)
    except (tarfile.TarError, OSError, UnicodeDecodeError, ValueError, AttributeError) as e:
        raise X2IError(f"cannot read WebDataset shard {path}: {e}") from e
    triples = []
    for key, sample in samples.items():
        if not (isinstance(sample.get("instruction"), str) and "source" in sample and "target" in sample):
            raise X2IError(f"{path}: sample {key!r} needs {key}.source.png, {key}.target.png and {key}.json with an instruction")
        triples.append(Triple(sample["source"], sample["instruction"].strip(), sample["target"]))
    return triples
