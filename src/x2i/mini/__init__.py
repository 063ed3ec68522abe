"""The built-in mini world: a complete miniature of X2I that trains on a CPU and judges its own images.

    world    scenes, rendering, captions and edit instructions in five languages
    judge    reads the objects of an image; GenEval-style scoring
    teacher  the FLUX-architecture teacher (T5 + CLIP), trained here
    mllm     the Qwen2.5-VL-architecture MLLM, trained here
    eval     `x2i eval`: cases -> images -> scores

The trained weights ship in `x2i/mini/weights/`; every loader finds them by the name "mini"
(`x2i.inference.locations`).
"""
