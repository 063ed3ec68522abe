"""The mini world's languages: words and grammar for captions and edit instructions in en, zh,
fr, de and es, and the one canonical English wording of a scene.

    caption(scene, lang, rng)        a natural caption with varied phrasings
    caption_with_spans(...)          the same, with each object's words located in it
    instruction(scene, op, lang, rng) an edit op worded in that language
    edit(scene, op, lang, rng)       the instruction and the edited scene
    describe(scene)                  the canonical English wording (what the mini MLLM answers)
    words(text)                      the text cut into words (Chinese by its lexicon, as a segmenter would)
"""

from __future__ import annotations

import random
import re

from x2i.mini.world import COLORS, EDIT_OPS, LANGUAGES, POSITIONS, apply_edit

WORDS = {
    "en": {
        "shape": {"circle": "circle", "square": "square", "triangle": "triangle"},
        "color": {c: c for c in COLORS},
        "size": {"small": ("small", "little", "tiny"), "large": ("large", "big")},
        "position": {
            "left": ("on the left", "at the left", "on the left side"),
            "right": ("on the right", "at the right", "on the right side"),
            "top": ("at the top", "near the top", "in the upper part"),
            "bottom": ("at the bottom", "near the bottom", "in the lower part"),
            "center": ("in the center", "in the middle"),
        },
        "target": {  # where to move something
            "left": ("to the left",), "right": ("to the right",), "top": ("to the top",),
            "bottom": ("to the bottom",), "center": ("to the center", "to the middle"),
        },
    },
    "fr": {
        "shape": {"circle": "cercle", "square": "carré", "triangle": "triangle"},  # all masculine
        "color": {"red": "rouge", "green": "vert", "blue": "bleu", "yellow": "jaune", "purple": "violet", "orange": "orange"},
        "size": {"small": ("petit",), "large": ("grand", "gros")},
        "position": {
            "left": ("à gauche", "sur la gauche"), "right": ("à droite", "sur la droite"),
            "top": ("en haut",), "bottom": ("en bas",), "center": ("au centre", "au milieu"),
        },
        "target": {"left": ("à gauche",), "right": ("à droite",), "top": ("en haut",), "bottom": ("en bas",), "center": ("au centre",)},
    },
    "es": {
        "shape": {"circle": "círculo", "square": "cuadrado", "triangle": "triángulo"},  # all masculine
        "color": {"red": "rojo", "green": "verde", "blue": "azul", "yellow": "amarillo", "purple": "morado", "orange": "naranja"},
        "size": {"small": ("pequeño",), "large": ("grande",)},
        "position": {
            "left": ("a la izquierda",), "right": ("a la derecha",), "top": ("arriba", "en la parte superior"),
            "bottom": ("abajo", "en la parte inferior"), "center": ("en el centro", "en el medio"),
        },
        "target": {"left": ("a la izquierda",), "right": ("a la derecha",), "top": ("arriba",), "bottom": ("abajo",), "center": ("al centro",)},
    },
    "de": {
        "shape": {"circle": ("Kreis", "m"), "square": ("Quadrat", "n"), "triangle": ("Dreieck", "n")},
        "color": {"red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb", "purple": "lila", "orange": "orange"},
        "size": {"small": ("klein",), "large": ("groß",)},
        "position": {
            "left": ("links", "auf der linken Seite"), "right": ("rechts", "auf der rechten Seite"),
            "top": ("oben",), "bottom": ("unten",), "center": ("in der Mitte",),
        },
        "target": {"left": ("nach links",), "right": ("nach rechts",), "top": ("nach oben",), "bottom": ("nach unten",), "center": ("in die Mitte",)},
    },
    "zh": {
        "shape": {"circle": "圆形", "square": "正方形", "triangle": "三角形"},
        "color": {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "purple": "紫色", "orange": "橙色"},
        "size": {"small": ("小",), "large": ("大",)},
        "position": {
            "left": ("左边", "左侧"), "right": ("右边", "右侧"), "top": ("上方", "顶部"),
            "bottom": ("下方", "底部"), "center": ("中间", "中央"),
        },
        "target": {"left": ("左边",), "right": ("右边",), "top": ("上方",), "bottom": ("下方",), "center": ("中间",)},
    },
}
INDECLINABLE_DE = {"lila", "orange"}


