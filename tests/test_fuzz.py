"""Generated bad input: good case, prompt and triple files mutated at random (seeded), each run
through the real command line. Every mutation is one that makes the file wrong, so every run must
stop before any model loads with exit 2, one `x2i: error:` line, no traceback, and the folder's
files unchanged."""

import json
import random
import re

import pytest
import torch

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


def assert_refused(argv, root, capsys, what, error_line=r"x2i: error:"):
    """Exit 2, no traceback, exactly one line matching `error_line`, every file as it was. argparse
    refuses a value of the wrong type itself (SystemExit, a line naming the command)."""
    before = snapshot(root)
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, (what, err)
    assert len([line for line in err.splitlines() if re.match(error_line, line)]) == 1, (what, err)
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


# For each command, a good request and, per option, values that are wrong for it (files named here are made by `place`).
GOOD = {
    "generate": ["generate", "--prompt", "a red circle", "--image", "a.png", "--steps", "1", "--out", "o.png"],
    "eval": ["eval", "cases.jsonl", "--steps", "1"],
    "distill": ["distill", "--prompts", "prompts.txt", "--out", "run", "--steps", "1"],
    "lora": ["lora", "train", "--triples", "triples.jsonl", "--out", "run", "--steps", "1"],
}
BAD_VALUES = {
    "generate": {
        "--steps": ["0", "-3", "x", "1.5", "", "201"],
        "--num-images": ["0", "-1", "x", "65"],
        "--batch-size": ["0", "-2", "x"],
        "--seed": ["-1", str(2**64), "x", "1e3"],
        "--guidance": ["nan", "inf", "-inf", "x"],
        "--lightcontrol-scale": ["nan", "inf"],
        "--lora-scale": ["nan", "-inf"],
        "--height": ["0", "-64", "63", "x", "100000"],
        "--width": ["0", "-16", "65"],
        "--pad-to": ["-5", "x"],
        "--max-text-tokens": ["0", "-1"],
        "--max-steps": ["0", "-1"],
        "--max-images": ["0"],
        "--video-fps": ["nan", "0", "-1"],
        "--max-frames": ["0", "-4"],
        "--image": ["missing.png", "folder.png", "note.txt", "empty.png"],
        "--audio": ["missing.wav", "note.txt", "empty.png"],
        "--video": ["missing.mp4", "note.txt", "folder.png"],
        "--out": ["folder.png", "a-file/x.png", "o.xbm", "o.txt", "/proc/x2i-fuzz.png"],
        "--mllm": ["nope", "note.txt", "empty-dir", "./x/y"],
        "--flux": ["nope", "note.txt", "empty-dir"],
        "--alignnet": ["nope", "empty-dir", "note.txt"],
        "--lightcontrol": ["nope", "empty-dir"],
        "--lora": ["nope", "empty-dir"],
        "--condition-on": ["x", ""],
        "--device": ["tpu", "cuda:99"],
        "--dtype": ["x"],
        "--stepz": ["3"],  # no such option
    },
    "eval": {
        "--steps": ["0", "x"],
        "--seed": ["-1", "x", str(2**64)],
        "--teacher": ["nope", "note.txt", "empty-dir"],
        "--mllm": ["nope", "empty-dir"],
        "--alignnet": ["nope", "empty-dir"],
        "--models": ["x"],
        "--save": ["a-file", "note.txt"],
        "--condition-on": ["x"],
    },
    "distill": {
        "--steps": ["0", "x"],
        "--batch": ["0", "-1"],
        "--lr": ["nan", "0", "-1", "inf"],
        "--warmup": ["-1"],
        "--seed": ["-1", str(2**63)],
        "--temperature": ["0", "nan", "-1"],
        "--t1-share": ["2", "-0.1", "nan"],
        "--pad-to": ["0", "-1"],
        "--terms": ["x"],
        "--timesteps": ["x"],
        "--checkpoint-every": ["0"],
        "--keep-checkpoints": ["-1"],
        "--prompts": ["missing.txt", "folder.png", "empty.png"],
        "--out": ["a-file", "note.txt"],
        "--flux": ["nope", "empty-dir"],
        "--mllm": ["nope", "empty-dir"],
        "--optimizer": ["x", "adamw8bit"],
        "--max-grad-norm": ["0", "nan"],
        "--weight-decay": ["-1", "nan"],
        "--prompt-dropout": ["2", "-0.5", "nan"],  # "2" was accepted: found by this table
        "--closing-tokens": ["-1"],
        "--guidance": ["nan", "inf"],
    },
    "lora": {
        "--triples": ["missing.jsonl", "folder.png", "note.txt", "empty.png"],
        "--rank": ["0", "-1", "x"],
        "--alpha": ["0", "nan", "-2"],
        "--lr": ["nan", "0"],
        "--lightcontrol": ["nope", "empty-dir"],
        "--alignnet": ["nope", "empty-dir"],
        "--flux": ["nope", "empty-dir"],
        "--height": ["63", "0"],  # 0 was taken as "the default size": found by this table
        "--guidance": ["x", "nan"],
        "--condition-on": ["x"],
        "--out": ["a-file"],
        "--seed": ["-1"],
    },
}


@pytest.fixture
def place(tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 64), "white").save(tmp_path / "a.png")
    (tmp_path / "note.txt").write_text("a note, not a picture or a model\n")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "empty-dir").mkdir()
    (tmp_path / "a-file").write_text("not a directory")
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in make_cases(1, seed=3)[:3]))
    (tmp_path / "prompts.txt").write_text("a red circle on the left\n")
    (tmp_path / "triples.jsonl").write_text(json.dumps({"source": "a.png", "instruction": "make it blue", "target": "a.png"}) + "\n")
    return tmp_path


@pytest.mark.parametrize("command", sorted(GOOD))
def test_mutated_requests_are_refused_in_one_line(command, place, capsys, monkeypatch):
    """A good request with one to three options given wrong values, drawn at random (seeded), as
    `--flag value` or `--flag=value`: each run exits 2 with one error line (argparse's own for a
    value of the wrong type), no traceback, nothing written."""
    monkeypatch.chdir(place)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same answers on a machine with a GPU
    rng, table = random.Random(21), BAD_VALUES[command]
    for _ in range(40):
        argv = list(GOOD[command])
        for flag in rng.sample(sorted(table), rng.randint(1, 3)):
            value = rng.choice(table[flag])
            argv += [f"{flag}={value}"] if rng.random() < 0.5 else [flag, value]
        assert_refused(argv, place, capsys, argv, error_line=r"x2i( [a-z ]+)?: error:")  # ours, or argparse's naming the command
