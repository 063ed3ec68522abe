"""The mini world: 1 or 2 flat shapes on a plain light background, with their ground truth.

A scene is plain JSON: `{"objects": [{"shape": "circle", "color": "red", "size": "large",
"position": "left"}, ...]}`. Two objects never share a position. In an *expectation* an attribute
may be left out (any value passes); `render` fills what is missing at random.

    render(scene, rng)               a 64x64 RGB image
    apply_edit(scene, op)            the scene an edit op produces
    random_scene / random_edit       sampling, for training data and eval cases
    TASKS, MEDIA_TASKS               what each task puts to a model

Its words (captions, instructions in five languages) are in `x2i.mini.language`.
"""

from __future__ import annotations

import copy
import random

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
COLORS = ("red", "green", "blue", "yellow", "purple", "orange")
SIZES = ("small", "large")
POSITIONS = ("left", "right", "top", "bottom", "center")
ATTRIBUTES = ("shape", "color", "size", "position")
VALUES = {"shape": SHAPES, "color": COLORS, "size": SIZES, "position": POSITIONS}
LANGUAGES = ("en", "zh", "fr", "de", "es")
EDIT_OPS = ("recolor", "reshape", "resize", "move", "add", "remove")
# The world's tasks and what each puts to a model: how many input images, and whether it has text.
TASKS = {
    "text2image": {"images": 0, "text": True},
    "image2image": {"images": 1, "text": False},
    "imagetext2image": {"images": 1, "text": True},
    "multiimage2image": {"images": 2, "text": False},
}
# The tasks that hear, watch and read, made only when asked for: the scene's caption spoken in any
# language, a clip whose last frame is the scene ("draw the last frame"), the caption as a document
# page in any language. Their input is a file (`x2i.mini.media` makes it), written beside the cases.
MEDIA_TASKS = {
    "audio2image": {"images": 0, "text": True, "file": "audio"},
    "video2image": {"images": 0, "text": False, "file": "video"},
    "document2image": {"images": 0, "text": True, "file": "document"},
}
ALL_TASKS = {**TASKS, **MEDIA_TASKS}

IMAGE_SIZE = 64
RGB = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (240, 200, 0),
    "purple": (140, 40, 180),
    "orange": (250, 120, 0),
}
CENTERS = {"left": (12, 32), "right": (52, 32), "top": (32, 12), "bottom": (32, 52), "center": (32, 32)}
HALF_EXTENT = {"small": 4.5, "large": 7.5}  # half the side of the shape's bounding box, in pixels
BACKGROUNDS = ((245, 245, 240), (240, 240, 245), (248, 244, 236), (238, 242, 238))
# The `mini-style` LoRA's style: shapes drawn squat, three quarters as tall as wide. A style the mini
# VAE can draw (it cannot draw outlines, shadows or other backgrounds) and that leaves the judge's
# reading of shape, color, size and position as it is, so that it can be seen beside the scene.
SQUAT = 0.75


# ---- sampling -----------------------------------------------------------------------------------


def random_object(rng: random.Random, position: str | None = None) -> dict:
    obj = {a: rng.choice(VALUES[a]) for a in ATTRIBUTES}
    if position:
        obj["position"] = position
    return obj


def random_scene(rng: random.Random, num_objects: int | None = None) -> dict:
    n = num_objects or rng.choice((1, 2))
    positions = rng.sample(POSITIONS, n)
    return {"objects": [random_object(rng, p) for p in positions]}


def complete(scene: dict, rng: random.Random) -> dict:
    """Fill attributes an expectation leaves out, keeping positions distinct."""
    scene = copy.deepcopy(scene)
    taken = {o["position"] for o in scene["objects"] if "position" in o}
    for obj in scene["objects"]:
        for attr in ATTRIBUTES:
            if attr not in obj:
                choices = [p for p in POSITIONS if p not in taken] if attr == "position" else VALUES[attr]
                obj[attr] = rng.choice(choices)
                if attr == "position":
                    taken.add(obj[attr])
    return scene


# ---- rendering ----------------------------------------------------------------------------------