def _de_adjective(word: str, ending: str) -> str:
    return word if word in INDECLINABLE_DE else word + ending


def noun_phrase(obj: dict, lang: str, rng: random.Random, definite: bool = False, accusative: bool = False) -> str:
    """'a large red circle' / 'the red circle' in `lang`, from the attributes the object has."""
    w = WORDS[lang]
    size = rng.choice(w["size"][obj["size"]]) if "size" in obj else None
    color = w["color"][obj["color"]] if "color" in obj else None
    shape = obj.get("shape")
    if lang == "en":
        words = [x for x in (size, color, w["shape"][shape] if shape else "shape") if x]
        phrase = " ".join(words)
        return ("the " if definite else ("an " if phrase[0] in "aeiou" else "a ")) + phrase
    if lang == "fr":
        noun = w["shape"][shape] if shape else "objet"
        article = "le" if definite else "un"
        return " ".join(x for x in (article, size, noun, color) if x)
    if lang == "es":
        noun = w["shape"][shape] if shape else "objeto"
        article = "el" if definite else "un"
        return " ".join(x for x in (article, noun, color, size) if x)
    if lang == "de":
        noun, gender = w["shape"][shape] if shape else ("Objekt", "n")
        if definite:  # weak endings after der/das/den
            article = {"m": "den" if accusative else "der", "n": "das"}[gender]
            ending = "en" if (gender == "m" and accusative) else "e"
        else:  # mixed endings after ein/einen
            article = {"m": "einen" if accusative else "ein", "n": "ein"}[gender]
            ending = {"m": "en" if accusative else "er", "n": "es"}[gender]
        adjectives = [_de_adjective(a, ending) for a in (size, color) if a]
        return " ".join([article, *adjectives, noun])
    # zh: 一个 + size + color + 的 + shape
    noun = w["shape"][shape] if shape else "图形"
    body = (size or "") + (color + ("的" if rng.random() < 0.5 else "") if color else "") + noun
    return body if definite else "一个" + body


def _position(obj: dict, lang: str, rng: random.Random) -> str:
    return rng.choice(WORDS[lang]["position"][obj["position"]]) if "position" in obj else ""


def _object_clause(obj: dict, lang: str, rng: random.Random) -> str:
    np, pos = noun_phrase(obj, lang, rng), _position(obj, lang, rng)
    if lang == "zh":
        if not pos:
            return np
        return rng.choice((f"{pos}有{np}", f"{np}在{pos}"))
    return f"{np} {pos}".strip()


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


JOIN = {"en": (" and ", ", and "), "fr": (" et ",), "es": (" y ",), "de": (" und ",), "zh": ("，", "；")}
FRAMES = {
    "en": ("{}", "{}", "{}.", "There is {}.", "An image of {}.", "A picture showing {}."),
    "fr": ("{}", "{}.", "Il y a {}.", "Une image avec {}."),
    "es": ("{}", "{}.", "Hay {}.", "Una imagen con {}."),
    "de": ("{}", "{}.", "Ein Bild mit {}.", "Zu sehen: {}."),
    "zh": ("{}", "{}。", "图中{}。", "画面里{}。"),
}


def caption(scene: dict, lang: str, rng: random.Random) -> str:
    """A natural caption of every object and attribute the scene states, in `lang`."""
    return caption_with_spans(scene, lang, rng)[0]


def caption_with_spans(scene: dict, lang: str, rng: random.Random) -> tuple[str, list[tuple[int, int]]]:
    """The caption, and for each object the (start, end) characters of the words that describe it."""
    if lang not in WORDS:
        raise ValueError(f"unknown language {lang!r}; the mini world speaks {', '.join(LANGUAGES)}")
    clauses = [_object_clause(o, lang, rng) for o in scene["objects"]]
    if lang == "de" and len(clauses) == 1 and "position" in scene["objects"][0] and rng.random() < 0.4:
        # verb-second order: "Links ist ein roter Kreis."
        obj = scene["objects"][0]
        text = f"{_capitalize(_position(obj, lang, rng))} ist {noun_phrase(obj, lang, rng)}."
        return text, [(0, len(text))]
    join = rng.choice(JOIN[lang])
    body = join.join(clauses)
    frame = rng.choice(FRAMES[lang])
    # "Ein Bild mit" takes the dative; keep German frames to those that do not inflect the phrase.
    if lang == "de" and frame.startswith("Ein Bild mit"):
        frame = "{}."
    text = frame.format(body)
    spans, start = [], frame.index("{}")
    for clause in clauses:
        spans.append((start, start + len(clause)))
        start += len(clause) + len(join)
    return (_capitalize(text) if rng.random() < 0.5 or frame != "{}" else text), spans



