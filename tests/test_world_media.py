"""The world heard, watched and read: speech by espeak-ng, clips that end on their scene, documents
in real fonts, and the cases of the three file tasks, made, loaded, and given to a reader that
takes them."""

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from x2i.app.cli import main
from x2i.errors import X2IError
from x2i.media import Audio, Video
from x2i.mini import media
from x2i.mini.eval import case_inputs, load_cases, make_cases, readers
from x2i.mini.judge import read_objects, scene_correct
from x2i.mini.language import attribute_spans, caption, caption_with_spans
from x2i.mini.readout import sound_tokens
from x2i.mini.world import LANGUAGES, MEDIA_TASKS, random_scene

SCENE = {"objects": [{"shape": "square", "color": "blue", "size": "large", "position": "left"},
                     {"shape": "circle", "color": "orange", "size": "large", "position": "top"}]}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_caption_is_spoken_in_its_language_by_varied_speakers(lang, tmp_path):
    text = caption(SCENE, lang, random.Random(0))
    (a, rate), (b, _) = media.speak(text, lang, random.Random(1)), media.speak(text, lang, random.Random(2))
    assert 1.0 < a.size / rate < 15 and np.abs(a).max() > 0.1  # seconds of speech, not silence
    assert a.size != b.size or not np.allclose(a, b)  # another speaker, rate or pitch
    media.write_wav(tmp_path / "said.wav", a, rate)
    heard = Audio.load(tmp_path / "said.wav").decode(16000)
    assert abs(heard.size / 16000 - a.size / rate) < 0.01


def test_speech_differs_between_languages():
    rng = random.Random(0)
    lengths = {lang: media.speak(caption(SCENE, lang, rng), lang, random.Random(3))[0].size for lang in LANGUAGES}
    assert len(set(lengths.values())) == len(LANGUAGES)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_each_attribute_word_is_said_when_espeak_says_it_is(lang):
    text, spans = caption_with_spans(SCENE, lang, random.Random(5))
    samples, rate, words = media.speak_words(text, lang, random.Random(6))
    starts = [t for _, t in words]
    assert starts == sorted(starts) and len(set(starts)) == len(starts) and starts[-1] < samples.size / rate
    assert np.array_equal(samples, media.speak(text, lang, random.Random(6))[0])  # the same speech as speak gives
    said = [span for obj, object_span in zip(SCENE["objects"], spans) for _, span in attribute_spans(text, object_span, obj, lang)]
    assert len(said) == 8
    for start, end in said:
        t0, t1 = media.spoken_span(words, (start, end), samples.size / rate)
        assert 0 <= t0 < t1 <= samples.size / rate
        # the same speaker saying the caption up to this word stops about when the word ends
        prefix, _, _ = media.speak_words(text[:end], lang, random.Random(6))
        loud = np.nonzero(np.abs(prefix) > 0.02)[0]
        assert abs(loud[-1] / rate - t1) < 0.35 or t1 == samples.size / rate, (text[start:end], loud[-1] / rate, t1)


def test_a_words_seconds_are_its_sound_tokens():
    ids = torch.tensor([7] * 3 + [9] * 50 + [7] * 4)  # 50 sound tokens (9) for 2 seconds, text (7) around them
    assert sound_tokens(ids, 9, (0.5, 1.0), 2.0) == list(range(3 + 12, 3 + 25))
    assert sound_tokens(ids, 9, (1.99, 2.0), 2.0) == [3 + 49]


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_a_clip_ends_on_its_scene_and_begins_elsewhere(suffix, tmp_path):
    judged_last, judged_first = [], []
    for seed in range(6):
        scene = random_scene(random.Random(seed), 2)
        media.write_clip(tmp_path / f"clip{suffix}", media.clip_frames(scene, random.Random(seed)))
        frames = [Image.fromarray(f) for f in Video.load(tmp_path / f"clip{suffix}").frames()]  # as a reader samples it: 2 fps
        assert len(frames) >= 4
        judged_last.append(scene_correct(scene, read_objects(frames[-1])) and scene_correct(scene, read_objects(frames[-2])))
        judged_first.append(scene_correct(scene, read_objects(frames[0])))
    assert all(judged_last) and not any(judged_first)


def test_frames_in_memory_are_sampled_as_a_file_is(tmp_path):
    frames = media.clip_frames(SCENE, random.Random(4))
    media.write_clip(tmp_path / "clip.mp4", frames)
    from_file, in_memory = Video.load(tmp_path / "clip.mp4").frames(), Video.from_frames(frames, media.CLIP_FPS).frames()
    assert len(from_file) == len(in_memory)
    assert max(np.abs(a.astype(int) - b).mean() for a, b in zip(from_file, in_memory)) < 4  # H.264's loss only
    with pytest.raises(X2IError, match="one or more RGB frames"):
        Video.from_frames([], 8)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_document_shows_its_text_in_a_font_that_writes_it(lang):
    page = media.document(caption(SCENE, lang, random.Random(0)), lang, random.Random(5))
    assert page.size == media.PAGE
    ink = (np.asarray(page.convert("L")) < 120).mean()
    assert 0.01 < ink < 0.3
    assert all("CJK" in path.name for path in media.fonts("zh"))
    # every character drawn: no font's "missing glyph" box stands in for Chinese
    blank = media.document("", lang, random.Random(5))
    assert (np.asarray(page) != np.asarray(blank)).any()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_typeset_says_where_every_character_is_drawn(lang):
    rng = random.Random(8)
    for seed in range(20):
        text = caption(random_scene(rng), lang, rng)
        page, boxes = media.typeset(text, lang, random.Random(seed))
        assert np.array_equal(np.asarray(page), np.asarray(media.document(text, lang, random.Random(seed))))
        assert all(box is not None or char == " " for char, box in zip(text, boxes))
        drawn = [box for char, box in zip(text, boxes) if box and char != " "]
        assert all(0 <= x0 < x1 <= media.PAGE[0] and 0 <= y0 < y1 <= media.PAGE[1] for x0, y0, x1, y1 in drawn)
        inside = np.zeros(page.size[::-1], bool)
        for x0, y0, x1, y1 in drawn:
            inside[int(y0) - 1 : int(y1) + 3, max(int(x0) - 1, 0) : int(x1) + 2] = True
        gray = np.asarray(page.convert("L")).astype(int)
        ink = np.abs(gray - np.median(gray[inside])) > 60  # glyphs against the paper (or the bubble) under them
        ink[:19] = False  # a card's title bar
        assert ink[inside].sum() > 0.97 * ink.sum()  # the text's ink lies in its characters' boxes


