"""`x2i distill` on the shipped mini teacher and mini MLLM: checkpoints, exact resume after SIGKILL,
two processes (gloo) against one, prompts from every supported source."""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from io import BytesIO

import pytest
from safetensors.torch import load_file

from x2i.errors import X2IError
from x2i.training.data import global_batch, read_captions

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    subprocess.run([sys.executable, "-m", "x2i", "mini", "make-prompts", "--out", str(path), "--n", "200"], check=True, env=ENV)
    return path


def distill_command(prompts, out, steps, batch=2, *extra):
    return [
        "-m", "x2i", "distill", "--prompts", str(prompts), "--out", str(out), "--steps", str(steps),
        "--batch", str(batch), "--pad-to", "128", "--lr", "1e-3", "--warmup", "2", "--timesteps", "mixed", "--sampling-steps", "20",
        "--refiner-layers", "1", *extra,
    ]


def weights(out):
    return load_file(out / "alignnet" / "diffusion_pytorch_model.safetensors")


def test_resume_after_sigkill_is_exact(prompts, tmp_path):
    steps = 24
    whole = tmp_path / "whole"
    subprocess.run([sys.executable, *distill_command(prompts, whole, steps, 2, "--checkpoint-every", "3")], check=True, env=ENV, capture_output=True)

    killed = tmp_path / "killed"
    run = subprocess.Popen([sys.executable, *distill_command(prompts, killed, steps, 2, "--checkpoint-every", "3", "--keep-checkpoints", "2")],
                           env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (killed / "checkpoints" / "step-000006").exists() and run.poll() is None:
        time.sleep(0.01)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert run.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "alignnet").exists()

    subprocess.run([sys.executable, *distill_command(prompts, killed, steps, 2, "--checkpoint-every", "3", "--keep-checkpoints", "2", "--resume")],
                   check=True, env=ENV, capture_output=True)
    a, b = weights(whole), weights(killed)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].equal(b[name]), f"{name} differs after resuming"

    # Old checkpoints pruned, no half-written ones left, one log line per step, a loss curve.
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["step-000021", "step-000024"]
    log = [json.loads(line) for line in (killed / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == list(range(1, steps + 1))
    # every term the method compares, counted by kind: 2 double and 4 single blocks in the mini FLUX
    assert all(row["terms"] == {"double_image": 2, "double_text": 2, "single_image": 4, "single_text": 4} for row in log)
    assert (killed / "loss.png").stat().st_size > 1000
    state = json.loads((killed / "checkpoints" / "step-000024" / "state.json").read_text())
    assert state["step"] == steps and state["samples_seen"] == steps * 2


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_with_their_summed_batch(prompts, tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    # torchrun starts the two CPU processes; accelerate sees them and joins them in a gloo group.
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    # a hang (a worker lost on a crowded machine) fails after 10 minutes instead of stopping the suite
    result = subprocess.run([*launch, *distill_command(prompts, two, 4, 1)], env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    subprocess.run([sys.executable, *distill_command(prompts, one, 4, 2)], check=True, env=ENV, capture_output=True, timeout=600)

    run = json.loads((two / "run.json").read_text())
    assert run["processes"] == 2 and run["global_batch"] == 2
    assert len(set(run["alignnet_sha256_per_rank"])) == 1  # both ranks end with identical weights
    # Step 1 starts from the same weights: the same samples and noise give the same loss (mean over
    # ranks), and the all-reduced gradient is the gradient of the summed batch (its norm, pre-clipping).
    # Later steps drift apart by float summation order, which Adam's normalized step amplifies.
    first_two = json.loads((two / "log.jsonl").read_text().splitlines()[0])
    first_one = json.loads((one / "log.jsonl").read_text().splitlines()[0])
    assert abs(first_two["loss"] - first_one["loss"]) <= 1e-5 * first_one["loss"]
    assert abs(first_two["grad_norm"] - first_one["grad_norm"]) <= 1e-4 * first_one["grad_norm"]


def test_prompt_sources(tmp_path):
    (tmp_path / "a.txt").write_text("a red circle\n\n a blue square \n")
    assert read_captions(tmp_path / "a.txt") == ["a red circle", "a blue square"]
    (tmp_path / "a.jsonl").write_text('{"caption_en": "a red circle"}\n{"caption_en": "a blue square"}\n')
    assert read_captions(tmp_path / "a.jsonl", "caption_en") == ["a red circle", "a blue square"]
    shards = tmp_path / "shards"
    shards.mkdir()
    for n, caption in enumerate(["a red circle", "a blue square"]):
        with tarfile.open(shards / f"{n:05d}.tar", "w") as tar:
            data = json.dumps({"caption_en": caption}).encode()
            info = tarfile.TarInfo(f"{n:09d}.json")
            info.size = len(data)
            tar.addfile(info, BytesIO(data))
    assert read_captions(shards, "caption_en") == ["a red circle", "a blue square"]
    # img2dataset writes each sample's caption twice (.json and .txt) under "./": one caption each
    with tarfile.open(tmp_path / "img2dataset.tar", "w") as tar:
        for name, data in (("./000.json", json.dumps({"caption_en": "a red circle"})), ("./000.txt", "a red circle"),
                           ("./001.json", json.dumps({"caption_en": "a blue square"})), ("./001.txt", "a blue square")):
            info = tarfile.TarInfo(name)
            info.size = len(data.encode())
            tar.addfile(info, BytesIO(data.encode()))
    assert read_captions(tmp_path / "img2dataset.tar", "caption_en") == ["a red circle", "a blue square"]
    with pytest.raises(X2IError, match="no caption under key 'caption'"):
        read_captions(tmp_path / "a.jsonl", "caption")
    with pytest.raises(X2IError, match="does not exist"):
        read_captions(tmp_path / "missing.txt")


def test_global_batches_cover_every_prompt_once_per_epoch():
    prompts = [f"p{i}" for i in range(10)]
    seen = [p for step in range(5) for p in global_batch(prompts, step, 4, seed=3)]  # two epochs
    assert sorted(seen[:10]) == prompts and sorted(seen[10:20]) == prompts
    assert seen[:10] != seen[10:20]  # reshuffled per epoch
    assert global_batch(prompts, 2, 4, seed=3) == seen[8:12]  # a step's batch depends on the step alone


def test_keep_last_turns_all_but_the_last_tokens_into_padding():
    """What --prompt-dropout and answer-only mode do to a row."""
    import torch

    from x2i.inference.encoders.base import EncoderOutput

    hidden = torch.arange(2 * 3 * 8 * 4, dtype=torch.float32).view(2, 3, 8, 4)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1], [1] * 8])
    out = EncoderOutput(hidden, mask).keep_last([3, None])
    assert out.attention_mask[0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    assert out.hidden_states[0, :, :5].equal(hidden[0, :, :1].expand(-1, 5, -1))  # the padding's states
    assert out.hidden_states[0, :, 5:].equal(hidden[0, :, 5:])
    assert out.hidden_states[1].equal(hidden[1]) and out.attention_mask[1].equal(mask[1])
    assert mask[0].tolist() == [0, 0, 1, 1, 1, 1, 1, 1]  # the input is left as it was


def test_word_pairs_join_the_tokens_that_read_the_same_characters():
    from x2i.inference.loaders import load_encoder, load_flux
    from x2i.inference.locations import locate
    from x2i.inference.request import Request
    from x2i.training.distill import word_pairs

    flux, encoder = load_flux(locate("mini", "flux"), text_encoders=True), load_encoder(locate("mini", "mllm"))
    captions = ["A big purple square near the bottom, and a small blue triangle on the left side.", "a red circle"]
    states = encoder.encode([Request(c) for c in captions], pad_to=128)
    pairs = word_pairs(flux.tokenizer_2, encoder, captions, 32, states.hidden_states.shape[2])
    ids = encoder.prepare([Request(c) for c in captions], pad_to=128)["input_ids"]
    for row, caption in enumerate(captions):
        t5 = flux.tokenizer_2.convert_ids_to_tokens(flux.tokenizer_2(caption, max_length=32, padding="max_length").input_ids)
        mllm = encoder.processor.tokenizer.convert_ids_to_tokens(ids[row])
        paired = [(t5[k], mllm[j]) for k, j in enumerate(pairs[row].tolist()) if j >= 0]
        # every word token is paired with the MLLM token holding its last character; EOS and padding with none
        assert [t for t, _ in paired] == [t for t in t5 if t not in ("</s>", "<pad>")]
        assert all(m.lstrip("Ġ") == t.lstrip("▁")[-len(m.lstrip("Ġ")):] for t, m in paired), paired
    assert paired == [("▁a", "a"), ("▁red", "Ġred"), ("▁circle", "Ġcircle")]  # the last row's


def test_a_run_that_fails_before_its_first_step_leaves_the_log_as_it_was(tmp_path):
    from x2i.training.trainer import _Log

    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"step": i, "loss": 1.0}) + "\n" for i in range(1, 11)))
    before = log.read_text()
    _Log(log, start=5, active=True)  # a resumed run that dies before its first step
    assert log.read_text() == before
    _Log(log, start=5, active=True).write({"step": 6, "loss": 0.5})  # its first step: the lines past 5 go
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3, 4, 5, 6]