def word_forms(lang: str, attr: str, value: str) -> tuple[str, ...]:
    """The ways captions in `lang` write `value` of `attr` (a German noun without its gender)."""
    forms = WORDS[lang][attr][value]
    if attr == "shape" and lang == "de":
        return forms[:1]
    return (forms,) if isinstance(forms, str) else forms


def attribute_spans(text: str, span: tuple[int, int], obj: dict, lang: str) -> list[tuple[str, tuple[int, int]]]:
    """(attribute, (start, end)) for each of `obj`'s attributes whose words stand in `text[start:end]`
    (the object's words, as `caption_with_spans` gives them): whole words, endings included."""
    start, end = span
    clause = text[start:end].lower()
    found = []
    for attr in ("shape", "color", "size", "position"):
        if attr not in obj:
            continue
        for form in sorted(word_forms(lang, attr, obj[attr]), key=len, reverse=True):  # "on the left side" before "on the left"
            at = clause.find(form.lower())
            if at >= 0:
                stop = at + len(form)
                if lang != "zh":  # a German adjective's ending ("rot" -> "roter")
                    while stop < len(clause) and clause[stop].isalpha():
                        stop += 1
                found.append((attr, (start + at, start + stop)))
                break
    return found


# ---- edits --------------------------------------------------------------------------------------


def _reference(scene: dict, index: int, lang: str, rng: random.Random, accusative: bool = True) -> str:
    """'the red circle', or 'the circle on the left' when color and shape do not single it out."""
    obj = scene["objects"][index]
    others = [o for i, o in enumerate(scene["objects"]) if i != index]
    if any(o["shape"] == obj["shape"] and o["color"] == obj["color"] for o in others):
        np = noun_phrase({"shape": obj["shape"]}, lang, rng, definite=True, accusative=accusative)
        pos = _position(obj, lang, rng)
        if lang == "zh":
            return f"{pos}的{np}"
        return f"{np} {pos}"
    return noun_phrase({"shape": obj["shape"], "color": obj["color"]}, lang, rng, definite=True, accusative=accusative)


