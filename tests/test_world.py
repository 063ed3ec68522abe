import random

import numpy as np
import pytest

from x2i.mini.language import (
    WORDS,
    attribute_spans,
    caption,
    caption_with_spans,
    describe,
    edit,
    word_forms,
)
from x2i.mini.world import (
    EDIT_OPS,
    LANGUAGES,
    POSITIONS,
    apply_edit,
    combine,
    random_edit,
    random_scene,
    render,
)


def word(lang, attr, value):
    return word_forms(lang, attr, value)[0]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_captions_name_every_object_in_every_language(lang):
    rng = random.Random(0)
    for _ in range(200):
        scene = random_scene(rng)
        text = caption(scene, lang, rng)
        lowered = text.lower()
        for obj in scene["objects"]:
            assert word(lang, "shape", obj["shape"]).lower() in lowered
            color = word(lang, "color", obj["color"])
            assert color in lowered or (lang == "de" and color[:-1] in lowered)  # rot -> roter/rotes
            assert any(p.lower() in lowered for p in WORDS[lang]["position"][obj["position"]])


@pytest.mark.parametrize("lang", LANGUAGES)
def test_caption_spans_hold_each_objects_own_words(lang):
    rng = random.Random(1)
    for _ in range(200):
        scene = random_scene(rng, 2)
        text, spans = caption_with_spans(scene, lang, rng)
        assert len(spans) == 2 and spans[0][1] <= spans[1][0]
        for obj, other, (start, end) in zip(scene["objects"], scene["objects"][::-1], spans):
            words = text[start:end].lower()
            assert word(lang, "shape", obj["shape"]).lower() in words
            assert word(lang, "color", obj["color"]).lower() in words  # German endings follow the stem
            assert any(p.lower() in words for p in WORDS[lang]["position"][obj["position"]])
            # and none of the other object's place: a span never reaches into its neighbour
            assert not any(p.lower() in words for p in WORDS[lang]["position"][other["position"]])


@pytest.mark.parametrize("lang", LANGUAGES)
def test_each_attribute_word_is_found_whole_inside_its_objects_words(lang):
    rng = random.Random(2)
    for _ in range(200):
        scene = random_scene(rng)
        text, spans = caption_with_spans(scene, lang, rng)
        for obj, span in zip(scene["objects"], spans):
            found = dict(attribute_spans(text, span, obj, lang))
            assert set(found) == set(obj)  # shape, color, size and place, each once
            for attr, (start, end) in found.items():
                assert span[0] <= start < end <= span[1]
                said = text[start:end].lower()
                assert any(said.startswith(f.lower()) for f in word_forms(lang, attr, obj[attr]))
                if lang != "zh":  # whole words: German endings kept ("roter"), nothing cut
                    assert (end == len(text) or not text[end].isalpha()) and (start == 0 or not text[start - 1].isalpha())
        assert not attribute_spans(text, spans[0], {"color": "purple" if scene["objects"][0]["color"] != "purple" else "red"}, lang)


def test_captions_vary_in_phrasing():
    rng = random.Random(0)
    scene = {"objects": [{"shape": "circle", "color": "red", "size": "large", "position": "left"}]}
    for lang in LANGUAGES:
        assert len({caption(scene, lang, rng) for _ in range(40)}) >= 4


def test_expectations_may_leave_attributes_out():
    rng = random.Random(0)
    text = caption({"objects": [{"shape": "circle", "color": "red"}]}, "en", rng)
    assert "red circle" in text and not any(p in text for p in ("left", "right", "top", "bottom", "center", "middle"))


def test_scenes_never_share_a_position_and_render_at_64px():
    rng = random.Random(1)
    for _ in range(300):
        scene = random_scene(rng)
        positions = [o["position"] for o in scene["objects"]]
        assert len(set(positions)) == len(positions) and set(positions) <= set(POSITIONS)
    image = render(scene, random.Random(2))
    assert image.size == (64, 64) and image.mode == "RGB"
    assert np.array_equal(np.asarray(image), np.asarray(render(scene, random.Random(2))))


def test_edits_do_what_they_say():
    scene = {"objects": [{"shape": "circle", "color": "red", "size": "large", "position": "left"},
                         {"shape": "square", "color": "blue", "size": "small", "position": "top"}]}
    assert apply_edit(scene, {"op": "recolor", "object": 0, "color": "green"})["objects"][0]["color"] == "green"
    assert apply_edit(scene, {"op": "reshape", "object": 1, "shape": "triangle"})["objects"][1]["shape"] == "triangle"
    assert apply_edit(scene, {"op": "resize", "object": 0, "size": "small"})["objects"][0]["size"] == "small"
    assert apply_edit(scene, {"op": "move", "object": 0, "position": "center"})["objects"][0]["position"] == "center"
    assert apply_edit(scene, {"op": "remove", "object": 1})["objects"] == scene["objects"][:1]
    with pytest.raises(ValueError):
        apply_edit(scene, {"op": "move", "object": 0, "position": "top"})  # taken
    with pytest.raises(ValueError):
        apply_edit(scene, {"op": "add", "add": {"shape": "circle", "color": "red", "size": "small", "position": "right"}})
    assert scene["objects"][0]["color"] == "red"  # the input is left alone


@pytest.mark.parametrize("lang", LANGUAGES)
def test_random_edits_are_valid_and_worded(lang):
    rng = random.Random(3)
    seen = set()
    for _ in range(300):
        scene = random_scene(rng)
        op = random_edit(scene, rng)
        seen.add(op["op"])
        text, result = edit(scene, op, lang, rng)
        assert text and result != scene
        if op["op"] == "recolor":
            assert word(lang, "color", op["color"]) in text
    assert seen == set(EDIT_OPS)


def test_describe_and_combine():
    a = {"objects": [{"shape": "circle", "color": "orange", "size": "large", "position": "left"}]}
    b = {"objects": [{"shape": "square", "color": "blue", "size": "small", "position": "right"}]}
    assert describe(combine([a, b])) == "a large orange circle on the left and a small blue square on the right"
    # an image shows no order of objects, so the canonical wording takes them by place
    assert describe(combine([b, a])) == describe(combine([a, b]))
    with pytest.raises(ValueError):
        combine([a, a])
