"""Scores per (task, language), per object count and, for edits, per edit op, from the cases.jsonl
that `x2i eval --save DIR` writes, as a Markdown table: `python benchmarks/by_task_lang.py DIR/cases.jsonl [...]`."""

import json
import sys
from collections import defaultdict


def table(path: str) -> str:
    groups = defaultdict(list)
    for line in open(path):
        row = json.loads(line)
        case = row["case"]
        objects = len(case["expect"]["objects"])
        keys = [(row["model"], case["task"], case["lang"]), (row["model"], case["task"], f"{objects} obj")]
        if "instruction" in case:
            keys.append((row["model"], case["task"], f"op {case['instruction']['op']}"))
        for key in keys:
            groups[key].append(row["correct"])
    lines = ["| model | task | group | n | score |", "|---|---|---|---|---|"]
    for (model, task, group), values in sorted(groups.items()):
        lines.append(f"| {model} | {task} | {group} | {len(values)} | {sum(values) / len(values):.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(f"{path}\n\n{table(path)}\n")