def instruction(scene: dict, op: dict, lang: str, rng: random.Random) -> str:
    """The edit op worded in `lang`."""
    w = WORDS[lang]
    kind = op["op"]
    if kind == "add":
        new = op["add"]
        np = noun_phrase({k: v for k, v in new.items() if k != "position"}, lang, rng, accusative=True)
        pos = _position(new, lang, rng)
        templates = {
            "en": ("add {np} {pos}", "put {np} {pos}", "also draw {np} {pos}"),
            "fr": ("ajoute {np} {pos}", "place {np} {pos}"),
            "es": ("añade {np} {pos}", "pon {np} {pos}"),
            "de": ("füge {np} {pos} hinzu", "zeichne {np} {pos}"),
            "zh": ("在{pos}添加{np}", "在{pos}加上{np}"),
        }
        return rng.choice(templates[lang]).format(np=np, pos=pos)
    ref = _reference(scene, op["object"], lang, rng)
    if kind == "remove":
        templates = {
            "en": ("remove {ref}", "delete {ref}", "take away {ref}"),
            "fr": ("enlève {ref}", "supprime {ref}"),
            "es": ("quita {ref}", "elimina {ref}"),
            "de": ("entferne {ref}", "lösche {ref}"),
            "zh": ("删除{ref}", "去掉{ref}"),
        }
        return rng.choice(templates[lang]).format(ref=ref)
    if kind == "recolor":
        color = w["color"][op["color"]]
        templates = {
            "en": ("make {ref} {v}", "change the color of {ref} to {v}", "paint {ref} {v}"),
            "fr": ("rends {ref} {v}", "colore {ref} en {v}"),
            "es": ("pinta {ref} de {v}",),  # not "cambia el color de {ref}": "de el" would need "del"
            "de": ("mach {ref} {v}", "färbe {ref} {v}"),
            "zh": ("把{ref}变成{v}", "将{ref}改为{v}"),
        }
        return rng.choice(templates[lang]).format(ref=ref, v=color)
    if kind == "reshape":
        target = noun_phrase({"shape": op["shape"]}, lang, rng, accusative=True)
        templates = {
            "en": ("turn {ref} into {v}", "change {ref} into {v}"),
            "fr": ("transforme {ref} en {v}",),
            "es": ("convierte {ref} en {v}",),
            "de": ("verwandle {ref} in {v}",),
            "zh": ("把{ref}变成{v}", "将{ref}换成{v}"),
        }
        if lang == "zh":
            target = w["shape"][op["shape"]]
        return rng.choice(templates[lang]).format(ref=ref, v=target)
    if kind == "resize":
        bigger = op["size"] == "large"
        templates = {
            "en": ("make {ref} bigger", "enlarge {ref}") if bigger else ("make {ref} smaller", "shrink {ref}"),
            "fr": ("agrandis {ref}",) if bigger else ("rapetisse {ref}", "réduis {ref}"),
            "es": ("haz más grande {ref}", "agranda {ref}") if bigger else ("haz más pequeño {ref}", "reduce {ref}"),
            "de": ("vergrößere {ref}", "mach {ref} größer") if bigger else ("verkleinere {ref}", "mach {ref} kleiner"),
            "zh": ("把{ref}变大", "放大{ref}") if bigger else ("把{ref}变小", "缩小{ref}"),
        }
        return rng.choice(templates[lang]).format(ref=ref)
    if kind == "move":
        target = rng.choice(w["target"][op["position"]])
        templates = {
            "en": ("move {ref} {v}", "put {ref} {v}"),
            "fr": ("déplace {ref} {v}",),
            "es": ("mueve {ref} {v}",),
            "de": ("schiebe {ref} {v}", "verschiebe {ref} {v}"),
            "zh": ("把{ref}移到{v}", "将{ref}移动到{v}"),
        }
        return rng.choice(templates[lang]).format(ref=ref, v=target)
    raise ValueError(f"unknown edit op {kind!r}; ops: {', '.join(EDIT_OPS)}")


def edit(scene: dict, op: dict, lang: str, rng: random.Random) -> tuple[str, dict]:
    """An edit instruction in `lang` and the scene it produces."""
    result = apply_edit(scene, op)
    return instruction(scene, op, lang, rng), result


def describe(scene: dict) -> str:
    """The one canonical English wording of a scene (first synonym, objects by place): what the mini
    MLLM answers, so an answer can be compared word for word."""
    parts = []
    # Objects in the world's order of places: an image shows no order, so the answer must not need one.
    for obj in sorted(scene["objects"], key=lambda o: POSITIONS.index(o["position"])):
        words = [WORDS["en"]["size"][obj["size"]][0], obj["color"], obj["shape"]]
        parts.append(f"{'an' if words[0][0] in 'aeiou' else 'a'} {' '.join(words)} {WORDS['en']['position'][obj['position']][0]}")
    return " and ".join(parts)


# ---- words --------------------------------------------------------------------------------------

# Every Chinese word the world's sentences are made of, as a dictionary segmenter (jieba) cuts them.
ZH_LEXICON = frozenset(
    [*WORDS["zh"]["shape"].values(), *WORDS["zh"]["color"].values(), "图形", "大", "小"]
    + [p for places in WORDS["zh"]["position"].values() for p in places]
    + "一个 的 有 在 图中 画面 里 把 将 变成 改为 换成 添加 加上 删除 去掉 变大 变小 放大 缩小 移到 移动 到".split()
)
CJK = re.compile(r"[\u4e00-\u9fff]+")


def words(text: str) -> list[str]:
    """`text` cut into words: Chinese runs by longest match against the world's lexicon (a character
    it does not know is a word of its own), everything else at spaces and punctuation."""
    out, at = [], 0
    for run in CJK.finditer(text):
        out += re.findall(r"\w+|[^\w\s]", text[at : run.start()])
        i, chinese = 0, run.group()
        while i < len(chinese):
            n = next(n for n in range(min(4, len(chinese) - i), 0, -1) if n == 1 or chinese[i : i + n] in ZH_LEXICON)
            out.append(chinese[i : i + n])
            i += n
        at = run.end()
    return out + re.findall(r"\w+|[^\w\s]", text[at:])
