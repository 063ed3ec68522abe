"""LightControl and LoRA for image + instruction -> image: the branch's shapes and injection, the
trainers (source image only, exact resume, diffusers-format LoRA), and their use in the pipeline
and the CLI. On the tiny random models; the shipped mini branch and LoRA are scored in
test_mini_models.py."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from x2i.app.cli import main
from x2i.errors import X2IError
from x2i.inference.lightcontrol import LightControl
from x2i.inference.request import Request

TINY_BRANCH = ["--channels", "8", "8", "8", "--norm-groups", "4"]


def flat(color, size=32):
    return Image.new("RGB", (size, size), color)


@pytest.fixture(scope="module")
def triples(tmp_path_factory):
    """Six triples: sources red-ish, targets blue-ish, so the two can never be confused."""
    root = tmp_path_factory.mktemp("triples")
    (root / "images").mkdir()
    lines = []
    for i in range(6):
        flat((200 + 5 * i, 20, 20)).save(root / "images" / f"{i}-source.png")
        flat((20, 20, 200 + 5 * i)).save(root / "images" / f"{i}-target.png")
        lines.append({"source": f"images/{i}-source.png", "instruction": f"make it blue {i}", "target": f"images/{i}-target.png"})
    (root / "triples.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root / "triples.jsonl"


def tiny_branch(pipeline, seed=0, zero=True):
    torch.manual_seed(seed)
    branch = LightControl.for_flux(pipeline.flux, block_out_channels=(8, 8, 8), norm_groups=4)
    if not zero:  # trained-looking heads
        for head in branch.heads:
            torch.nn.init.normal_(head.weight, std=0.5)
    return branch


def test_branch_outputs_line_up_with_flux_image_tokens():
    branch = LightControl()  # FLUX.1-dev's sizes: 19 double blocks, 3072 wide, 16 px per token
    outputs = branch(torch.randn(1, 3, 256, 192), torch.tensor([0.7]))
    assert len(outputs) == 19 and all(o.shape == (1, (256 // 16) * (192 // 16), 3072) for o in outputs)
    mini = LightControl(num_blocks=2, inner_dim=128, patch_stride=8, block_out_channels=(16, 32, 128), norm_groups=8)
    assert mini(torch.randn(2, 3, 64, 64), torch.rand(2))[1].shape == (2, 64, 128)


def test_branch_token_order_is_flux_packing(pipeline):
    """A bright patch in the top-right source pixels must land on the top-right image token, where
    FluxPipeline._pack_latents puts that part of the image."""
    branch = LightControl(num_blocks=1, inner_dim=4, patch_stride=4, block_out_channels=(4, 4, 4), norm_groups=2)
    torch.nn.init.normal_(branch.heads[0].weight)
    image = -torch.ones(1, 3, 32, 32)
    base = branch(image, torch.tensor([0.5]))[0]
    image[:, :, 0:4, 28:32] = 1
    changed = (branch(image, torch.tensor([0.5]))[0] - base).abs().sum(-1)[0].reshape(8, 8)  # 64 tokens, an 8 x 8 grid
    row, column = divmod(changed.argmax().item(), 8)
    assert row <= 1 and column >= 6  # the top-right corner (convolutions reach one token further)
    assert changed[0, 7] > 3 * changed[7, 0]  # GroupNorm's statistics reach the far corner, but weakly


def test_untrained_branch_changes_nothing_and_a_trained_one_does(pipeline):
    request = Request("make it blue", [flat("red")])
    plain = np.asarray(pipeline(request, height=32, width=32, num_inference_steps=2, seed=3)[0])
    try:
        pipeline.lightcontrol = tiny_branch(pipeline)
        assert np.array_equal(np.asarray(pipeline(request, height=32, width=32, num_inference_steps=2, seed=3)[0]), plain)
        pipeline.lightcontrol = tiny_branch(pipeline, zero=False)
        controlled = np.asarray(pipeline(request, height=32, width=32, num_inference_steps=2, seed=3)[0])
        assert not np.array_equal(controlled, plain)
        off = pipeline(request, height=32, width=32, num_inference_steps=2, seed=3, lightcontrol_scale=0)[0]
        assert np.array_equal(np.asarray(off), plain)
        # the branch reads the request's first image: another source, another result
        other = pipeline(Request("make it blue", [flat("green")]), height=32, width=32, num_inference_steps=2, seed=3)[0]
        assert not np.array_equal(np.asarray(other), controlled)
        with pytest.raises(X2IError, match="has no image"):
            pipeline(Request("a cat"), height=32, width=32, num_inference_steps=2)
    finally:
        pipeline.lightcontrol = None


def test_a_training_step_reads_the_source_never_the_target(tiny_models, triples, tmp_path, monkeypatch):
    """Spy on everything a step feeds the models: the branch and the MLLM see only source pixels;
    the target enters as the flow-matching pair (noised latents, velocity) of the loss."""
    from x2i.inference.encoders.qwen2_5_vl import Qwen2_5_VLEncoder
    from x2i.training import edit_training

    seen_by_branch, seen_by_mllm = [], []
    branch_forward, encode = LightControl.forward, Qwen2_5_VLEncoder.encode
    monkeypatch.setattr(LightControl, "forward", lambda self, image, t: seen_by_branch.append(image.detach().clone()) or branch_forward(self, image, t))
    monkeypatch.setattr(Qwen2_5_VLEncoder, "encode", lambda self, requests, **kw: seen_by_mllm.extend(requests) or encode(self, requests, **kw))
    config = edit_training.LightControlConfig(triples=str(triples), out=str(tmp_path / "run"), steps=2, batch=3, lr=1e-3, warmup=0,
                                         mllm=str(tiny_models["mllm"]), flux=str(tiny_models["flux"]), alignnet=str(tiny_models["alignnet"]),
                                         channels=(8, 8, 8), norm_groups=4, progress=False)
    edit_training.train_lightcontrol(config)

    assert len(seen_by_branch) == 2 and len(seen_by_mllm) == 6
    for image in seen_by_branch:  # [-1, 1] pixels: red high, blue low in every source
        assert (image[:, 0] > 0.5).all() and (image[:, 2] < -0.5).all()
    for request in seen_by_mllm:
        r, g, b = request.images[0].getpixel((5, 5))
        assert r > 150 and b < 50 and request.text.startswith("make it blue")


def lightcontrol_train(tiny_models, triples, out, *extra):
    return main(["lightcontrol", "train", "--triples", str(triples), "--out", str(out), "--steps", "4", "--batch", "2", "--lr", "1e-3",
                 "--warmup", "1", "--checkpoint-every", "2", "--mllm", str(tiny_models["mllm"]), "--flux", str(tiny_models["flux"]),
                 "--alignnet", str(tiny_models["alignnet"]), *TINY_BRANCH, *extra])


def test_lightcontrol_train_resumes_exactly(tiny_models, triples, tmp_path):
    from safetensors.torch import load_file

    whole = tmp_path / "whole"
    assert lightcontrol_train(tiny_models, triples, whole) == 0
    # a run stopped after its step-2 checkpoint: the later checkpoint and the result are not there yet
    stopped = tmp_path / "stopped"
    shutil.copytree(whole, stopped)
    shutil.rmtree(stopped / "checkpoints" / "step-000004")
    shutil.rmtree(stopped / "lightcontrol")
    assert lightcontrol_train(tiny_models, triples, stopped, "--resume") == 0

    name = "diffusion_pytorch_model.safetensors"
    a, b = load_file(whole / "lightcontrol" / name), load_file(stopped / "lightcontrol" / name)
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert any(a[k].abs().sum() > 0 for k in a if k.startswith("heads."))  # the zero heads trained
    assert [json.loads(line)["step"] for line in (stopped / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert (stopped / "loss.png").is_file() and json.loads((stopped / "run.json").read_text())["processes"] == 1

    # ... and it is what `generate --lightcontrol` loads
    out = tmp_path / "edit.png"
    source = tmp_path / "source.png"
    flat("red").save(source)
    assert main(["generate", "--mllm", str(tiny_models["mllm"]), "--flux", str(tiny_models["flux"]), "--alignnet", str(tiny_models["alignnet"]),
                 "--image", str(source), "--prompt", "make it blue", "--lightcontrol", str(whole / "lightcontrol"),
                 "--lightcontrol-scale", "0.5", "--steps", "2", "--out", str(out)]) == 0
    assert Image.open(out).size == (32, 32)


def test_lora_train_saves_what_diffusers_loads(tiny_models, triples, tmp_path):
    from diffusers import FluxPipeline

    out = tmp_path / "lora-run"
    assert main(["lora", "train", "--triples", str(triples), "--out", str(out), "--steps", "3", "--batch", "2", "--rank", "4", "--lr", "1e-2",
                 "--warmup", "0", "--mllm", str(tiny_models["mllm"]), "--flux", str(tiny_models["flux"]), "--alignnet", str(tiny_models["alignnet"])]) == 0
    assert (out / "lora" / "pytorch_lora_weights.safetensors").is_file()

    # plain diffusers loads it, and it changes FLUX's prediction
    flux = FluxPipeline.from_pretrained(tiny_models["flux"], text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None)
    inputs = dict(hidden_states=torch.randn(1, 64, 16), timestep=torch.tensor([0.5]), guidance=torch.tensor([3.5]),
                  encoder_hidden_states=torch.randn(1, 5, 32), pooled_projections=torch.randn(1, 16),
                  txt_ids=torch.zeros(5, 3), img_ids=torch.zeros(64, 3))
    with torch.no_grad():
        before = flux.transformer(**inputs).sample
        flux.load_lora_weights(str(out / "lora"))
        after = flux.transformer(**inputs).sample
    assert not torch.allclose(before, after)

    # x2i generate uses it, alone and with a LightControl; the LoRA scale matters
    source = tmp_path / "source.png"
    flat("red").save(source)
    branch = tmp_path / "branch"
    LightControl.for_flux(flux, block_out_channels=(8, 8, 8), norm_groups=4).save_pretrained(branch)
    models = ["--mllm", str(tiny_models["mllm"]), "--flux", str(tiny_models["flux"]), "--alignnet", str(tiny_models["alignnet"])]
    images = {}
    for name, extra in {"plain": [], "lora": ["--lora", str(out / "lora")], "half": ["--lora", str(out / "lora"), "--lora-scale", "0.5"],
                        "both": ["--lora", str(out / "lora"), "--lightcontrol", str(branch)]}.items():
        path = tmp_path / f"{name}.png"
        assert main(["generate", *models, "--image", str(source), "--prompt", "make it blue", "--steps", "2", "--out", str(path), *extra]) == 0
        images[name] = np.asarray(Image.open(path))
    assert not np.array_equal(images["plain"], images["lora"]) and not np.array_equal(images["lora"], images["half"])
    assert np.array_equal(images["lora"], images["both"])  # an untrained (zero) branch adds nothing


def test_editing_bad_input_is_one_clear_line(tiny_models, triples, tmp_path, capsys):
    from x2i.inference.locations import locate

    source = tmp_path / "source.png"
    flat("red").save(source)
    models = ["--mllm", str(tiny_models["mllm"]), "--flux", str(tiny_models["flux"]), "--alignnet", str(tiny_models["alignnet"])]
    bad_triples = tmp_path / "bad.jsonl"
    bad_triples.write_text(json.dumps({"source": "nope.png", "instruction": "x", "target": "nope.png"}) + "\n")
    cases = {
        "branch for another FLUX": (["generate", *models, "--image", str(source), "--prompt", "x", "--lightcontrol", "mini"],
                                    "made for a FLUX with 2 double blocks"),
        "LoRA for another FLUX": (["generate", *models, "--image", str(source), "--prompt", "x", "--lora", str(locate("mini", "lora"))],
                                  "made for a FLUX of another width"),
        "no image": (["generate", *models, "--prompt", "x", "--lightcontrol", "mini"], "give one with --image"),
        "not a branch": (["generate", *models, "--image", str(source), "--prompt", "x", "--lightcontrol", str(tmp_path)], "not a LightControl directory"),
        "missing LoRA": (["generate", *models, "--image", str(source), "--prompt", "x", "--lora", str(tmp_path / "none")], "does not exist"),
        "missing triples": (["lightcontrol", "train", "--triples", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "r")], "does not exist"),
        "triple image missing": (["lora", "train", "--triples", str(bad_triples), "--out", str(tmp_path / "r")], "does not exist"),
    }
    for name, (argv, message) in cases.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("x2i: error:") and message in err[-1], (name, err[-1])
        assert not any("Traceback" in line for line in err), name


def test_triples_from_webdataset_shards(tmp_path):
    import io
    import tarfile

    from x2i.training.data import read_triples

    shard = tmp_path / "edits-000.tar"
    with tarfile.open(shard, "w") as tar:
        for key, color in (("a", "red"), ("b", "green")):
            for field, data in ((f"{key}.source.png", flat(color)), (f"{key}.target.png", flat("blue")), (f"{key}.json", {"instruction": f"blue {key}"})):
                if isinstance(data, dict):
                    raw = json.dumps(data).encode()
                else:
                    buffer = io.BytesIO()
                    data.save(buffer, format="PNG")
                    raw = buffer.getvalue()
                info = tarfile.TarInfo(field)
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    found = read_triples(tmp_path)
    assert [t.instruction for t in found] == ["blue a", "blue b"]
    assert found[1].source.open().getpixel((0, 0)) == (0, 128, 0) and found[1].target.open().getpixel((0, 0)) == (0, 0, 255)


def test_training_conditions_on_the_road_and_writes_each_triples_answer_once(tiny_models, triples, tmp_path, monkeypatch):
    """On the answer road the MLLM answers each triple once (greedy answers do not change), and
    AlignNet reads the answer as it will at inference."""
    from x2i.inference.pipeline import X2IPipeline
    from x2i.training import edit_training

    asked, read = [], []
    monkeypatch.setattr(X2IPipeline, "answer", lambda self, requests, max_new_tokens=128: asked.extend(r.text for r in requests)
                        or [f"a blue square for {r.text}" for r in requests])
    encode = X2IPipeline.encode
    monkeypatch.setattr(X2IPipeline, "encode", lambda self, requests, condition_on=None, readings=None:
                        read.extend(x.answer for x in readings) or encode(self, requests, condition_on, readings))
    config = edit_training.LightControlConfig(triples=str(triples), out=str(tmp_path / "run"), steps=4, batch=3, lr=1e-3, warmup=0,
                                         mllm=str(tiny_models["mllm"]), flux=str(tiny_models["flux"]), alignnet=str(tiny_models["alignnet"]),
                                         channels=(8, 8, 8), norm_groups=4, progress=False, condition_on="answer")
    edit_training.train_lightcontrol(config)
    assert len(read) == 12 and all(a.startswith("a blue square for make it blue") for a in read)
    assert sorted(asked) == sorted(set(asked)) and len(asked) == 6  # 4 steps of 3 over 6 triples: each answered once
