"""Conversations: x2i.Session keeps the turns, the MLLM reads them, the last picture is the next
turn's input; `x2i chat` does the same from a script."""

import io
import sys

import numpy as np
from conftest import write_sound
from PIL import Image

from x2i.app.cli import main
from x2i.inference.session import Session


def test_each_turn_edits_the_last_picture_and_reads_the_earlier_turns(pipeline):
    session = Session(pipeline, answer_tokens=4, height=32, width=32, num_inference_steps=2, show_progress=False)
    first = session.send("a red circle")[0]
    assert len(session.history) == 1 and session.history[0].images[0] is first and isinstance(session.history[0].answer, str)
    request = session.request("make it blue")
    assert request.media[0] is first  # the last picture comes first
    assert [(turn.text, answer) for turn, answer in request.history] == [("a red circle", session.history[0].answer)]
    text = pipeline.encoder.processor.tokenizer.decode(pipeline.encoder.prepare([request])["input_ids"][0])
    assert text.index("a red circle") < text.index("make it blue")  # the MLLM reads turn 1 before turn 2
    second = session.send("make it blue")[0]
    assert second.size == (32, 32) and len(session.history) == 2
    session.reset()
    assert session.history == [] and session.request("a square").media == []


def test_without_history_a_turn_reads_only_itself_and_the_last_picture(pipeline):
    session = Session(pipeline, answer_tokens=0, keep_history=False, height=32, width=32, num_inference_steps=1, show_progress=False)
    session.send("a red circle")
    request = session.request("make it blue")
    assert request.history == [] and len(request.media) == 1 and session.history[0].answer == ""


def test_x2i_chat_reads_one_turn_per_line_from_a_script(tiny_models, tmp_path, monkeypatch, capsys):
    image = tmp_path / "in.png"
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(image)
    write_sound(tmp_path / "tone.wav")  # a sound, which Qwen2.5-VL does not hear: refused when attached
    script = (f"a red circle\n/image {tmp_path / 'missing.png'}\n/audio {tmp_path / 'tone.wav'}\n/unknown thing\n/image {image}\n"
              "make it blue\n/reset\nein Quadrat\n/quit\nnever read\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    models = [f"--{k}={tiny_models[k]}" for k in ("mllm", "flux", "alignnet")]
    assert main(["chat", *models, "--out", str(tmp_path / "chat"), "--height", "32", "--width", "32", "--steps", "2", "--answer-tokens", "4"]) == 0
    out, err = capsys.readouterr()
    assert sorted(p.name for p in (tmp_path / "chat").iterdir()) == ["turn-1.png", "turn-2.png", "turn-3.png"]
    assert "x2i: error: image" in err and "missing.png does not exist" in err  # a bad turn says why; the chat goes on
    assert "unknown command /unknown" in err  # named as a command, never sent as a prompt
    assert "does not take audio" in err and err.count("x2i: error:") == 3  # the refused sound is dropped: the next turns go through
    assert "attached" in out and "new conversation" in out
