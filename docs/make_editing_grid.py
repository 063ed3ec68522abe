"""Write docs/images/editing-grid.png: real mini edits, one row per case — the source image, then
plain X2I, + LightControl, + LoRA, + both, each titled with the judge's verdict (OK / X). One
fresh case per edit op and language in turn (seed 5151), 20 steps, the case's seed as noise.

    python docs/make_editing_grid.py
"""

import random
from pathlib import Path

from PIL import Image

from x2i import Request, X2IPipeline
from x2i.inference.loaders import load_lightcontrol
from x2i.inference.locations import locate
from x2i.inference.lora import load_lora
from x2i.media import make_grid
from x2i.mini.eval import case_inputs, make_cases
from x2i.mini.judge import read_objects, scene_correct
from x2i.mini.world import EDIT_OPS, LANGUAGES

DOCS = Path(__file__).parent


def main() -> None:
    pipe = X2IPipeline.from_pretrained(locate("mini", "mllm"), locate("mini", "flux"), locate("mini", "alignnet"))
    branch = load_lightcontrol("mini", pipe.flux)
    pool = make_cases(40, tasks=("imagetext2image",), seed=5151)
    cases = []
    for n, op in enumerate(EDIT_OPS):  # one case per op, the languages in turn
        lang = LANGUAGES[n % len(LANGUAGES)]
        cases.append(next(c for c in pool if c["instruction"]["op"] == op and c["lang"] == lang))
    inputs = [case_inputs(c, random.Random(i)) for i, c in enumerate(cases)]
    requests = [Request(text, images) for text, images in inputs]

    def run(lightcontrol: bool) -> list[Image.Image]:
        pipe.lightcontrol = branch if lightcontrol else None
        return pipe(requests, num_inference_steps=20, seed=list(range(len(cases))), show_progress=False)

    columns = {"plain X2I": run(False), "+ LightControl": run(True)}
    load_lora(pipe.flux, "mini")
    columns["+ LoRA"], columns["+ both"] = run(False), run(True)

    tiles, titles = [], []
    for i, (case, (text, images)) in enumerate(zip(cases, inputs)):
        tiles.append(images[0])
        titles.append(f"{case['lang']}: {text}")
        for name, outputs in columns.items():
            verdict = "OK" if scene_correct(case["expect"], read_objects(outputs[i])) else "X"
            tiles.append(outputs[i])
            titles.append(f"{name}: {verdict}")
    tiles = [t.resize((160, 160), Image.NEAREST) for t in tiles]
    make_grid(tiles, titles, cols=1 + len(columns)).save(DOCS / "images" / "editing-grid.png")
    print(f"wrote {DOCS / 'images' / 'editing-grid.png'}")


if __name__ == "__main__":
    main()