def test_overwrite_replaces_a_run_and_its_checkpoints(prompts, tmp_path):
    run = tmp_path / "run"
    subprocess.run([sys.executable, *distill_command(prompts, run, 2, 2, "--checkpoint-every", "1")], check=True, env=ENV, capture_output=True)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000001", "step-000002"]
    again = subprocess.run([sys.executable, *distill_command(prompts, run, 1, 2)], env=ENV, capture_output=True, text=True)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    subprocess.run([sys.executable, *distill_command(prompts, run, 1, 2, "--overwrite")], check=True, env=ENV, capture_output=True)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000001"]  # none of the replaced run's are left
    assert len((run / "log.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize("part", ["optimizer.safetensors", "rng.safetensors", "state.json"])
def test_resume_from_a_cut_checkpoint_is_one_line_and_loses_nothing(prompts, tmp_path, part, capsys):
    """A checkpoint whose optimizer, rng or state file was cut short (a full disk, a copy stopped
    half-way): --resume says which checkpoint and what to do, and the run is left as it was."""
    from x2i.app.cli import main

    run = tmp_path / "run"
    assert main(distill_command(prompts, run, 2, 1, "--checkpoint-every", "1")[2:]) == 0
    cut = run / "checkpoints" / "step-000002" / part
    cut.write_bytes(cut.read_bytes()[: len(cut.read_bytes()) // 2])
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(distill_command(prompts, run, 4, 1, "--checkpoint-every", "1", "--resume")[2:]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "cannot resume from" in err and "step-000002" in err and "--overwrite" in err, err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_prompt_dropout_leaves_no_word_pairs_for_a_hidden_caption():
    """With --prompt-dropout and word pairs, a row whose caption AlignNet cannot see must not be
    pulled toward the teacher's word terms through states it was never given."""
    import torch

    from x2i.training.distill import (
        DistillConfig,
        load_models,
        make_inputs,
        with_defaults,
    )

    config = with_defaults(DistillConfig(prompts="-", out="-", pad_to=128, prompt_dropout=1.0))
    models = load_models(config, torch.device("cpu"))
    *_, pairs = make_inputs(models, config, ["a red circle on the left", "a big blue square"], [1, 2], torch.device("cpu"))
    assert pairs.shape[0] == 2 and bool((pairs == -1).all())
    shown = dataclasses.replace(config, prompt_dropout=0.0)
    *_, pairs = make_inputs(models, shown, ["a red circle on the left", "a big blue square"], [1, 2], torch.device("cpu"))
    assert bool((pairs >= 0).any(dim=1).all())  # without dropout every caption has its pairs


def test_auto_optimizer_says_when_8_bit_adamw_is_missing(monkeypatch):
    """On a GPU without bitsandbytes, --optimizer auto takes fp32 AdamW and says so (it used to
    fall back silently, with 4x the optimizer memory)."""
    import importlib.util
    from types import SimpleNamespace

    import torch

    from x2i.training.trainer import TrainConfig, make_optimizer

    said = []
    gpu = SimpleNamespace(device=torch.device("cuda"), print=said.append)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a))
    optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(2))], TrainConfig(out="-"), gpu)
    assert type(optimizer) is torch.optim.AdamW and len(said) == 1 and "bitsandbytes is not installed" in said[0]
    said.clear()
    make_optimizer([torch.nn.Parameter(torch.zeros(2))], TrainConfig(out="-", optimizer="adamw"), gpu)
    assert said == []  # chosen, so nothing to say
