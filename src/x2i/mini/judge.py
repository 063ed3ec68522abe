"""The judge: read the objects of a mini-world image, and score images GenEval-style.

Objects are the saturated blobs on the light, grey-ish background. For each blob:
color = nearest palette color of its median pixel; size = its bounding-box extent; shape = the
ideal circle, square or triangle (drawn into the same box) it overlaps best (IoU); position = the
nearest anchor to its box center. Beside the scene, `squat` sees the `mini-style` LoRA's style.
"""

from __future__ import annotations

import itertools

import numpy as np
from PIL import Image
from scipy import ndimage

from x2i.mini.world import CENTERS, HALF_EXTENT, IMAGE_SIZE, RGB, SQUAT

CHROMA_THRESHOLD = 0.25  # max(rgb) - min(rgb): objects are saturated, the background is not
MIN_AREA = 10  # pixels; smaller specks (noise in generated images) are not objects
SIZE_THRESHOLD = HALF_EXTENT["small"] + HALF_EXTENT["large"]  # box extent between 2*small and 2*large
PALETTE = np.array(list(RGB.values()), dtype=np.float32) / 255
PALETTE_NAMES = list(RGB)
SQUAT_WIDTH = (1 + 1 / SQUAT) / 2  # width over height, halfway between a plain shape's and a squat one's
# A shape's spread across over its spread down (the deviations of its pixels' x and y) is its width
# over its height for a circle or a square; an apex-up triangle's is sqrt(18/24) of it.
SPREAD = {"circle": 1.0, "square": 1.0, "triangle": (18 / 24) ** 0.5}


def _ideal_masks(h: int, w: int) -> dict[str, np.ndarray]:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    cy, cx = h / 2, w / 2
    return {
        "square": np.ones((h, w), bool),
        "circle": ((x - cx) / (w / 2)) ** 2 + ((y - cy) / (h / 2)) ** 2 <= 1.0,
        "triangle": np.abs(x - cx) <= (y / h) * (w / 2),  # apex up, base down
    }


def _blobs(image: Image.Image):
    """(RGB array, [(box, mask within the box), ...]) of the saturated blobs big enough to be objects."""
    if image.size != (IMAGE_SIZE, IMAGE_SIZE):
        image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    labels, _ = ndimage.label((rgb.max(-1) - rgb.min(-1)) > CHROMA_THRESHOLD)
    blobs = [(box, labels[box] == index) for index, box in enumerate(ndimage.find_objects(labels), start=1)]
    return rgb, [(box, blob) for box, blob in blobs if blob.sum() >= MIN_AREA]


def _shape(blob: np.ndarray) -> str:
    """The ideal shape, drawn into the blob's box, that the blob overlaps best (IoU)."""
    ious = {name: (blob & ideal).sum() / max((blob | ideal).sum(), 1) for name, ideal in _ideal_masks(*blob.shape).items()}
    return max(ious, key=ious.get)


def read_objects(image: Image.Image) -> list[dict]:
    """The objects in a mini-world image, each with shape, color, size and position."""
    rgb, blobs = _blobs(image)
    objects = []
    for box, blob in blobs:
        pixels = rgb[box][blob]
        color = PALETTE_NAMES[int(np.argmin(((PALETTE - np.median(pixels, axis=0)) ** 2).sum(-1)))]
        h, w = blob.shape
        shape = _shape(blob)
        size = "large" if max(h, w) > SIZE_THRESHOLD else "small"
        cy, cx = (box[0].start + box[0].stop) / 2, (box[1].start + box[1].stop) / 2
        position = min(CENTERS, key=lambda p: (CENTERS[p][0] - cx) ** 2 + (CENTERS[p][1] - cy) ** 2)
        objects.append({"shape": shape, "color": color, "size": size, "position": position})
    return objects


def squat(image: Image.Image) -> bool:
    """Whether the image is in the `mini-style` LoRA's squat style: its objects, on average, clearly
    wider than tall (an image without objects is not). Width over height is read from the spread of
    each object's pixels, not its box, which is a pixel off either way on a small shape."""
    widths = []
    for _, blob in _blobs(image)[1]:
        y, x = np.nonzero(blob)
        widths.append(float(x.std() / max(y.std(), 1e-6)) / SPREAD[_shape(blob)])
    return bool(widths) and float(np.mean(widths)) > SQUAT_WIDTH


def matches(expected: dict, found: dict) -> bool:
    return all(found.get(attr) == value for attr, value in expected.items())


def scene_correct(expected: dict, found_objects: list[dict]) -> bool:
    """GenEval-style: exactly the expected number of objects, matched one to one, every stated
    attribute of every expected object holding."""
    wanted = expected["objects"]
    if len(found_objects) != len(wanted):
        return False
    return any(
        all(matches(w, f) for w, f in zip(wanted, perm)) for perm in itertools.permutations(found_objects)
    )


def check_judge(n: int = 1000, seed: int = 12345) -> dict:
    """The judge on `n` fresh renders: accuracy and confusion per attribute, objects paired by
    position (positions are unique in a scene)."""
    import random

    from x2i.mini.world import ATTRIBUTES, VALUES, random_scene, render

    rng = random.Random(seed)
    confusion = {a: {t: {p: 0 for p in VALUES[a]} for t in VALUES[a]} for a in ATTRIBUTES}
    count_errors = scenes_right = 0
    for _ in range(n):
        scene = random_scene(rng)
        found = read_objects(render(scene, rng))
        scenes_right += scene_correct(scene, found)
        by_position = {o["position"]: o for o in found}
        if len(found) != len(scene["objects"]) or any(o["position"] not in by_position for o in scene["objects"]):
            count_errors += 1
            continue
        for obj in scene["objects"]:
            for attr in ATTRIBUTES:
                confusion[attr][obj[attr]][by_position[obj["position"]][attr]] += 1
    accuracy = {
        a: sum(m[v][v] for v in m) / max(sum(sum(row.values()) for row in m.values()), 1) for a, m in confusion.items()
    }
    return {"renders": n, "scene_accuracy": scenes_right / n, "object_count_errors": count_errors,
            "attribute_accuracy": accuracy, "confusion": confusion}
