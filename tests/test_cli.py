import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from x2i.app.cli import main


@pytest.fixture
def model_args(tiny_models):
    return ["--mllm", str(tiny_models["mllm"]), "--flux", str(tiny_models["flux"]), "--alignnet", str(tiny_models["alignnet"])]


def generate(model_args, *extra):
    return main(["generate", *model_args, "--height", "32", "--width", "32", "--steps", "2", *extra])


def test_generate_writes_the_image(model_args, tmp_path, image_file):
    out = tmp_path / "out.png"
    assert generate(model_args, "--prompt", "ein roter Kreis", "--image", str(image_file), "--out", str(out)) == 0
    assert Image.open(out).size == (32, 32)


def test_same_seed_same_file(model_args, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    generate(model_args, "--prompt", "a cat", "--seed", "5", "--out", str(a))
    generate(model_args, "--prompt", "a cat", "--seed", "5", "--out", str(b))
    assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_several_images_give_a_grid(model_args, tmp_path):
    out = tmp_path / "grid" / "cats.png"
    assert generate(model_args, "--prompt", "a cat", "--num-images", "3", "--out", str(out)) == 0
    singles = [Image.open(tmp_path / "grid" / f"cats-{i}.png") for i in range(3)]
    grid = Image.open(out)
    assert grid.width == 2 * 32 and grid.height > 2 * 32  # 2 columns, 2 rows, a caption line each
    assert np.array_equal(np.asarray(grid)[-32:, :32], np.asarray(singles[2]))


def broken_copy(src, dst, remove=(), corrupt=()):
    shutil.copytree(src, dst)
    for name in remove:
        (dst / name).unlink()
    for name in corrupt:
        (dst / name).write_bytes(b"junk")
    return str(dst)


def bad_input_cases(tmp_path, image_file, tiny_models):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    corrupt_bin = tmp_path / "alignnet.bin"
    corrupt_bin.write_bytes(b"garbage")
    mllm, flux, alignnet = (str(tiny_models[k]) for k in ("mllm", "flux", "alignnet"))
    weights, alignnet_weights = "model.safetensors", "diffusion_pytorch_model.safetensors"
    broken = {
        "mllm weights missing": broken_copy(tiny_models["mllm"], tmp_path / "m1", remove=[weights]),
        "mllm weights corrupt": broken_copy(tiny_models["mllm"], tmp_path / "m2", corrupt=[weights]),
        "mllm tokenizer missing": broken_copy(tiny_models["mllm"], tmp_path / "m3", remove=["tokenizer.json", "tokenizer_config.json"]),
        "flux part missing": broken_copy(tiny_models["flux"], tmp_path / "f1", remove=["transformer/diffusion_pytorch_model.safetensors"]),
        "flux weights corrupt": broken_copy(tiny_models["flux"], tmp_path / "f2", corrupt=["vae/diffusion_pytorch_model.safetensors"]),
        "alignnet weights corrupt": broken_copy(tiny_models["alignnet"], tmp_path / "a1", corrupt=[alignnet_weights]),
    }
    return {
        "mllm weights missing": (["--prompt", "x", "--mllm", broken["mllm weights missing"]], "no file named model.safetensors"),
        "mllm weights corrupt": (["--prompt", "x", "--mllm", broken["mllm weights corrupt"]], "cannot load Qwen2.5-VL"),
        "mllm tokenizer missing": (["--prompt", "x", "--mllm", broken["mllm tokenizer missing"]], "does not belong to its model"),
        "flux part missing": (["--prompt", "x", "--flux", broken["flux part missing"]], "cannot load FLUX"),
        "flux weights corrupt": (["--prompt", "x", "--flux", broken["flux weights corrupt"]], "cannot load FLUX"),
        "alignnet weights corrupt": (["--prompt", "x", "--alignnet", broken["alignnet weights corrupt"]], "cannot read AlignNet"),
        "missing image": (["--prompt", "x", "--image", str(tmp_path / "nope.png")], "does not exist"),
        "unreadable image": (["--prompt", "x", "--image", str(corrupt)], "cannot read image"),
        "empty request": (["--prompt", "  "], "empty request"),
        "unknown preset": (["--prompt", "x", "--alignnet", str(corrupt_bin), "--alignnet-preset", "gpt-9"], "unknown AlignNet preset"),
        "corrupt checkpoint": (["--prompt", "x", "--alignnet", str(corrupt_bin)], "cannot read AlignNet checkpoint"),
        "mllm is not an mllm": (["--prompt", "x", "--mllm", flux], "not an MLLM directory"),
        "flux is not flux": (["--prompt", "x", "--flux", mllm], "not a diffusers pipeline directory"),
        "alignnet is not alignnet": (["--prompt", "x", "--alignnet", mllm], "not an AlignNet directory"),
        "missing model dir": (["--prompt", "x", "--flux", str(tmp_path / "no-such-dir")], "does not exist"),
        "mllm hub id offline": (["--prompt", "x", "--mllm", "org/mllm"], "MLLM org/mllm is not in the local hub cache and HF_HUB_OFFLINE is set"),
        "flux hub id offline": (["--prompt", "x", "--flux", "org/flux"], "FLUX org/flux is not in the local hub cache"),
        "alignnet hub id offline": (["--prompt", "x", "--alignnet", "org/a"], "AlignNet org/a is not in the local hub cache"),
        "size flux cannot take": (["--prompt", "x", "--height", "30"], "multiples of 4"),
        "bad output format": (["--prompt", "x", "--out", str(tmp_path / "o.xyz")], "unknown image extension"),
        "no gpu": (["--prompt", "x", "--device", "cuda"], "no CUDA GPU"),
    }


CASES = [
    "missing image", "unreadable image", "empty request", "unknown preset", "corrupt checkpoint",
    "mllm is not an mllm", "flux is not flux", "alignnet is not alignnet", "missing model dir",
    "mllm weights missing", "mllm weights corrupt", "mllm tokenizer missing", "flux part missing",
    "flux weights corrupt", "alignnet weights corrupt", "mllm hub id offline", "flux hub id offline", "alignnet hub id offline",
    "size flux cannot take", "bad output format", "no gpu",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_clear_line_and_exit_2(case, model_args, tmp_path, image_file, tiny_models, capsys):
    if case == "no gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    extra, expected = bad_input_cases(tmp_path, image_file, tiny_models)[case]
    code = generate(model_args, *extra)  # later flags override the defaults in model_args
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("x2i: error:") and expected in err[-1]
    assert not any("Traceback" in line for line in err)


def test_console_script_exit_code_and_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "x2i", "generate", "--mllm", "m", "--flux", "f", "--alignnet", "a", "--image", str(tmp_path / "none.png")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"x2i: error: image {tmp_path / 'none.png'} does not exist"


def test_distill_options_are_the_config_and_its_defaults():
    from x2i.app.cli import build_parser
    from x2i.options import config_from_args
    from x2i.training.distill import DistillConfig

    parser = build_parser()
    plain = config_from_args(DistillConfig, parser.parse_args(["distill", "--prompts", "p.txt", "--out", "run"]))
    assert plain == DistillConfig(prompts="p.txt", out="run")  # every default comes from the dataclass
    changed = config_from_args(DistillConfig, parser.parse_args([
        "distill", "--prompts", "p.txt", "--out", "run", "--terms", "image", "--refiner-layers", "2", "--pad-to", "128",
        "--no-gradient-checkpointing", "--resume", "--lr", "3e-4"]))
    assert (changed.terms, changed.refiner_layers, changed.pad_to, changed.gradient_checkpointing, changed.resume, changed.lr) == (
        "image", 2, 128, False, True, 3e-4)
    with pytest.raises(SystemExit):  # argparse refuses a value outside the choices
        parser.parse_args(["distill", "--prompts", "p", "--out", "o", "--terms", "some"])


def test_lightcontrol_and_lora_options_are_their_configs():
    from x2i.app.cli import build_parser
    from x2i.options import config_from_args
    from x2i.training.edit_training import LightControlConfig, LoraConfig

    parser = build_parser()
    plain = config_from_args(LightControlConfig, parser.parse_args(["lightcontrol", "train", "--triples", "t.jsonl", "--out", "run"]))
    assert plain == LightControlConfig(triples="t.jsonl", out="run") and plain.lr == 1e-5 and plain.channels == (64, 128, 256)
    changed = config_from_args(LightControlConfig, parser.parse_args(
        ["lightcontrol", "train", "--triples", "t", "--out", "o", "--channels", "16", "32", "128", "--resume"]))
    assert changed.channels == (16, 32, 128) and changed.resume
    lora = config_from_args(LoraConfig, parser.parse_args(["lora", "train", "--triples", "t", "--out", "o", "--rank", "8", "--lightcontrol", "mini"]))
    assert lora == LoraConfig(triples="t", out="o", rank=8, lightcontrol="mini") and lora.lr == 1e-4


def test_mini_recipe_options_are_their_configs():
    from x2i.app.cli import build_parser
    from x2i.mini.mllm import MLLMConfig
    from x2i.mini.teacher import TeacherConfig
    from x2i.options import config_from_args

    parser = build_parser()
    teacher = config_from_args(TeacherConfig, parser.parse_args(["mini", "train-teacher", "--out", "t", "--steps", "10", "--heads", "8"]))
    assert teacher == TeacherConfig(steps=10, heads=8)
    assert config_from_args(MLLMConfig, parser.parse_args(["mini", "train-mllm", "--out", "m"])) == MLLMConfig()


def test_generate_defaults_to_the_shipped_mini_models(tmp_path):
    from PIL import Image

    out = tmp_path / "default.png"
    assert main(["generate", "--prompt", "un grand cercle rouge à gauche", "--out", str(out), "--steps", "4"]) == 0
    assert Image.open(out).size == (64, 64)


@pytest.mark.parametrize(("typed", "alignnet"), [([], "mini"), (["--mllm", "mini-omni"], "mini-omni"), (["--mllm", "some/dir"], "mini"),
                                                 (["--mllm", "mini-omni", "--alignnet", "mine"], "mine")])
def test_the_alignnet_left_out_is_the_one_shipped_with_the_mllm(typed, alignnet):
    from x2i.app.cli import build_parser
    from x2i.app.commands import resolve_model_options

    for command in (["generate", "--prompt", "a red circle"], ["serve"], ["chat"]):
        args = build_parser(command[0]).parse_args([*command, *typed])
        resolve_model_options(args)
        assert args.alignnet == alignnet


def test_eval_fills_the_student_part(tmp_path, capsys):
    import json

    from x2i.mini.eval import make_cases

    cases = tmp_path / "cases.jsonl"
    cases.write_text("".join(json.dumps(c) + "\n" for c in make_cases(1, seed=3)))
    assert main(["eval", str(cases), "--json", "--steps", "2", "--save", str(tmp_path / "saved")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 12 and report["teacher"]["n"] == 1 and report["student"]["n"] == 12
    assert set(report["student"]["by_task"]) == {"text2image", "image2image", "imagetext2image", "multiimage2image"}
    rows = [json.loads(line) for line in (tmp_path / "saved" / "cases.jsonl").read_text().splitlines()]
    assert {r["model"] for r in rows} == {"teacher", "student"} and len(rows) == 13
    assert all((tmp_path / "saved" / r["image"]).is_file() for r in rows)


def test_distill_bad_input(tmp_path, tiny_models, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n\n")
    cases = {
        "missing prompts": (["--prompts", str(tmp_path / "none.txt")], "does not exist"),
        "empty prompts": (["--prompts", str(prompts)], "holds no prompts"),
        "unsupported prompts": (["--prompts", str(tmp_path)], "no .tar WebDataset shards"),
        "teacher without T5/CLIP": (["--prompts", str(tmp_path / "q.txt"), "--flux", str(tiny_models["flux"]), "--mllm", str(tiny_models["mllm"])],
                                    "no T5/CLIP"),
        "another FLUX, no MLLM named": (["--prompts", str(tmp_path / "q.txt"), "--flux", str(tiny_models["flux"])], "needs --mllm"),
        "no steps": (["--prompts", str(tmp_path / "q.txt"), "--steps", "0"], "at least 1"),
    }
    (tmp_path / "q.txt").write_text("a red circle\n")
    for name, (args, message) in cases.items():
        assert main(["distill", "--out", str(tmp_path / "run"), *args]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert message in err and err.startswith("x2i: error:"), (name, err)


def test_help_and_generate_options_do_not_import_the_trainers():
    code = "import sys; from x2i.app.cli import build_parser; build_parser('generate'); build_parser('eval'); print(sorted(m for m in ('torch', 'diffusers', 'accelerate') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr[-2000:]


def test_every_option_of_every_command_says_what_it_does():
    import argparse

    from x2i.app.cli import build_parser

    def commands(parser, name="x2i"):
        yield name, parser
        for action in parser._actions:  # argparse keeps its subcommands here only
            if isinstance(action, argparse._SubParsersAction):
                for word, sub in action.choices.items():
                    yield from commands(sub, f"{name} {word}")

    found = list(commands(build_parser()))
    assert len(found) > 20  # generate, eval, distill, the trainers, every mini step, ...
    for name, parser in found:
        options = [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
        assert all(a.help for a in options), (name, [a.option_strings for a in options if not a.help])
        shown = parser.format_help()
        assert "(default: None)" not in shown and "(default: True)" not in shown and "(default: False)" not in shown, name
