"""Write docs/images/style-grid.png: the community style LoRA `mini-style` (trained on the mini teacher
with T5/CLIP alone) on the teacher and on X2I. One row per case — English and Chinese text, an image,
an edit, two images; the first input image shown — then the teacher (reading the target scene's English caption) and X2I
(reading the request), each without and with the LoRA, titled with the judge's verdict on the scene
(OK / X) and whether the picture is squat. Fresh cases (seed 5252), 20 steps, the case's seed as noise.

    python docs/make_style_grid.py
"""

import random
from pathlib import Path

import torch
from PIL import Image

from x2i import Request, X2IPipeline
from x2i.inference.loaders import load_flux
from x2i.inference.lora import flux_lora_adapter, load_flux_loras, set_lora_scale
from x2i.media import make_grid
from x2i.mini.eval import case_inputs, make_cases
from x2i.mini.judge import read_objects, scene_correct, squat
from x2i.mini.language import caption

DOCS = Path(__file__).parent
LINES = (("text2image", "en"), ("text2image", "zh"), ("image2image", "en"), ("imagetext2image", "fr"), ("multiimage2image", "en"))


def main() -> None:
    pipe = X2IPipeline.from_pretrained("mini", "mini", "mini", flux_loras=[("mini-style", 0.0)])
    teacher = load_flux("mini", text_encoders=True)
    load_flux_loras(teacher, [("mini-style", 0.0)])
    teacher.set_progress_bar_config(disable=True)
    pool = make_cases(10, seed=5252)
    cases = [next(c for c in pool if (c["task"], c["lang"]) == line) for line in LINES]
    inputs = [case_inputs(c, random.Random(i)) for i, c in enumerate(cases)]
    captions = [caption(c["expect"], "en", random.Random(i)) for i, c in enumerate(cases)]
    columns = {}
    for scale, name in ((0.0, ""), (1.0, " + mini-style")):
        set_lora_scale(pipe.flux, scale, flux_lora_adapter(0))
        set_lora_scale(teacher, scale, flux_lora_adapter(0))
        columns["teacher" + name] = teacher(prompt=captions, num_inference_steps=20, height=64, width=64, generator=noise(len(cases)),
                                            max_sequence_length=teacher.tokenizer_2.model_max_length).images
        columns["X2I" + name] = pipe([Request(text, images) for text, images in inputs], num_inference_steps=20, height=64, width=64,
                                     generator=noise(len(cases)), show_progress=False)

    tiles, titles = [], []
    for i, (case, (text, images)) in enumerate(zip(cases, inputs)):
        tiles.append(images[0] if images else Image.new("RGB", (64, 64), "white"))
        titles.append(f"{case['task']}{' ' + case['lang'] if text else ''}: {'input image' if images else 'text only'}")  # PIL's font has no CJK
        for name, outputs in columns.items():
            verdict = "OK" if scene_correct(case["expect"], read_objects(outputs[i])) else "X"
            tiles.append(outputs[i])
            titles.append(f"{name}: {verdict}, {'squat' if squat(outputs[i]) else 'plain'}")
    tiles = [t.resize((160, 160), Image.NEAREST) for t in tiles]
    make_grid(tiles, titles, cols=1 + len(columns)).save(DOCS / "images" / "style-grid.png")
    print(f"wrote {DOCS / 'images' / 'style-grid.png'}")


def noise(n: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed) for seed in range(n)]


if __name__ == "__main__":
    main()
