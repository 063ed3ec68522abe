"""The mini MLLM's tokenizer splits every language the way real MLLM tokenizers do: pieces within
words (Chinese included, which is written without spaces), a few characters each."""

import random
import re

import pytest

from x2i.inference.loaders import load_encoder
from x2i.inference.locations import locate
from x2i.mini.language import caption, edit, words
from x2i.mini.mllm import MLLMConfig, build_mini_tokenizer
from x2i.mini.world import LANGUAGES, random_edit, random_scene


def word_spans(text: str) -> list[tuple[int, int]]:
    spans, at = [], 0
    for word in words(text):
        start = text.index(word, at)
        spans.append((start, start + len(word)))
        at = start + len(word)
    return spans


def pieces(tokenizer, text: str) -> list[tuple[int, int]]:
    """Each token's characters, the leading space a byte-level token carries left out."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return [(a + (text[a] == " "), b) for a, b in offsets if b > a + (text[a] == " ")]


def test_words_cut_chinese_as_a_dictionary_segmenter_does():
    assert words("一个大红色圆形在左边；一个小蓝色的正方形在顶部") == [
        "一个", "大", "红色", "圆形", "在", "左边", "；", "一个", "小", "蓝色", "的", "正方形", "在", "顶部"]
    assert words("Ein roter Kreis, links.") == ["Ein", "roter", "Kreis", ",", "links", "."]


@pytest.mark.parametrize("which", ["recipe", "shipped"])
def test_tokens_stay_within_words_in_every_language(which):
    tokenizer = build_mini_tokenizer(MLLMConfig()) if which == "recipe" else load_encoder(locate("mini", "mllm")).processor.tokenizer
    rng = random.Random(404)
    for lang in LANGUAGES:
        lengths = []
        for _ in range(100):
            scene = random_scene(rng)
            for text in (caption(scene, lang, rng), edit(scene, random_edit(scene, rng), lang, rng)[0]):
                spans = word_spans(text)
                for a, b in pieces(tokenizer, text):
                    assert any(s <= a and b <= e for s, e in spans), (lang, text, text[a:b])
                    if re.fullmatch(r"[\u4e00-\u9fff]+", text[a:b]):
                        lengths.append(b - a)
        if lang == "zh":  # real MLLM tokenizers: mostly one to three characters
            assert 1.0 <= sum(lengths) / len(lengths) <= 3.0 and max(lengths) <= 3
