import json
import random

import pytest

from x2i.app.cli import main
from x2i.errors import X2IError
from x2i.mini.eval import case_inputs, load_cases, make_cases, summarize
from x2i.mini.language import WORDS
from x2i.mini.world import LANGUAGES, TASKS


def write(tmp_path, *lines):
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_made_cases_load_back_and_cover_every_task_and_language(tmp_path):
    cases = make_cases(2, seed=0)
    path = write(tmp_path, *(json.dumps(c) for c in cases))
    loaded = load_cases(path)
    assert loaded == cases
    assert {c["task"] for c in loaded} == set(TASKS)
    assert {c["lang"] for c in loaded if c["task"] == "text2image"} == set(LANGUAGES)
    multi = [c for c in loaded if c["task"] == "multiimage2image"]
    assert all(len(c["images"]) == 2 and len(c["expect"]["objects"]) == 2 for c in multi)


def test_case_inputs_are_worded_in_the_case_language():
    rng = random.Random(0)
    case = {"task": "imagetext2image", "lang": "zh", "images": [
        {"objects": [{"shape": "circle", "color": "red", "size": "large", "position": "left"}]}],
        "instruction": {"op": "recolor", "object": 0, "color": "blue"}, "expect": {"objects": [{"color": "blue"}]}}
    text, images = case_inputs(case, rng)
    assert WORDS["zh"]["color"]["blue"] in text and len(images) == 1 and images[0].size == (64, 64)
    assert case_inputs({**case, "text": "make it blue"}, rng).text == "make it blue"


@pytest.mark.parametrize("line, message", [
    ('{"task": "paint", "expect": {"objects": [{}]}}', "task must be one of"),
    ('{"task": "text2image", "lang": "it", "expect": {"objects": [{}]}}', "lang must be one of"),
    ('{"task": "text2image", "expect": {"objects": [{"color": "pink"}]}}', "color='pink' is not in the mini world"),
    ('{"task": "image2image", "expect": {"objects": [{"color": "red"}]}}', "takes 1 input image"),
    ('{"task": "image2image", "images": [{"objects": [{"color": "red"}]}], "expect": {"objects": [{}]}}', "need all of"),
    ('{"task": "imagetext2image", "images": [{"objects": [{"shape": "circle", "color": "red", "size": "large", "position": "left"}]}], '
     '"instruction": {"op": "remove", "object": 0}, "expect": {"objects": [{}]}}', "does not apply"),
    ("not json", "not a JSON object"),
])
def test_bad_cases_name_the_line(tmp_path, line, message):
    path = write(tmp_path, json.dumps({"task": "text2image", "expect": {"objects": [{"color": "red"}]}}), line)
    with pytest.raises(X2IError, match=message) as err:
        load_cases(path)
    assert f"{path}:2" in str(err.value)


def test_summary():
    def result(task, lang, n, correct):
        return {"case": {"task": task, "lang": lang, "expect": {"objects": [{}] * n}}, "correct": correct}

    report = summarize([result("text2image", "en", 1, True), result("text2image", "fr", 2, False),
                        result("image2image", "en", 2, True), result("text2image", "en", 1, True)])
    assert report == {"overall": 0.75, "by_task": {"image2image": 1.0, "text2image": 0.6667},
                      "by_lang": {"en": 1.0, "fr": 0.0}, "by_objects": {"1": 1.0, "2": 0.5}, "n": 4}


def test_eval_cli_bad_input(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "missing.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["mini", "make-cases", "--out", str(tmp_path / "c.jsonl"), "--langs", "it"]) == 2
    assert "unknown task or language ['it']" in capsys.readouterr().err
