"""GenEval-style evaluation in the mini world: cases in, images made, the judge scores them.

A case (one JSON object per line):
    {"task": "text2image", "lang": "fr", "expect": SCENE}                     caption written by the world
    {"task": "imagetext2image", "lang": "de", "images": [SCENE],
     "instruction": {"op": "recolor", "object": 0, "color": "blue"}, "expect": SCENE}
    {"task": "image2image" | "multiimage2image", "images": [SCENE, ...], "expect": SCENE}
    {"task": "audio2image", "lang": "zh", "audio": "cases-media/00007.wav", "said": CAPTION, "expect": SCENE}
    {"task": "video2image", "video": "cases-media/00008.mp4", "expect": SCENE}      "draw the last frame"
    {"task": "document2image", "lang": "fr", "document": "cases-media/00009.png", "shows": CAPTION, "expect": SCENE}
A "text" field replaces the world's wording (for a file task: the text beside the file). Files are
relative to the case file. The teacher (FLUX with T5/CLIP) is scored on the English text2image cases
only; the student (MLLM -> AlignNet -> FLUX) on every case, each read by `--mllm` or, unless given,
by the first shipped reader that takes the case's media.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image
from tqdm.auto import tqdm

from x2i.errors import X2IError
from x2i.inference.request import Request
from x2i.media import Audio, Video, load_image
from x2i.media.files import atomic_directory
from x2i.mini.judge import read_objects, scene_correct
from x2i.mini.language import caption, instruction
from x2i.mini.media import (
    LAST_FRAME,
    clip_frames,
    document,
    speak,
    write_clip,
    write_wav,
)
from x2i.mini.world import (
    ALL_TASKS,
    ATTRIBUTES,
    EDIT_OPS,
    LANGUAGES,
    MEDIA_TASKS,
    POSITIONS,
    TASKS,
    VALUES,
    apply_edit,
    combine,
    random_edit,
    random_object,
    random_scene,
    render,
)
from x2i.training.data import read_jsonl

# ---- cases --------------------------------------------------------------------------------------


def make_cases(n: int, tasks=TASKS, langs=LANGUAGES, seed: int = 0, num_objects: int | None = None, media: Path | None = None) -> list[dict]:
    """`n` fresh cases for each (task, language) pair; languages only matter where there is text.
    The file tasks' inputs are written into the directory `media`, and named relative to its parent
    (where the case file goes). The directory is written whole: a new one replaces an older one
    only once all its files are written, so a cut run leaves the old cases' files intact."""
    if any(task in MEDIA_TASKS for task in tasks):
        if media is None:
            raise X2IError(f"{', '.join(t for t in tasks if t in MEDIA_TASKS)} cases need a directory for their files")
        with atomic_directory(media) as written:
            return _make_cases(n, tasks, langs, seed, num_objects, written, media.name)
    return _make_cases(n, tasks, langs, seed, num_objects, None, "")


def _make_cases(n, tasks, langs, seed, num_objects, written: Path | None, media_name: str) -> list[dict]:
    rng = random.Random(seed)
    cases = []
    for task in tasks:
        for lang in langs if ALL_TASKS[task]["text"] else ("en",):
            for _ in range(n):
                scene = random_scene(rng, num_objects)
                if task == "text2image":
                    cases.append({"task": task, "lang": lang, "expect": scene})
                elif task == "image2image":
                    cases.append({"task": task, "lang": lang, "images": [scene], "expect": scene})
                elif task == "imagetext2image":
                    op = random_edit(scene, rng)
                    cases.append({"task": task, "lang": lang, "images": [scene], "instruction": op, "expect": apply_edit(scene, op)})
                elif task == "multiimage2image":
                    a, b = ({"objects": [random_object(rng, p)]} for p in rng.sample(POSITIONS, 2))
                    cases.append({"task": task, "lang": lang, "images": [a, b], "expect": combine([a, b])})
                else:
                    cases.append(_file_case(task, lang, scene, written, media_name, len(cases), rng))
    return cases


def _file_case(task: str, lang: str, scene: dict, written: Path, media_name: str, number: int, rng: random.Random) -> dict:
    """A case of a file task, its file written into `written` and named as in `media_name`."""
    case, name = {"task": task, "lang": lang}, f"{number:05d}"
    if task == "audio2image":
        case["said"] = caption(scene, lang, rng)
        write_wav(written / f"{name}.wav", *speak(case["said"], lang, rng))
        case["audio"] = f"{media_name}/{name}.wav"
    elif task == "video2image":
        file = f"{name}{('.mp4', '.gif')[number % 2]}"  # both, in turn
        write_clip(written / file, clip_frames(scene, rng))
        case["video"] = f"{media_name}/{file}"
    else:
        case["shows"] = caption(scene, lang, rng)
        document(case["shows"], lang, rng).save(written / f"{name}.png")
        case["document"] = f"{media_name}/{name}.png"
    return {**case, "expect": scene}