def render(scene: dict, rng: random.Random | None = None, jitter: bool = True, aspect: float = 1.0) -> Image.Image:
    """Draw the scene at 4x and downsample, for clean anti-aliased edges. Small random shifts and
    size changes (`jitter`) keep a model from learning single pixels. `aspect`: every shape's height
    as a share of its width (the squat style of the `mini-style` LoRA draws SQUAT). An object's
    "at" (x, y), where given, places it between the positions (a clip's frames in motion)."""
    rng = rng or random.Random(0)
    scene = complete(scene, rng)
    scale = 4
    background = rng.choice(BACKGROUNDS) if jitter else BACKGROUNDS[0]
    canvas = Image.new("RGB", (IMAGE_SIZE * scale, IMAGE_SIZE * scale), background)
    draw = ImageDraw.Draw(canvas)
    for obj in scene["objects"]:
        cx, cy = obj.get("at") or CENTERS[obj["position"]]
        r = HALF_EXTENT[obj["size"]]
        if jitter:
            cx, cy, r = cx + rng.uniform(-1.5, 1.5), cy + rng.uniform(-1.5, 1.5), r * rng.uniform(0.92, 1.08)
        box = [(cx - r) * scale, (cy - r * aspect) * scale, (cx + r) * scale, (cy + r * aspect) * scale]
        color = RGB[obj["color"]]
        if obj["shape"] == "circle":
            draw.ellipse(box, fill=color)
        elif obj["shape"] == "square":
            draw.rectangle(box, fill=color)
        else:
            draw.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) / 2, box[1])], fill=color)
    return canvas.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)


# ---- edits --------------------------------------------------------------------------------------


def apply_edit(scene: dict, op: dict) -> dict:
    """The scene after `op`; raises ValueError for an op the scene cannot take."""
    result = copy.deepcopy(scene)
    objects = result["objects"]
    kind = op["op"]
    if kind == "add":
        new = dict(op["add"])
        if len(objects) >= 2 or any(o["position"] == new.get("position") for o in objects):
            raise ValueError("add needs a free position and at most one object already")
        objects.append(new)
        return result
    index = op["object"]
    if not 0 <= index < len(objects):
        raise ValueError(f"object {index} is not in the scene")
    if kind == "remove":
        if len(objects) < 2:
            raise ValueError("remove would leave an empty scene")
        objects.pop(index)
    elif kind in ("recolor", "reshape", "resize", "move"):
        attr = {"recolor": "color", "reshape": "shape", "resize": "size", "move": "position"}[kind]
        value = op[attr]
        if objects[index][attr] == value:
            raise ValueError(f"the object is already {value}")
        if kind == "move" and any(o["position"] == value for i, o in enumerate(objects) if i != index):
            raise ValueError(f"position {value} is taken")
        objects[index][attr] = value
    else:
        raise ValueError(f"unknown edit op {kind!r}; ops: {', '.join(EDIT_OPS)}")
    return result


def random_edit(scene: dict, rng: random.Random, ops: tuple[str, ...] = EDIT_OPS) -> dict:
    """A valid edit op for `scene`, of one of `ops`."""
    while True:
        kind = rng.choice(ops)
        index = rng.randrange(len(scene["objects"]))
        if kind == "add":
            free = [p for p in POSITIONS if all(o["position"] != p for o in scene["objects"])]
            op = {"op": "add", "add": random_object(rng, rng.choice(free))}
        elif kind == "remove":
            op = {"op": "remove", "object": index}
        else:
            attr = {"recolor": "color", "reshape": "shape", "resize": "size", "move": "position"}[kind]
            op = {"op": kind, "object": index, attr: rng.choice(VALUES[attr])}
        try:
            apply_edit(scene, op)
            return op
        except ValueError:
            continue


def combine(scenes: list[dict]) -> dict:
    """Several scenes laid into one (their objects must have distinct positions)."""
    objects = [o for s in scenes for o in s["objects"]]
    if len({o["position"] for o in objects}) != len(objects):
        raise ValueError("the scenes' objects share a position")
    return {"objects": objects}
