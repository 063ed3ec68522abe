"""The built-in mini world: a complete miniature of X2I that trains on a CPU and judges its own images.

    world     scenes, rendering, edits, the tasks
    language  captions and edit instructions in five languages
    judge     reads the objects of an image; GenEval-style scoring
    eval      `x2i eval`: cases -> images -> scores
    examples  the MLLM's requests and answers, per task
    teacher   the FLUX-architecture teacher (T5 + CLIP): its recipe
    mllm      the Qwen2.5-VL-architecture MLLM: its recipe
    readout   how an MLLM's states read out as English words (and the hub objective)
    transfer  the distillation distance per task and language, beside the judged score
    cli       `x2i mini ...`

The trained weights ship in `x2i/mini/weights/`; every loader finds them by the name "mini"
(`x2i.inference.locations`).
"""
