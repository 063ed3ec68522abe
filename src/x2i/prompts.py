"""Distillation prompts: English captions from a text file, a JSONL file, or WebDataset shards.

Distillation needs captions only (no images). They are read once into memory (100K captions are a
few MB), shuffled per epoch from the seed, and dealt to the processes of a run so that each step's
global batch is a contiguous slice of the shuffled order: the position in the data is a function
of the step alone, which is what makes resuming exact.
"""

from __future__ import annotations

import functools
import json
import random
import tarfile
from pathlib import Path

from x2i.errors import X2IError
from x2i.jsonl import read_jsonl


def read_prompts(path: str | Path, caption_key: str = "caption") -> list[str]:
    """`.txt`: one caption per line. `.jsonl`: one object per line, caption under `caption_key`.
    A `.tar` shard, or a directory of them: WebDataset samples whose `.json` member holds the
    caption under `caption_key` (or a `.txt` member)."""
    path = Path(path)
    if not path.exists():
        raise X2IError(f"prompt file {path} does not exist")
    if path.is_dir():
        shards = sorted(path.glob("*.tar"))
        if not shards:
            raise X2IError(f"{path} holds no .tar WebDataset shards")
        prompts = [p for shard in shards for p in _read_shard(shard, caption_key)]
    elif path.suffix == ".tar":
        prompts = _read_shard(path, caption_key)
    elif path.suffix == ".jsonl":
        prompts = _read_jsonl(path, caption_key)
    elif path.suffix == ".txt":
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        raise X2IError(f"{path}: prompts come as .txt (one per line), .jsonl, or WebDataset .tar shards")
    if not prompts:
        raise X2IError(f"{path} holds no prompts")
    return prompts


def _read_jsonl(path: Path, key: str) -> list[str]:
    return [_caption(record, key, where) for where, record in read_jsonl(path)]


def _read_shard(path: Path, key: str) -> list[str]:
    prompts = []
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                data = tar.extractfile(member).read().decode("utf-8")
                if member.name.endswith(".json"):
                    prompts.append(_caption(json.loads(data), key, f"{path}:{member.name}"))
                elif member.name.endswith(".txt"):
                    prompts.append(data.strip())
    except (tarfile.TarError, OSError, UnicodeDecodeError, ValueError) as e:
        raise X2IError(f"cannot read WebDataset shard {path}: {e}") from e
    return prompts


def _caption(record, key: str, where: str) -> str:
    if not isinstance(record, dict) or not isinstance(record.get(key), str):
        raise X2IError(f"{where}: no caption under key {key!r} (set it with --caption-key)")
    return record[key].strip()


def global_batch(prompts: list[str], step: int, size: int, seed: int) -> list[str]:
    """The `size` prompts of `step`: consecutive slices of a per-epoch shuffle of all prompts."""
    out = []
    position = step * size
    while len(out) < size:
        epoch, offset = divmod(position, len(prompts))
        take = _epoch_order(len(prompts), seed, epoch)[offset : offset + size - len(out)]
        out += [prompts[i] for i in take]
        position += len(take)
    return out


@functools.lru_cache(maxsize=2)
def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    order = list(range(n))
    random.Random(f"{seed}-{epoch}").shuffle(order)
    return order
