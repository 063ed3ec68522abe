"""`x2i generate --requests`: many requests from one file, batched, with a manifest; resumed after a
crash without redoing what is done; GenEval's layout; the teacher over the same file; bad lines
named before any model loads; two processes (gloo) sharing the lines."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from test_distill import ENV, free_port

from x2i.app.cli import main

LINES = [
    {"prompt": "a red circle on the left"},
    {"prompt": "un carré bleu en haut", "seed": 3},
    {"prompt": "make it blue", "image": "a.png"},
    {"prompt": "a green triangle", "num_images": 2},
    {"prompt": "a small yellow circle", "steps": 3},
]


def write_requests(folder, lines):
    Image.new("RGB", (64, 64), "white").save(folder / "a.png")
    path = folder / "requests.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)) + "\n" for line in lines))
    return path


def pixels(path):
    return np.asarray(Image.open(path), dtype=int)


def manifest(out):
    return [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]


def test_every_request_is_made_once_and_a_second_run_skips_what_is_done(tmp_path, capsys):
    requests, out = write_requests(tmp_path, LINES), tmp_path / "out"
    assert main(["generate", "--requests", str(requests), "--out", str(out), "--steps", "2"]) == 0
    entries = manifest(out)
    assert [e["line"] for e in entries] == [1, 2, 3, 4, 5] and [e["request"] for e in entries] == LINES
    assert entries[3]["images"] == ["00004-0.png", "00004-1.png"] and all(e["seconds"] > 0 for e in entries)
    assert all((out / p).is_file() for e in entries for p in e["images"]) and not list(out.glob("index.part-*"))
    # A request made in a batch is the picture it makes alone, with its own settings and seed.
    single = tmp_path / "single.png"
    assert main(["generate", "--prompt", "un carré bleu en haut", "--seed", "3", "--steps", "2", "--out", str(single)]) == 0
    assert np.abs(pixels(single) - pixels(out / "00002-0.png")).max() <= 1
    # image k has seed + k (the mini FLUX hardly depends on its noise: the two differ by about one level)
    second = tmp_path / "second.png"
    assert main(["generate", "--prompt", "a green triangle", "--seed", "1", "--steps", "2", "--out", str(second)]) == 0
    assert np.abs(pixels(second) - pixels(out / "00004-1.png")).max() <= 1
    assert np.abs(pixels(out / "00004-0.png") - pixels(out / "00004-1.png")).mean() > 0.2

    # A crash: line 3's picture and manifest line lost, a manifest line cut in half. Only line 3 is made again.
    (out / "00003-0.png").unlink()
    kept = {p: p.stat().st_mtime_ns for p in out.glob("0000[1245]-*.png")}
    (out / "index.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries if e["line"] != 3) + '{"line": 3, "requ')
    capsys.readouterr()
    assert main(["generate", "--requests", str(requests), "--out", str(out), "--steps", "2"]) == 0
    assert "5 of 5 requests done" in capsys.readouterr().out and (out / "00003-0.png").is_file()
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert [e["line"] for e in manifest(out)] == [1, 2, 3, 4, 5]


def test_bad_lines_are_named_before_any_model_loads(tmp_path, capsys):
    requests = write_requests(tmp_path, [
        {"prompt": "a red circle"}, "{not json", {"prompt": "a cat", "steeps": 3}, {"prompt": "x", "steps": 0},
        {"prompt": "x", "image": "missing.png"}, {"prompt": 7}, {"prompt": ""}, {"prompt": "x", "guidance": "high"},
        {"prompt": "x", "seed": -1}, {"prompt": "x", "condition_on": "both"}, ["a list"],
    ])
    assert main(["generate", "--requests", str(requests), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "line 1:" not in err, err
    for number, why in [(2, "not JSON"), (3, "unknown key 'steeps'"), (4, "'steps' must be a whole number from 1 to 200"),
                        (5, "image missing.png does not exist"), (6, "'prompt' is not text"), (7, "an empty request"),
                        (8, "'guidance' must be a finite number"), (9, "'seed' must be a whole number"), (10, "'condition_on' must be one of"),
                        (11, "not a JSON object")]:
        assert f"line {number}: {why}" in err, (number, err)
    assert not (tmp_path / "out").exists()


def test_another_requests_file_in_the_same_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", "--requests", str(write_requests(tmp_path, LINES[:1])), "--out", str(out), "--steps", "1"]) == 0
    before = {p: p.read_bytes() for p in out.iterdir()}
    other = write_requests(tmp_path, [{"prompt": "a blue square"}])
    assert main(["generate", "--requests", str(other), "--out", str(out), "--steps", "1"]) == 2
    assert "holds the results of other requests (line 1 differs)" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.iterdir()} == before


def test_geneval_layout_is_what_its_scorer_reads(tmp_path):
    """GenEval's evaluate_images.py walks OUT/<digits>/, reads metadata.jsonl with json.load, and
    scores samples/<digits>.png; its metadata lines carry tag/include/exclude besides the prompt."""
    import re

    metadata = [{"tag": "single_object", "include": [{"class": "circle", "count": 1}], "prompt": "a photo of a red circle"},
                {"tag": "colors", "include": [{"class": "square", "count": 1, "color": "blue"}], "exclude": [], "prompt": "a photo of a blue square"}]
    requests, out = write_requests(tmp_path, metadata), tmp_path / "geneval"
    assert main(["generate", "--requests", str(requests), "--out", str(out), "--layout", "geneval", "--num-images", "2", "--steps", "1"]) == 0
    for index, line in enumerate(metadata):
        folder = out / f"{index:05d}"
        assert json.loads((folder / "metadata.jsonl").read_text()) == line
        samples = sorted(p.name for p in (folder / "samples").iterdir())
        assert samples == ["0000.png", "0001.png"] and all(re.match(r"\d+\.png", name) for name in samples)
        assert (folder / "grid.png").is_file()


def test_the_teacher_runs_over_the_same_file_with_the_same_noise(tmp_path, capsys):
    """X2I and its teacher over one requests file: the same image names and noise; the teacher reads
    text only; a community FLUX LoRA adapts the teacher too."""
    requests = write_requests(tmp_path, [{"prompt": "a red circle on the left"}, {"prompt": "a big blue square", "seed": 5}])
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    assert main(["generate", "--requests", str(requests), "--out", str(teacher), "--teacher", "--steps", "2"]) == 0
    assert main(["generate", "--requests", str(requests), "--out", str(student), "--steps", "2"]) == 0
    assert [e["images"] for e in manifest(teacher)] == [e["images"] for e in manifest(student)]
    assert np.abs(pixels(teacher / "00001-0.png") - pixels(student / "00001-0.png")).mean() > 0  # two models, one noise
    from test_flux_lora import lora_file

    styled = tmp_path / "styled"
    assert main(["generate", "--requests", str(requests), "--out", str(styled), "--teacher", "--steps", "2",
                 "--flux-lora", str(lora_file(tmp_path, "xlabs")[0]), "--flux-lora-scale", "40"]) == 0
    assert np.abs(pixels(teacher / "00001-0.png") - pixels(styled / "00001-0.png")).mean() > 1
    with_image = write_requests(tmp_path, [{"prompt": "make it blue", "image": "a.png"}])
    assert main(["generate", "--requests", str(with_image), "--out", str(tmp_path / "t2"), "--teacher"]) == 2
    assert "line 1: the teacher (FLUX with T5/CLIP) reads text only" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--out", "out", "--prompt", "a cat"], "leave out --prompt"),
    (["--out", "o.png"], "--out is a directory"),
    ([], "give it with --out DIR"),
    (["--out", "out", "--teacher", "--lightcontrol", "mini"], "--lightcontrol and --lora are X2I's edit parts"),
])
def test_requests_with_single_request_options_are_refused(tmp_path, argv, message, capsys, monkeypatch):
    requests = write_requests(tmp_path, LINES[:1])
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "--requests", str(requests), *argv]) == 2 and message in capsys.readouterr().err


def test_two_processes_share_the_lines_and_merge_one_manifest(tmp_path):
    requests = write_requests(tmp_path, [{"prompt": f"a {c} circle on the {p}"} for c in ("red", "blue", "green") for p in ("left", "right")])
    two, one = tmp_path / "two", tmp_path / "one"
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    command = ["-m", "x2i", "generate", "--requests", str(requests), "--steps", "2"]
    result = subprocess.run([*launch, *command, "--out", str(two)], env=ENV, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    subprocess.run([sys.executable, *command, "--out", str(one)], env=ENV, check=True, capture_output=True)
    entries = manifest(two)
    assert [e["line"] for e in entries] == [1, 2, 3, 4, 5, 6] and not list(two.glob("index.part-*"))
    made_by = {e["process"] for e in entries}
    assert made_by == {0, 1}  # each process made its share, and no line twice
    for e in entries:
        assert np.abs(pixels(two / e["images"][0]) - pixels(one / e["images"][0])).max() <= 1
