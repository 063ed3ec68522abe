"""The built-in mini world: a complete miniature of X2I that trains on a CPU and judges its own images.

    world    scenes, rendering, captions and edit instructions in five languages
    judge    reads the objects of an image; GenEval-style scoring
    teacher  the FLUX-architecture teacher (T5 + CLIP), trained here
    mllm     the Qwen2.5-VL-architecture MLLM, trained here
    eval     `x2i eval`: cases -> images -> scores

The trained weights ship in `x2i/mini/weights/`; `weights_dir(name)` finds them offline.
"""

from pathlib import Path

from x2i.errors import X2IError

WEIGHTS = Path(__file__).parent / "weights"


def weights_dir(name: str) -> Path:
    """The shipped mini model `name` ("teacher", "mllm", ...)."""
    path = WEIGHTS / name
    if not path.is_dir():
        raise X2IError(f"the mini {name} is not in this installation ({path}); rebuild it with `x2i mini train-{name}`")
    return path


def resolve_shipped(path, name: str):
    """`path`, or the shipped mini model `name` when `path` is the word "mini"."""
    return weights_dir(name) if str(path) == "mini" else path
