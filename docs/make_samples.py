"""Write docs/samples.md: real outputs of `x2i generate`'s default models, per task and language,
and docs/images/teacher-samples.png: the mini teacher on fresh one- and two-object prompts.

    python docs/make_samples.py

Each row shows three fresh cases: the input images (if any), an arrow, and X2I's output (mini MLLM
-> mini AlignNet -> mini FLUX, 20 steps, the case's seed), with the judge's verdict. The prompts
are written in the markdown, where every script renders. Then the tasks that watch, read and
hear: a clip's frames as the reader samples them, a document's page, a spoken caption (linked).
"""

import random
from pathlib import Path

from PIL import Image, ImageDraw

from x2i import Request, X2IPipeline
from x2i.inference.loaders import load_flux
from x2i.inference.locations import alignnet_for, locate
from x2i.media import make_grid
from x2i.mini.eval import case_inputs, make_cases, readers, run_teacher
from x2i.mini.judge import read_objects, scene_correct

DOCS = Path(__file__).parent
SCALE = 2


def strip(inputs: list[Image.Image], output: Image.Image, correct: bool) -> Image.Image:
    """inputs -> output, enlarged, with a green or red frame for the judge's verdict."""
    size = 64 * SCALE
    tiles = [im.resize((size * im.width // im.height, size), Image.NEAREST) for im in inputs]  # a page keeps its shape
    width = sum(t.width + 4 for t in tiles) + (24 if tiles else 0) + size + 8
    canvas = Image.new("RGB", (width, size + 8), "white")
    draw = ImageDraw.Draw(canvas)
    x = 4
    for tile in tiles:
        canvas.paste(tile, (x, 4))
        x += tile.width + 4
    if tiles:
        draw.text((x + 4, size // 2), "->", fill="black")
        x += 24
    draw.rectangle((x - 3, 1, x + size + 2, size + 6), outline="green" if correct else "red", width=3)
    canvas.paste(output.resize((size, size), Image.NEAREST), (x, 4))
    return canvas


def teacher_grid() -> None:
    """Eight one-object prompts above eight two-object ones, each titled OK/X (the judge) and its prompt."""
    teacher = load_flux(locate("mini", "flux"), text_encoders=True)
    cases = make_cases(8, ("text2image",), ("en",), seed=4243, num_objects=1)
    cases += make_cases(8, ("text2image",), ("en",), seed=4244, num_objects=2)
    results = run_teacher(teacher, cases, seed=0, steps=20, progress=False)
    images = [r["image"].resize((128, 128), Image.NEAREST) for r in results]
    titles = [("OK " if r["correct"] else "X ") + r["text"] for r in results]
    make_grid(images, titles, cols=8).save(DOCS / "images" / "teacher-samples.png")


def main() -> None:
    teacher_grid()
    pipe = X2IPipeline.from_pretrained(locate("mini", "mllm"), locate("mini", "flux"), locate("mini", "alignnet"))
    out_dir = DOCS / "images" / "samples"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = ["# X2I on the mini world: real outputs", "",
            "Made by `python docs/make_samples.py` with the models `x2i generate` runs by default (mini MLLM ->",
            "mini AlignNet -> mini FLUX, 20 steps). Inputs on the left, X2I's output on the right; a green frame",
            "means the judge found every expected attribute, red that it did not. Fresh cases (seed 4242).", "",
            "| task | lang | prompt | inputs -> output |", "|---|---|---|---|"]
    cases = make_cases(3, seed=4242)
    for start in range(0, len(cases), 3):
        group = cases[start : start + 3]
        for n, case in enumerate(group):
            index = start + n
            text, images = case_inputs(case, random.Random(index))
            output = pipe(Request(text, images), height=64, width=64, num_inference_steps=20, seed=index, show_progress=False)[0]
            name = f"{case['task']}-{case['lang']}-{n}.png"
            strip(images, output, scene_correct(case["expect"], read_objects(output))).save(out_dir / name)
            prompt = text.replace("|", "\\|") if text else "*(no text)*"
            rows.append(f"| {case['task']} | {case['lang']} | {prompt} | ![](images/samples/{name}) |")
    rows += file_task_rows(out_dir)
    (DOCS / "samples.md").write_text("\n".join(rows) + "\n")
    print(f"wrote {DOCS / 'samples.md'} and {len(cases)} images in {out_dir}")


def file_task_rows(out_dir: Path) -> list[str]:
    """One case per task and language of the file tasks a shipped reader takes (seed 4245)."""
    from x2i.media import Video

    cases = make_cases(1, ("video2image", "document2image", "audio2image"), seed=4245, media=out_dir / "media")  # files named relative to out_dir
    located = [{**c, **{k: str(out_dir / c[k]) for k in ("audio", "video", "document") if k in c}} for c in cases]
    rows = ["", "Watched, read and heard (fresh cases, seed 4245; `x2i mini make-cases --tasks video2image document2image",
            "audio2image`): a clip's frames as the reader samples them (2 fps), a page, a spoken caption (the mini Qwen2.5-Omni",
            "hears it; the words said are written beside the link).", "",
            "| task | lang | request | inputs -> output |", "|---|---|---|---|"]
    for reader, indices in readers(located, None).items():
        pipe = X2IPipeline.from_pretrained(reader, "mini", alignnet_for(reader))
        for index in indices:
            case = located[index]
            text, media = case_inputs(case, random.Random(index))
            output = pipe(Request(text, media), height=64, width=64, num_inference_steps=20, seed=index, show_progress=False)[0]
            name = f"{case['task']}-{case['lang']}.png"
            shown = [Image.fromarray(f) for f in media[0].frames()] if isinstance(media[0], Video) else media
            shown = [] if "audio" in case else shown  # the sound is linked in the row
            strip(shown, output, scene_correct(case["expect"], read_objects(output))).save(out_dir / name)
            if "video" in case:
                request = f"[clip](images/samples/{cases[index]['video']}) + “{text}”"
            elif "audio" in case:
                request = f"[sound](images/samples/{cases[index]['audio']}): “{case['said']}”"
            else:
                request = "*(the page alone)*"
            rows.append(f"| {case['task']} | {case['lang']} | {request} | ![](images/samples/{name}) |")
    return rows


if __name__ == "__main__":
    main()