def _check_scene(scene, where: str, complete: bool) -> None:
    if not isinstance(scene, dict) or not isinstance(scene.get("objects"), list) or not 1 <= len(scene["objects"]) <= 2:
        raise X2IError(f"{where}: a scene is {{\"objects\": [1 or 2 objects]}}")
    for obj in scene["objects"]:
        if not isinstance(obj, dict):
            raise X2IError(f"{where}: an object is {{\"shape\": ..., \"color\": ..., \"size\": ..., \"position\": ...}}")
        for attr, value in obj.items():
            if attr not in VALUES or not isinstance(value, str) or value not in VALUES[attr]:
                raise X2IError(f"{where}: {attr}={value!r} is not in the mini world (see x2i.mini.world)")
        if complete and set(obj) != set(ATTRIBUTES):
            raise X2IError(f"{where}: an input image's objects need all of {', '.join(ATTRIBUTES)}")


def load_cases(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise X2IError(f"case file {path} does not exist")
    cases = []
    for where, case in read_jsonl(path):
        if not isinstance(case, dict):
            raise X2IError(f"{where}: not a JSON object")
        if not isinstance(case.get("task"), str) or case["task"] not in ALL_TASKS:
            raise X2IError(f"{where}: task must be one of {', '.join(ALL_TASKS)}")
        case.setdefault("lang", "en")
        if not isinstance(case["lang"], str) or case["lang"] not in LANGUAGES:
            raise X2IError(f"{where}: lang must be one of {', '.join(LANGUAGES)}")
        _check_scene(case.get("expect"), where, complete=False)
        needs_images = ALL_TASKS[case["task"]]["images"]
        images = case.get("images", [])
        if not isinstance(images, list) or len(images) < needs_images or (needs_images == 0 and images):
            raise X2IError(f"{where}: a {case['task']} case takes {needs_images or 'no'} input image(s)")
        for scene in images:
            _check_scene(scene, where, complete=True)
        if case["task"] in MEDIA_TASKS:
            _check_file(case, where, path.parent)
        if "text" in case and not isinstance(case["text"], str):
            raise X2IError(f"{where}: a case's text is a string")
        if case["task"] == "imagetext2image" and "text" not in case:
            op = case.get("instruction")
            if not isinstance(op, dict) or op.get("op") not in EDIT_OPS:
                raise X2IError(f"{where}: an imagetext2image case needs an instruction with op in {', '.join(EDIT_OPS)}, or a text")
            try:
                apply_edit(images[0], op)
            except (ValueError, KeyError, TypeError) as e:
                raise X2IError(f"{where}: the instruction does not apply to the input scene ({e})") from e
        cases.append(case)
    if not cases:
        raise X2IError(f"{path} holds no cases")
    return cases


FILES = {"audio": Audio.load, "video": Video.load, "document": load_image}


def _check_file(case: dict, where: str, base: Path) -> None:
    """A file task's file exists and opens; its path becomes absolute (files are relative to the
    case file)."""
    kind = MEDIA_TASKS[case["task"]]["file"]
    if not isinstance(case.get(kind), str):
        raise X2IError(f"{where}: a {case['task']} case names its {kind} file (\"{kind}\": PATH, relative to the case file)")
    case[kind] = str(base / case[kind])
    try:
        FILES[kind](case[kind])
    except X2IError as e:
        raise X2IError(f"{where}: {e}") from e


class CaseInputs(NamedTuple):
    text: str
    media: list  # images, sound and clips, in the order the model reads them


def case_inputs(case: dict, rng: random.Random) -> CaseInputs:
    """The text and media a case puts to a model, worded and rendered by the world."""
    media = [render(scene, rng) for scene in case.get("images", [])]
    if case["task"] in MEDIA_TASKS:
        kind = MEDIA_TASKS[case["task"]]["file"]
        return CaseInputs(case.get("text", LAST_FRAME if kind == "video" else ""), [FILES[kind](case[kind])])
    if "text" in case:
        return CaseInputs(case["text"], media)
    if case["task"] == "text2image":
        return CaseInputs(caption(case["expect"], case["lang"], rng), media)
    if case["task"] == "imagetext2image":
        return CaseInputs(instruction(case["images"][0], case["instruction"], case["lang"], rng), media)
    return CaseInputs("", media)


def readers(cases: list[dict], mllm: str | None) -> dict[str, list[int]]:
    """The cases each MLLM reads: all of them `mllm`'s, or each the first shipped reader's that
    takes its media. A case no reader takes is one line, before any model loads."""
    from x2i.inference.encoders.base import MODALITY_NAMES
    from x2i.inference.loaders import encoder_class
    from x2i.inference.locations import SHIPPED, locate

    names = [mllm] if mllm else [name for name, parts in SHIPPED.items() if "mllm" in parts]
    takes = {name: encoder_class(locate(name, "mllm")).takes for name in names}
    kinds = {"images": Image.Image, "document": Image.Image, "audio": Audio, "video": Video}
    chosen = defaultdict(list)
    for i, case in enumerate(cases):
        needs = {kinds[key] for key in kinds if case.get(key)}
        name = next((n for n in names if needs <= set(takes[n])), None)
        if name is None:
            gives = f"case {i + 1} ({case['task']}) gives {' and '.join(sorted(MODALITY_NAMES[k] for k in needs))}"
            raise X2IError(f"{gives}, which the MLLM {mllm} does not take; pass one that does" if mllm else
                           f"{gives}, which no shipped reader ({', '.join(names)}) takes; pass --mllm with one that does")
        chosen[name].append(i)
    return dict(chosen)


# ---- scoring ------------------------------------------------------------------------------------


def summarize(results: list[dict]) -> dict:
    """overall / by_task / by_lang / by_objects fractions of correct images; for the student also
    by_road, and roads: how many cases took each road; readers: how many each MLLM read."""
    if not results:
        return {}
    groups = defaultdict(list)
    for r in results:
        case = r["case"]
        groups["overall"].append(r["correct"])
        groups["task:" + case["task"]].append(r["correct"])
        groups["lang:" + case["lang"]].append(r["correct"])
        groups["objects:" + str(len(case["expect"]["objects"]))].append(r["correct"])
        if "road" in r:
            groups["road:" + r["road"]].append(r["correct"])

    def mean(xs):
        return round(sum(xs) / len(xs), 4)

    def part(prefix):
        return {k[len(prefix):]: mean(v) for k, v in sorted(groups.items()) if k.startswith(prefix)}

    summary = {
        "overall": mean(groups["overall"]),
        "by_task": part("task:"),
        "by_lang": part("lang:"),
        "by_objects": part("objects:"),
        "n": len(results),
    }
    if any(k.startswith("road:") for k in groups):  # the student: which road its cases took, and how each scored
        summary["by_road"] = part("road:")
        summary["roads"] = {k[len("road:"):]: len(v) for k, v in sorted(groups.items()) if k.startswith("road:")}
    if any("reader" in r for r in results):  # and which MLLM read them
        summary["readers"] = dict(sorted(Counter(r["reader"] for r in results).items()))
    return summary


def evaluate(cases: list[dict], models: str = "both", flux: str = "mini", mllm: str | None = None, alignnet: str | None = None,
             lightcontrol: str | None = None, lora: str | None = None, lora_scale: float = 1.0, lightcontrol_scale: float = 1.0,
             condition_on: str | None = None, seed: int = 0, steps: int = 20, device: str = "cpu",
             flux_loras: list[tuple[str, float]] = ()) -> tuple[dict, list[dict]]:
    """`x2i eval`: the report ({"teacher": summary, "student": summary, "n": cases}; a model not
    scored is None) and every judged result. The student reads each case with `mllm` (default: the
    first shipped reader that takes the case's media) and `alignnet` (default: the reader's own, as
    `locations.alignnet_for` says), and denoises with the teacher's FLUX; community FLUX LoRAs
    (`flux_loras`) adapt both alike."""
    from x2i.inference.loaders import load_flux
    from x2i.inference.locations import alignnet_for
    from x2i.inference.lora import load_flux_loras
    from x2i.inference.pipeline import X2IPipeline

    report, results = {"teacher": None, "student": None, "n": len(cases)}, []
    chosen = readers(cases, mllm) if models in ("both", "student") else {}
    if models in ("both", "teacher"):
        teacher = load_flux(flux, text_encoders=True).to(device)
        load_flux_loras(teacher, flux_loras)
        results += run_teacher(teacher, cases, seed=seed, steps=steps)
        report["teacher"] = summarize(results)
    student_results = []
    for reader, indices in chosen.items():
        student = X2IPipeline.from_pretrained(reader, flux, alignnet or alignnet_for(reader), device=device, lightcontrol=lightcontrol, lora=lora, lora_scale=lora_scale,
                                              flux_loras=flux_loras)
        student_results += [{**r, "reader": reader} for r in run_student(
            student, cases, seed=seed, steps=steps, condition_on=condition_on, lightcontrol_scale=lightcontrol_scale, chosen=indices)]
    if chosen:
        report["student"] = summarize(student_results)
        results += student_results
    return report, results


@torch.no_grad()
def run_teacher(teacher, cases: list[dict], seed: int, steps: int, batch: int = 32, progress: bool = True, cfg: float = 1.0):
    """Images from the teacher (FluxPipeline with T5/CLIP) for the English text2image cases;
    `cfg` > 1 runs true classifier-free guidance against the empty prompt."""
    chosen = [(i, c) for i, c in enumerate(cases) if c["task"] == "text2image" and c["lang"] == "en"]
    teacher.set_progress_bar_config(disable=True)  # one bar over the cases instead
    results = []
    for start in tqdm(range(0, len(chosen), batch), desc="teacher", disable=not progress):
        part = chosen[start : start + batch]
        texts = [case_inputs(c, random.Random(seed + i)).text for i, c in part]
        generators = [torch.Generator().manual_seed(seed + i) for i, _ in part]
        images = teacher(
            prompt=texts, num_inference_steps=steps, height=64, width=64, generator=generators,
            max_sequence_length=teacher.tokenizer_2.model_max_length,
            true_cfg_scale=cfg, negative_prompt=[""] * len(texts) if cfg > 1 else None,
        ).images
        for (i, case), text, image in zip(part, texts, images):
            results.append(_judged(i, case, text, image, "teacher"))
    return results


@torch.no_grad()
def run_student(pipeline, cases: list[dict], seed: int, steps: int, batch: int = 32, progress: bool = True, condition_on: str | None = None,
                lightcontrol_scale: float = 1.0, chosen: list[int] | None = None):
    """Images from X2I (MLLM -> AlignNet -> FLUX) for every case, with the teacher's wording and noise
    (the same CPU generators as `run_teacher`, on every device); `condition_on` (default: the
    pipeline's) and `lightcontrol_scale` as in X2IPipeline. A LightControl branch, when the pipeline
    has one, serves every case with an input image: text-only cases and image cases never share a
    batch. Each result says which road its case took and the MLLM's answer, if one was written.
    `chosen`: the indices of the cases to run (default: all)."""
    part_of = [(i, cases[i]) for i in (range(len(cases)) if chosen is None else chosen)]
    text_only = [(i, c) for i, c in part_of if not c.get("images")]
    with_images = [(i, c) for i, c in part_of if c.get("images")]
    batches = [group[start : start + batch] for group in (text_only, with_images) for start in range(0, len(group), batch)]
    results = []
    for part in tqdm(batches, desc="student", disable=not progress):
        inputs = [case_inputs(c, random.Random(seed + i)) for i, c in part]
        requests = [Request(text, media) for text, media in inputs]
        readings = pipeline.plan(requests, condition_on)
        images = pipeline(
            requests, height=64, width=64, num_inference_steps=steps, readings=readings,
            generator=[torch.Generator().manual_seed(seed + i) for i, _ in part], show_progress=False,
            lightcontrol_scale=lightcontrol_scale if part[0][1].get("images") else 0.0,  # the branch keeps a source image
        )
        for (i, case), (text, _), image, reading in zip(part, inputs, images, readings):
            results.append({**_judged(i, case, text, image, "student"), "road": reading.road, "answer": reading.answer})
    return results


def _judged(index: int, case: dict, text: str, image, model: str) -> dict:
    found = read_objects(image)
    return {"index": index, "case": case, "text": text, "image": image, "model": model,
            "reading": {"objects": found}, "correct": scene_correct(case["expect"], found)}


def save_results(results: list[dict], directory: str | Path) -> None:
    """Every image as PNG and a cases.jsonl naming case, image file, model and the judge's reading."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "cases.jsonl", "w") as f:
        for r in results:
            name = f"{r['index']:05d}-{r['model']}.png"
            r["image"].save(directory / name)
            row = {"case": r["case"], "text": r["text"], "image": name, "model": r["model"],
                   "reading": r["reading"], "correct": r["correct"]}
            row.update({k: r[k] for k in ("road", "answer", "reader") if k in r})
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