def test_file_cases_are_written_beside_the_case_file_and_load_back(tmp_path, capsys):
    out = tmp_path / "cases.jsonl"
    assert main(["mini", "make-cases", "--out", str(out), "--n", "2", "--tasks", *MEDIA_TASKS, "--langs", "en", "zh", "--seed", "3"]) in (0, None)
    cases = [json.loads(line) for line in out.read_text().splitlines()]
    assert [c["task"] for c in cases].count("video2image") == 2 and [c["task"] for c in cases].count("audio2image") == 4
    assert {c.get("audio", c.get("video", c.get("document"))).split("/")[0] for c in cases} == {"cases-media"}
    loaded = load_cases(out)
    for case in loaded:
        text, inputs = case_inputs(case, random.Random(0))
        kind = {"audio2image": Audio, "video2image": Video, "document2image": Image.Image}[case["task"]]
        assert len(inputs) == 1 and isinstance(inputs[0], kind)
        assert text == (media.LAST_FRAME if case["task"] == "video2image" else "")
    assert make_cases(2, MEDIA_TASKS, ("en", "zh"), seed=3, media=tmp_path / "again") == [
        {k: v.replace("cases-media", "again") if isinstance(v, str) else v for k, v in c.items()} for c in cases]


def test_a_cut_run_leaves_the_old_cases_files_intact(tmp_path, monkeypatch):
    out = tmp_path / "cases.jsonl"
    assert main(["mini", "make-cases", "--out", str(out), "--n", "2", "--tasks", "document2image", "--langs", "en", "--seed", "3"]) in (0, None)
    before = {p.name: p.read_bytes() for p in (tmp_path / "cases-media").iterdir()}
    made = []

    def document_then_cut(text, lang, rng):
        if made:
            raise KeyboardInterrupt  # cut after the first new file is written
        made.append(text)
        return media.document(text, lang, rng)

    monkeypatch.setattr("x2i.mini.eval.document", document_then_cut)
    assert main(["mini", "make-cases", "--out", str(out), "--n", "2", "--tasks", "document2image", "--langs", "en", "--seed", "4"]) == 130
    assert made and {p.name: p.read_bytes() for p in (tmp_path / "cases-media").iterdir()} == before
    assert all((tmp_path / c["document"]).is_file() for c in map(json.loads, out.read_text().splitlines()))
    monkeypatch.undo()
    assert main(["mini", "make-cases", "--out", str(out), "--n", "2", "--tasks", "document2image", "--langs", "en", "--seed", "4"]) in (0, None)
    assert {p.name: p.read_bytes() for p in (tmp_path / "cases-media").iterdir()} != before  # a whole run replaces them
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cases-media", "cases.jsonl"]


def test_a_missing_or_broken_file_names_the_line(tmp_path):
    (tmp_path / "broken.wav").write_text("not sound")
    for line, message in [({"task": "audio2image", "expect": SCENE}, "names its audio file"),
                          ({"task": "video2image", "video": "none.mp4", "expect": SCENE}, "video file not found"),
                          ({"task": "audio2image", "audio": "broken.wav", "expect": SCENE}, "cannot read audio")]:
        (tmp_path / "cases.jsonl").write_text(json.dumps(line) + "\n")
        with pytest.raises(X2IError, match=message) as err:
            load_cases(tmp_path / "cases.jsonl")
        assert "cases.jsonl:1" in str(err.value)


def test_each_case_goes_to_a_reader_that_takes_it(tmp_path, tiny_readers, capsys):
    path = _write(tmp_path, make_cases(1, ("text2image", "video2image", "document2image", "audio2image"), ("en",), seed=1,
                                       media=tmp_path / "cases-media"))
    cases = load_cases(path)
    assert readers(cases, None) == {"mini": [0, 1, 2], "mini-omni": [3]}  # sound to the shipped reader that hears
    with pytest.raises(X2IError, match=r"case 4 \(audio2image\) gives audio, which the MLLM mini does not take"):
        readers(cases, "mini")
    omni = str(tiny_readers["qwen2_5_omni"]["mllm"])
    assert readers(cases, omni) == {omni: [0, 1, 2, 3]}
    # the command says so in one line, before any model loads
    assert main(["eval", str(path), "--models", "student", "--mllm", "mini"]) == 2
    assert "which the MLLM mini does not take" in capsys.readouterr().err


def _write(tmp_path, cases):
    path = tmp_path / "cases.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in cases))
    return path
