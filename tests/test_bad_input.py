"""Bad input through the real command line: one line, exit code 2, no traceback, and every file
that was there before is byte-identical after (nothing on disk is lost)."""

import pytest

from x2i.app.cli import main


def snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def place(tmp_path):
    """A folder with what a user has on disk: a picture, a file, a directory named like a picture,
    and a finished training run."""
    (tmp_path / "keep.png").write_bytes(b"\x89PNG a picture the user keeps")
    (tmp_path / "keep.xbm").write_bytes(b"an xbm file the user keeps")
    (tmp_path / "a-file").write_text("not a directory")
    (tmp_path / "dir.png").mkdir()
    run = tmp_path / "run"
    (run / "checkpoints" / "step-000010").mkdir(parents=True)
    (run / "checkpoints" / "step-000010" / "state.json").write_text('{"step": 10}')
    (run / "alignnet").mkdir()
    (run / "alignnet" / "config.json").write_text("{}")
    (run / "log.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 10, "loss": 1.0}\n')
    (tmp_path / "prompts.txt").write_text("a red circle\n")
    (tmp_path / "cases.jsonl").write_text("")
    (tmp_path / "latin1.txt").write_bytes("un cercle à gauche\n".encode("latin-1"))
    (tmp_path / "number.jsonl").write_text('{"task": "text2image", "lang": "en", "text": 7, "expect": {"objects": [{"shape": "circle", "color": "red", "size": "small", "position": "left"}]}}\n')
    return tmp_path


def generate(out="o.png", *flags):
    return ["generate", "--prompt", "a red circle", "--steps", "1", "--out", out, *flags]


CASES = {
    # output paths that cannot be written, found before any model loads
    "out is a directory": (lambda p: generate(str(p / "dir.png")), "it is a directory"),
    "out under a file": (lambda p: generate(str(p / "a-file" / "x.png")), "is a file, not a directory"),
    "out in a format without RGB": (lambda p: generate(str(p / "keep.xbm")), "does not hold RGB pictures"),
    "out in /proc": (lambda p: generate("/proc/x2i-test.png"), "is not writable"),
    "chat out onto a file": (lambda p: ["chat", "--out", str(p / "a-file")], "is a file, not a directory"),
    "eval save onto a file": (lambda p: ["eval", str(p / "cases.jsonl"), "--save", str(p / "a-file")], "is a file, not a directory"),
    "make-cases of no cases": (lambda p: ["mini", "make-cases", "--out", str(p / "keep.png"), "--n", "0"], "--n must be at least 1"),
    "answers of an unknown task": (lambda p: ["mini", "answers", "--tasks", "sing2image"], "unknown task ['sing2image']"),
    "answers by ear from a reader without ears": (lambda p: ["mini", "answers", "--tasks", "audio2image", "--n", "1"], "does not hear"),
    "make-prompts onto a directory": (lambda p: ["mini", "make-prompts", "--out", str(p / "dir.png"), "--n", "2"], "it is a directory"),
    "make-triples onto a file": (lambda p: ["mini", "make-triples", "--out", str(p / "a-file"), "--n", "2"], "is a file"),
    "tiny models onto a file": (lambda p: ["tiny-models", str(p / "a-file")], "is a file"),
    "a derivative onto a file": (lambda p: ["mini", "train-derivative", "style", "--out", str(p / "a-file")], "is a file"),
    "a style LoRA of no steps": (lambda p: ["mini", "train-derivative", "style", "--out", str(p / "new"), "--steps", "0"], "must be at least 1"),
    "a few-step LoRA of no pairs": (lambda p: ["mini", "train-derivative", "fewstep", "--out", str(p / "new"), "--pairs", "0"], "must be at least 1"),
    # files that are not what they should be
    "an image that is a directory": (lambda p: generate(str(p / "o.png"), "--image", str(p / "dir.png")), "is a directory"),
    "a prompt file not in UTF-8": (lambda p: ["distill", "--prompts", str(p / "latin1.txt"), "--out", str(p / "new"), "--steps", "1"], "is not UTF-8"),
    "a case whose text is a number": (lambda p: ["eval", str(p / "number.jsonl")], "a case's text is a string"),
    # numbers out of range
    "guidance nan": (lambda p: generate(str(p / "o.png"), "--guidance", "nan"), "--guidance must be a finite number"),
    "lightcontrol scale nan": (lambda p: generate(str(p / "o.png"), "--lightcontrol-scale", "nan"), "--lightcontrol-scale must be a finite"),
    "video fps nan": (lambda p: generate(str(p / "o.png"), "--video-fps", "nan"), "--video-fps must be a finite"),
    "seed below 0": (lambda p: generate(str(p / "o.png"), "--seed", "-1"), "--seed must be between 0 and 2^64 - 1"),
    "seed past 64 bits": (lambda p: generate(str(p / "o.png"), "--seed", str(2**64)), "--seed must be between 0 and 2^64 - 1"),
    "negative padding": (lambda p: generate(str(p / "o.png"), "--pad-to", "-5"), "--pad-to must be at least 0"),
    "negative text bound": (lambda p: generate(str(p / "o.png"), "--max-text-tokens", "-1"), "--max-text-tokens must be at least 1"),
    "steps past the bound": (lambda p: generate(str(p / "o.png"), "--steps", "100000"), "raise --max-steps"),
    "images past the bound": (lambda p: generate(str(p / "o.png"), "--num-images", "10000"), "raise --max-images"),
    "eval with no steps": (lambda p: ["eval", str(p / "cases.jsonl"), "--steps", "0"], "--steps must be at least 1"),
    # training runs: an earlier run is continued or replaced only when asked, and bad options fail first
    "distill into a finished run": (lambda p: ["distill", "--prompts", str(p / "prompts.txt"), "--out", str(p / "run")], "--resume, or replace it with --overwrite"),
    "lightcontrol into a finished run": (lambda p: ["lightcontrol", "train", "--triples", str(p / "t.jsonl"), "--out", str(p / "run"),
                                                    "--channels", "16", "32", "128", "--norm-groups", "8"], "already holds a run"),
    "resume with checkpoints every 0 steps": (lambda p: ["distill", "--prompts", str(p / "prompts.txt"), "--out", str(p / "run"), "--resume",
                                                         "--checkpoint-every", "0"], "--checkpoint-every must be at least 1"),
    "resume with a nan learning rate": (lambda p: ["distill", "--prompts", str(p / "prompts.txt"), "--out", str(p / "run"), "--resume",
                                                   "--lr", "nan"], "--lr and --max-grad-norm must be positive"),
    "resume with temperature 0": (lambda p: ["distill", "--prompts", str(p / "prompts.txt"), "--out", str(p / "run"), "--resume",
                                             "--temperature", "0"], "--temperature positive"),
    "resume and overwrite": (lambda p: ["distill", "--prompts", str(p / "prompts.txt"), "--out", str(p / "run"), "--resume", "--overwrite"],
                             "give one"),
    "padding T5 cannot read": (lambda p: ["distill", "--prompts", str(p / "prompts.txt"), "--out", str(p / "new"), "--terms", "padded",
                                          "--pad-to", "600"], "FLUX's T5 reads at most 512 tokens"),
    "8-bit AdamW without CUDA": (lambda p: ["distill", "--prompts", str(p / "prompts.txt"), "--out", str(p / "new"), "--optimizer", "adamw8bit"],
                                 "--optimizer adamw8bit needs a CUDA GPU and bitsandbytes"),
    "distill out onto a file": (lambda p: ["distill", "--prompts", str(p / "prompts.txt"), "--out", str(p / "a-file")], "is a file"),
    "branch groups that do not divide": (lambda p: ["lightcontrol", "train", "--triples", str(p / "t.jsonl"), "--out", str(p / "new"),
                                                    "--norm-groups", "7"], "multiple of --norm-groups"),
    "branch of no width": (lambda p: ["lightcontrol", "train", "--triples", str(p / "t.jsonl"), "--out", str(p / "new"),
                                      "--channels", "0", "0", "0"], "multiple of --norm-groups"),
    "LoRA of rank 0": (lambda p: ["lora", "train", "--triples", str(p / "t.jsonl"), "--out", str(p / "new"), "--rank", "0"], "--rank must be at least 1"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_and_loses_nothing(name, place, capsys):
    argv, message = CASES[name]
    before = snapshot(place)
    assert main(argv(place)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("x2i: error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert snapshot(place) == before


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """A machine where the hub cannot be reached, with an empty hub cache of its own."""
    import socket

    from huggingface_hub import constants

    from x2i.inference import locations

    def refused(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refused)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    locations.hub_reachable.cache_clear()
    yield tmp_path / "hub"
    locations.hub_reachable.cache_clear()


def test_a_hub_model_out_of_reach_is_one_line_at_once(no_network, tmp_path, capsys):
    """No network and not cached: one line before any download is tried (the libraries printed
    eleven retry lines over half a minute)."""
    assert main(generate(str(tmp_path / "o.png"), "--mllm", "some-org/some-mllm")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MLLM some-org/some-mllm is not in the local hub cache" in err and "cannot be reached" in err, err
    assert "Retry" not in err and not (tmp_path / "o.png").exists()


def test_a_cached_hub_model_loads_without_the_network(no_network, tiny_models):
    """Out of reach but in the hub cache: the cached copy is used, as the libraries' offline mode would."""
    import shutil

    from x2i.inference.locations import locate

    repo = no_network / "models--some-org--some-mllm"
    shutil.copytree(tiny_models["mllm"], repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    assert locate("some-org/some-mllm", "mllm") == repo / "snapshots" / "abc123"


@pytest.mark.parametrize("command", [["lightcontrol", "train"], ["lora", "train", "--lightcontrol", "mini"]])
@pytest.mark.parametrize("part, message", [
    ("alignnet", "but the MLLM gives 9 of size 128: use the AlignNet made for this MLLM"),  # the shipped mini MLLM: 8 layers
    ("flux", "do not fit FLUX's joint_attention_dim"),
])
def test_edit_training_on_parts_that_do_not_fit_is_one_line(command, part, message, tiny_models, tmp_path, capsys):
    """The shipped mini parts with one tiny part of other sizes: named in one line before a step runs."""
    assert main(["mini", "make-triples", "--out", str(tmp_path), "--n", "2"]) == 0
    triples = next(tmp_path.glob("*.jsonl"))
    capsys.readouterr()
    assert main([*command, "--triples", str(triples), "--out", str(tmp_path / "run"), "--steps", "1", f"--{part}", str(tiny_models[part])]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len([line for line in err.splitlines() if line.startswith("x2i: error:")]) == 1 and message in err, err
    assert not (tmp_path / "run" / "log.jsonl").exists()
