"""A whole pipeline saved as one folder (parts, settings, model card) and loaded back by
`X2IPipeline.from_pretrained(DIR)` and `x2i generate --pipeline DIR`; the AlignNet's card, written
by `x2i distill`, travels with it, into the pipeline's card and to the hub."""

import json

import numpy as np
import pytest
from huggingface_hub import ModelCard
from PIL import Image

from x2i.app.cli import main
from x2i.errors import X2IError
from x2i.inference.alignnet import AlignNet
from x2i.inference.pipeline import X2IPipeline
from x2i.inference.request import Request

EDIT = Request("make the circle blue", [Image.new("RGB", (64, 64), "white")])


def pictures(pipe, request=EDIT):
    return np.asarray(pipe(request, num_inference_steps=2, seed=5, show_progress=False)[0])


def test_a_saved_pipeline_loads_back_with_every_part_and_setting(tmp_path):
    pipe = X2IPipeline.from_pretrained("mini", "mini", "mini", lightcontrol="mini", lora="mini", lora_scale=0.5,
                                       condition_on="prompt", pad_to=96)
    saved = pipe.save_pretrained(tmp_path / "saved")
    parts = json.loads((saved / "x2i_pipeline.json").read_text())
    assert parts == {"mllm": "mini", "flux": "mini", "alignnet": "alignnet", "lightcontrol": "lightcontrol", "lora": "lora",
                     "lora_scale": 0.5, "condition_on": "prompt", "pad_to": 96, "flux_loras": []}
    assert sorted(p.name for p in saved.iterdir()) == ["README.md", "alignnet", "lightcontrol", "lora", "x2i_pipeline.json"]
    again = X2IPipeline.from_pretrained(saved)
    assert (again.condition_on, again.pad_to, again.lightcontrol is not None) == ("prompt", 96, True)
    assert np.array_equal(pictures(again), pictures(pipe))
    # given beside the folder, a setting wins
    assert X2IPipeline.from_pretrained(saved, condition_on="answer").condition_on == "answer"


def test_copy_holds_the_mllm_and_flux_too(tmp_path):
    pipe = X2IPipeline.from_pretrained("mini", "mini", "mini")
    saved = pipe.save_pretrained(tmp_path / "saved", copy=True)
    parts = json.loads((saved / "x2i_pipeline.json").read_text())
    assert (parts["mllm"], parts["flux"]) == ("mllm", "flux") and (saved / "flux" / "model_index.json").is_file()
    request = Request("a red circle on the left")
    assert np.array_equal(pictures(X2IPipeline.from_pretrained(saved), request), pictures(pipe, request))


def test_generate_with_a_pipeline_folder_is_the_saved_pipeline(tmp_path, capsys):
    pipe = X2IPipeline.from_pretrained("mini", "mini", "mini", condition_on="prompt")
    saved = pipe.save_pretrained(tmp_path / "saved")
    out = tmp_path / "o.png"
    assert main(["generate", "--pipeline", str(saved), "--prompt", "a red circle on the left", "--steps", "2", "--seed", "5",
                 "--out", str(out)]) == 0
    assert np.array_equal(np.asarray(Image.open(out)), pictures(pipe, Request("a red circle on the left")))
    assert main(["generate", "--pipeline", str(saved), "--mllm", str(tmp_path), "--prompt", "x", "--out", str(out)]) == 2
    assert main(["generate", "--pipeline", str(tmp_path), "--prompt", "x", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "leave out --mllm, --flux and --alignnet" in err and "is not a saved X2I pipeline" in err


def test_a_broken_pipeline_file_is_one_line(tmp_path):
    (tmp_path / "x2i_pipeline.json").write_text('{"mllm": "mini"')
    with pytest.raises(X2IError, match="is not a readable pipeline file"):
        X2IPipeline.from_pretrained(tmp_path)


def test_the_distillation_card_travels_with_the_alignnet(tmp_path, monkeypatch):
    """`x2i distill` writes the command and the models beside the AlignNet; from_pretrained reads it
    back, save_pretrained and push_to_hub carry it, and a saved pipeline's card quotes it with its scores."""
    import huggingface_hub

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle on the left\na big blue square\n")
    assert main(["distill", "--prompts", str(prompts), "--out", str(tmp_path / "run"), "--steps", "1", "--batch", "2", "--pad-to", "128"]) == 0
    alignnet = AlignNet.from_pretrained(tmp_path / "run" / "alignnet")
    card = alignnet.card
    assert card.data.library_name == "x2i" and "alignnet" in card.data.tags
    assert f"x2i distill --out {tmp_path / 'run'} --steps 1 --batch 2 --prompts {prompts}" in card.text and "| MLLM | `mini` |" in card.text

    uploaded = {}
    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo_id, **kw: huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}"))
    monkeypatch.setattr(huggingface_hub, "upload_folder", lambda folder_path, **kw: uploaded.update(
        {p.name: p.read_bytes() for p in __import__("pathlib").Path(folder_path).iterdir()}))
    alignnet.push_to_hub("someone/alignnet")
    assert sorted(uploaded) == ["README.md", "config.json", "diffusion_pytorch_model.safetensors"]
    assert uploaded["README.md"].decode() == str(card)  # its own card, not diffusers' generic one

    pipe = X2IPipeline.from_pretrained("mini", "mini", tmp_path / "run" / "alignnet")
    report = {"teacher": None, "student": {"n": 4, "overall": 0.75, "by_task": {"text2image": 0.75}, "by_lang": {"en": 0.75}}}
    pipeline_card = ModelCard.load(pipe.save_pretrained(tmp_path / "saved", scores=report) / "README.md")
    assert "x2i distill --out" in pipeline_card.text and "| student | 4 | 0.750 | text2image 0.750 | en 0.750 |" in pipeline_card.text


def test_community_flux_loras_are_saved_with_their_strengths(tmp_path):
    from test_flux_lora import lora_file

    path, _ = lora_file(tmp_path, "kohya")
    pipe = X2IPipeline.from_pretrained("mini", "mini", "mini", flux_loras=[(path, 0.5)])
    saved = pipe.save_pretrained(tmp_path / "saved")
    assert json.loads((saved / "x2i_pipeline.json").read_text())["flux_loras"] == [["flux-lora-0", 0.5]]
    request = Request("a red circle on the left")
    assert np.array_equal(pictures(X2IPipeline.from_pretrained(saved), request), pictures(pipe, request))
