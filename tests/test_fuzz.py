"""Generated bad input: good case, prompt and triple files mutated at random (seeded), each run
through the real command line. Every mutation is one that makes the file wrong, so every run must
stop before any model loads with exit 2, one `x2i: error:` line, no traceback, and the folder's
files unchanged."""

import json
import random

import pytest

from x2i.app.cli import main
from x2i.mini.eval import make_cases

JUNK = [None, 7, -1.5, "", "nonsense", [], {}, [1, 2], {"objects": "x"}, "x" * 300, True]
CASE_KEYS = ("task", "lang", "expect", "images", "instruction")


def junk_for(key, case, rng):
    """A value that no case accepts under `key` (a list of junk scenes for images, junk for the rest)."""
    if key == "images":
        return rng.choice([7, "x", {}, [None], [{"objects": []}], [{"objects": [{"shape": "star"}]}]])
    if key == "instruction":
        return rng.choice([7, "x", [], {"op": "explode"}, {"op": "recolor", "object": 9, "color": "blue"}])
    return rng.choice([j for j in JUNK if j not in ("nonsense",) or key != "lang"])


def mutate_case(case, rng):
    case = json.loads(json.dumps(case))
    kind = rng.choice(["junk", "drop", "bytes", "cut"])
    if kind == "junk":
        key = rng.choice([k for k in CASE_KEYS if k in case or k in ("task", "lang")])
        if key == "instruction" and case["task"] != "imagetext2image":
            key = "expect"
        case[key] = junk_for(key, case, rng)
        return json.dumps(case).encode()
    if kind == "drop":
        key = rng.choice(["task", "expect"] + (["images"] if case.get("images") else []) + (["instruction"] if "instruction" in case else []))
        del case[key]
        return json.dumps(case).encode()
    return broken_text(json.dumps(case).encode(), kind, rng)


def broken_text(text, kind, rng):
    """The line cut short, or with a byte put in that is not UTF-8 text (or a NUL)."""
    if kind == "cut":
        return text[: rng.randrange(1, len(text) - 1)]
    at = rng.randrange(len(text))
    return text[:at] + bytes([rng.choice([0xFF, 0xC3, 0x00, 0x80])]) + text[at:]


def snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_refused(argv, root, capsys, what):
    before = snapshot(root)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, (what, err)
    assert len([line for line in err.splitlines() if line.startswith("x2i: error:")]) == 1, (what, err)
    assert snapshot(root) == before, what


@pytest.mark.parametrize("seed", range(3))
def test_mutated_case_files_are_refused_in_one_line(seed, tmp_path, capsys):
    rng = random.Random(seed)
    good = make_cases(1, seed=seed)
    for i in range(40):
        case = rng.choice(good)
        path = tmp_path / f"case-{i}.jsonl"
        path.write_bytes(mutate_case(case, rng) + b"\n")
        assert_refused(["eval", str(path), "--steps", "1"], tmp_path, capsys, path.read_bytes())


NOT_TEXT = [None, 7, -1.5, [], {}, [1, 2], True]


def mutate_line(record, key, junk, rng):
    """One JSON line made wrong: `key` set to junk or dropped, the line cut, or a byte that is not UTF-8 put in."""
    kind = rng.choice(["junk", "drop", "cut", "bytes"])
    record = dict(record)
    if kind in ("junk", "drop"):
        if kind == "junk":
            record[key] = rng.choice(junk)
        else:
            del record[key]
        return json.dumps(record).encode()
    return broken_text(json.dumps(record).encode(), kind, rng)


def test_mutated_prompt_files_are_refused_in_one_line(tmp_path, capsys):
    rng = random.Random(11)
    good = {"caption": "a red circle on the left"}
    for i in range(40):
        path = tmp_path / f"prompts-{i}.jsonl"
        lines = [json.dumps(good).encode()] * rng.randrange(0, 3) + [mutate_line(good, "caption", [*NOT_TEXT, "", "   "], rng)]
        path.write_bytes(b"\n".join(lines) + b"\n")
        assert_refused(["distill", "--prompts", str(path), "--out", str(tmp_path / "run"), "--steps", "1"], tmp_path, capsys, path.read_bytes())


def test_mutated_triple_files_are_refused_in_one_line(tmp_path, capsys):
    from PIL import Image

    rng = random.Random(12)
    Image.new("RGB", (64, 64), "white").save(tmp_path / "a.png")
    good = {"source": "a.png", "instruction": "make it blue", "target": "a.png"}
    for i in range(40):
        path = tmp_path / f"triples-{i}.jsonl"
        key = rng.choice(list(good))
        junk = NOT_TEXT if key == "instruction" else [*NOT_TEXT, "", "missing.png", "."]
        path.write_bytes(json.dumps(good).encode() + b"\n" + mutate_line(good, key, junk, rng) + b"\n")
        assert_refused(["lightcontrol", "train", "--triples", str(path), "--out", str(tmp_path / "run"), "--steps", "1"], tmp_path, capsys,
                       path.read_bytes())
