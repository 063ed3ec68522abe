"""Model cards (README.md with the hub's metadata) for what x2i saves: an AlignNet made by
`x2i distill`, and a whole pipeline saved by `X2IPipeline.save_pretrained`. A card says which MLLM
and FLUX the weights were made for, the command that made them, and what was measured;
`AlignNet.push_to_hub` uploads it with the weights. Written with huggingface_hub's `ModelCard`.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from x2i.inference.locations import HUB_ID

NOT_MEASURED = ("Not measured with these weights: `x2i eval` scores them in the mini world, and "
                "`x2i generate --requests` on a benchmark's prompts anywhere (docs/batch.md).")


def _card(title: str, tags: list[str], models: list[str], body: str) -> ModelCard:
    bases = [m for m in models if HUB_ID.match(m) and not Path(m).exists()]  # the hub accepts repository ids only
    data = ModelCardData(library_name="x2i", pipeline_tag="text-to-image", tags=["x2i", "flux", *tags], base_model=bases or None)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n# {title}\n\n{body}")


def alignnet_card(mllm: str, flux: str, command: str, steps: int, global_batch: int) -> ModelCard:
    """The card `x2i distill` writes beside the AlignNet it makes."""
    return _card(f"AlignNet: {mllm} -> {flux}", ["alignnet"], [mllm, flux], f"""\
An AlignNet made by `x2i distill`: it turns every hidden layer of the MLLM into the conditioning FLUX
reads in place of T5 and CLIP (X2I, arXiv 2503.06134), distilled from FLUX conditioned by its own
T5/CLIP (the teacher) by attention distillation on English text.

| part | |
|---|---|
| MLLM | `{mllm}` |
| FLUX (teacher) | `{flux}` |
| training | {steps} steps, global batch {global_batch} |

## Made with

```bash
{command}
```

## Use

```python
from x2i import X2IPipeline

pipe = X2IPipeline.from_pretrained("{mllm}", "{flux}", "<this folder or repository>")
```

## Scores

{NOT_MEASURED}
""")


def pipeline_card(parts: dict, alignnet_card: ModelCard | None, scores: dict | None) -> ModelCard:
    """The card of a saved pipeline: its parts and settings, how its AlignNet was made (from the
    AlignNet's own card), and `scores` (an `x2i eval --json` report) when given."""
    rows = [("MLLM", parts["mllm"]), ("FLUX", parts["flux"]), ("AlignNet", parts["alignnet"])]
    rows += [("LightControl", parts["lightcontrol"])] if parts.get("lightcontrol") else []
    rows += [(f"LoRA (scale {parts['lora_scale']})", parts["lora"])] if parts.get("lora") else []
    rows += [("conditioning road", parts["condition_on"]), ("prompt padding", parts["pad_to"] or "none")]
    table = "\n".join(f"| {name} | `{value}` |" for name, value in rows)
    made = _section(alignnet_card, "Made with") if alignnet_card is not None else None
    return _card(f"X2I pipeline: {parts['mllm']} -> {parts['flux']}", ["alignnet", "pipeline"], [parts["mllm"], parts["flux"]], f"""\
A whole X2I pipeline (arXiv 2503.06134): the MLLM reads the request, AlignNet turns its hidden states
into FLUX's conditioning, FLUX draws. The MLLM and FLUX are named, not copied, unless it was saved
with `copy=True`.

| part | |
|---|---|
{table}

## Use

```python
from x2i import X2IPipeline

pipe = X2IPipeline.from_pretrained("<this folder>")
```

or `x2i generate --pipeline <this folder> --prompt "..."`.

## How its AlignNet was made

{made or "Not recorded (an AlignNet without a card, e.g. one of the authors' releases)."}

## Scores

{_scores(scores) if scores else NOT_MEASURED}
""")


def _section(card: ModelCard, title: str) -> str | None:
    """The text under `## title` in a card, up to the next section."""
    _, found, rest = card.text.partition(f"## {title}\n")
    return rest.split("\n## ")[0].strip() if found else None


def _scores(report: dict) -> str:
    """An `x2i eval --json` report as a table: overall, then by task and by language."""
    lines = ["| model | cases | overall | by task | by language |", "|---|---|---|---|---|"]
    for model in ("teacher", "student"):
        part = report.get(model)
        if part:
            tasks = ", ".join(f"{k} {v:.3f}" for k, v in part.get("by_task", {}).items())
            langs = ", ".join(f"{k} {v:.3f}" for k, v in part.get("by_lang", {}).items())
            lines.append(f"| {model} | {part['n']} | {part['overall']:.3f} | {tasks} | {langs} |")
    return "Judged in the mini world (`x2i eval --json`):\n\n" + "\n".join(lines)
