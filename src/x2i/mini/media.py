"""The world heard, watched and read: a caption spoken, a scene coming together in a clip, a
caption typeset as a document. Made with real tools: speech by espeak-ng (Debian's `espeak-ng`),
clips encoded by FFmpeg through PyAV (mp4) or by Pillow (gif), pages set in real fonts (Debian's
`fonts-dejavu-core`, `fonts-liberation`, `fonts-noto-cjk`).

    speak(text, lang, rng)      mono float32 samples and their rate: varied voice, rate, pitch, a little noise
    speak_words(text, lang, rng) the same, and where each word begins (character, second)
    spoken_span(words, span, s) the seconds in which some characters are said
    write_wav(path, samples, rate)
    clip_frames(scene, rng)     the frames of a clip whose last frames show `scene`
    write_clip(path, frames)    .mp4 or .gif (LAST_FRAME: what a clip's request asks)
    document(text, lang, rng)   a page (PIL image) that shows `text`
    typeset(text, lang, rng)    the page and where each character is on it
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import io
import itertools
import random
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from x2i.errors import X2IError
from x2i.mini.world import CENTERS, POSITIONS, render

# ---- speech -------------------------------------------------------------------------------------

# espeak-ng's voices for each language (by the names its library takes: "en" is British English),
# and the variants (speakers) laid over them.
VOICES = {"en": ("en-us", "en"), "zh": ("cmn",), "fr": ("fr",), "de": ("de",), "es": ("es", "es-419")}
VARIANTS = ("m1", "m2", "m3", "m4", "f1", "f2", "f3", "f4")


MAX_SECONDS = 12.0  # every reader hears this much (the mini Qwen2.5-Omni 15 s, the real one 30)


def speak(text: str, lang: str, rng: random.Random) -> tuple[np.ndarray, int]:
    """`text` spoken by espeak-ng in `lang` by a speaker drawn from `rng` (voice, variant, words per
    minute, pitch), with white noise 25-45 dB under the speech; spoken faster where it would last
    longer than MAX_SECONDS."""
    samples, rate, _ = _speak(text, lang, rng)
    return samples, rate


def speak_words(text: str, lang: str, rng: random.Random) -> tuple[np.ndarray, int, list[tuple[int, float]]]:
    """`speak`, and where espeak-ng's words begin: (character of `text`, second of the sound)."""
    samples, rate, speaker = _speak(text, lang, rng)
    return samples, rate, _word_starts(text, *speaker)


def _speak(text: str, lang: str, rng: random.Random) -> tuple[np.ndarray, int, tuple[str, int, int]]:
    if shutil.which("espeak-ng") is None:
        raise X2IError("speech needs espeak-ng: install it (apt-get install espeak-ng)")
    voice, speed, pitch = f"{rng.choice(VOICES[lang])}+{rng.choice(VARIANTS)}", rng.randint(140, 220), rng.randint(30, 70)
    while True:
        # The command line speaks the same text the same way every time (the library, which alone
        # says when each word begins, carries a little state from one call to the next).
        command = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text]
        with wave.open(io.BytesIO(subprocess.run(command, capture_output=True, check=True).stdout)) as f:
            rate = f.getframerate()
            samples = np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16).astype(np.float32) / 32768
        if samples.size <= MAX_SECONDS * rate:
            break
        speed = int(speed * samples.size / (MAX_SECONDS * rate)) + 10
    noise = np.random.default_rng(rng.getrandbits(32)).standard_normal(samples.size).astype(np.float32)
    level = np.sqrt(np.mean(samples**2)) * 10 ** (-rng.uniform(25, 45) / 20)
    return np.clip(samples + level * noise, -1, 1), rate, (voice, speed, pitch)


def spoken_span(words: list[tuple[int, float]], span: tuple[int, int], seconds: float) -> tuple[float, float]:
    """The seconds in which the characters `span` (start, end) are said: from the start of the word
    that holds its first character to the start of the first word after it (or the end)."""
    start = max((t for c, t in words if c <= span[0]), default=0.0)
    return start, min((t for c, t in words if c >= span[1]), default=seconds)


class _Event(ctypes.Structure):  # espeak_EVENT, speak_lib.h
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


@functools.cache
def _library():
    """libespeak-ng (Debian's espeak-ng), synchronous, its callback filling `heard`: the one way to
    know when each word is said (the command line gives the sound alone)."""
    path = ctypes.util.find_library("espeak-ng")
    if path is None:
        raise X2IError("speech needs espeak-ng: install it (apt-get install espeak-ng)")
    lib = ctypes.CDLL(path)
    rate = lib.espeak_Initialize(2, 0, None, 0)  # AUDIO_OUTPUT_SYNCHRONOUS, default buffer and data
    heard = {"words": []}

    def on_sound(wav, count, events):
        for k in itertools.count():
            if events[k].type == 0:  # espeakEVENT_LIST_TERMINATED
                return 0
            if events[k].type == 1 and events[k].text_position > 0:  # espeakEVENT_WORD: text_position counts characters from 1
                heard["words"].append((events[k].text_position - 1, events[k].sample))

    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))(on_sound)
    lib.espeak_SetSynthCallback(callback)
    return lib, rate, heard, callback  # the callback kept alive with the library


def _word_starts(text: str, voice: str, speed: int, pitch: int) -> list[tuple[int, float]]:
    """(character, second) where each word `text` begins, as libespeak-ng says it."""
    lib, rate, heard, _ = _library()
    heard["words"] = []
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise X2IError(f"espeak-ng has no voice {voice!r}: install espeak-ng-data")
    lib.espeak_SetParameter(1, speed, 0)  # espeakRATE, words per minute
    lib.espeak_SetParameter(3, pitch, 0)  # espeakPITCH, 0-100
    data = text.encode()
    lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 1, None, None)  # from character 0, UTF-8
    lib.espeak_Synchronize()
    return [(c, sample / rate) for c, sample in heard["words"]]


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> None:
    """16-bit mono PCM."""
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())


# ---- clips --------------------------------------------------------------------------------------

CLIP_FPS = 10  # the file's frame rate (a whole number of a GIF's centiseconds per frame); readers sample at their own (Qwen: 2 fps)
LAST_FRAME = "draw the last frame"  # what a clip's request asks


def clip_frames(scene: dict, rng: random.Random) -> list[Image.Image]:
    """A short clip that ends on `scene`: its objects arriving one by one (each first seen where it
    stays), or the last object sliding in from another place. The last second is still, so that
    the last frames a reader samples show the scene."""
    objects = scene["objects"]
    frames = []
    if rng.random() < 0.5:  # arriving one by one, after a moment of empty background
        background_scene = {"objects": []}
        shown = [background_scene] + [{"objects": objects[: k + 1]} for k in range(len(objects))]
        layout = random.Random(rng.getrandbits(32))  # one jitter for the whole clip: the objects stay put
        state = layout.getstate()
        for part in shown:
            hold = rng.randint(CLIP_FPS // 2, CLIP_FPS)
            layout.setstate(state)
            frames += [render(part, layout)] * hold
    else:  # the last object slides to its place from another one
        moving = objects[-1]
        start = rng.choice([p for p in POSITIONS if p != moving["position"]])
        steps = rng.randint(CLIP_FPS, 2 * CLIP_FPS)
        (x0, y0), (x1, y1) = CENTERS[start], CENTERS[moving["position"]]
        seed = rng.getrandbits(32)
        for k in range(steps):
            t = k / (steps - 1)
            at = {**moving, "at": (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)}
            frames.append(render({"objects": [*objects[:-1], at]}, random.Random(seed)))
    frames += [frames[-1]] * CLIP_FPS  # the last second, still
    return frames


def write_clip(path: str | Path, frames: list[Image.Image], fps: int = CLIP_FPS) -> None:
    """An H.264 mp4 (yuv420p, through PyAV) or a looping gif (Pillow), by `path`'s suffix."""
    path = Path(path)
    if path.suffix == ".gif":
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=1000 // fps, loop=0)
        return
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_image(frame)))
        container.mux(stream.encode(None))


# ---- documents ----------------------------------------------------------------------------------

DEBIAN_FONTS = Path("/usr/share/fonts")
LATIN_FONTS = ("truetype/dejavu/DejaVuSans.ttf", "truetype/dejavu/DejaVuSerif.ttf", "truetype/liberation/LiberationSans-Regular.ttf",
               "truetype/liberation/LiberationSerif-Regular.ttf", "truetype/dejavu/DejaVuSansMono.ttf")
CJK_FONTS = ("opentype/noto/NotoSansCJK-Regular.ttc", "opentype/noto/NotoSerifCJK-Regular.ttc")
PAGE = (256, 128)  # width, height: inside the mini Qwen2.5-VL's pixel bound, so it is read at full size
INK = ((20, 20, 20), (40, 40, 90), (70, 30, 30))
PAPER = ((255, 255, 255), (250, 248, 240), (236, 240, 246))


def fonts(lang: str) -> list[Path]:
    """The installed fonts that write `lang` (CJK fonts write every language)."""
    names = CJK_FONTS if lang == "zh" else LATIN_FONTS + CJK_FONTS
    found = [DEBIAN_FONTS / name for name in names if (DEBIAN_FONTS / name).is_file()]
    if not found:
        package = "fonts-noto-cjk" if lang == "zh" else "fonts-dejavu-core fonts-liberation"
        raise X2IError(f"documents in {lang} need fonts: install them (apt-get install {package})")
    return found


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int, lang: str) -> list[tuple[int, int]]:
    """The (start, end) characters of lines that fit `width`: broken at spaces (which are then not
    drawn), or between any two characters in Chinese."""
    if lang == "zh":
        pieces = [(k, k + 1) for k in range(len(text))]
    else:
        pieces, start = [], 0
        for word in text.split(" "):
            pieces.append((start, start + len(word)))
            start += len(word) + 1
    lines = []
    for start, end in pieces:
        if lines and draw.textlength(text[lines[-1][0] : end], font=font) <= width:
            lines[-1] = (lines[-1][0], end)
        else:
            lines.append((start, end))
    return lines or [(0, 0)]


def document(text: str, lang: str, rng: random.Random) -> Image.Image:
    """`text` on a page as a screenshot shows it (`typeset`)."""
    return typeset(text, lang, rng)[0]


def typeset(text: str, lang: str, rng: random.Random) -> tuple[Image.Image, list[tuple[float, float, float, float] | None]]:
    """`text` on a page in one of three layouts: a note (the text alone), a card (a title bar above
    it), a chat (the text in a bubble); font, size, ink and paper drawn from `rng`, the size the
    largest at which the whole text fits. Returns the page and each character's ink box (x0, y0,
    x1, y1) in pixels (empty for a space), None for a space a line was broken at."""
    page = Image.new("RGB", PAGE, rng.choice(PAPER))
    draw = ImageDraw.Draw(page)
    layout = rng.choice(("note", "card", "chat"))
    font_path = rng.choice(fonts(lang))
    top, left, width = 10, 10, PAGE[0] - 20
    if layout == "card":
        bar = rng.choice(((60, 90, 160), (80, 80, 80), (40, 130, 90)))
        draw.rectangle([0, 0, PAGE[0], 18], fill=bar)
        top = 26
    elif layout == "chat":
        left, width = 18, PAGE[0] - 44
    for size in range(rng.randint(15, 18), 9, -1):  # the largest size (from a drawn start) at which the text fits
        font = ImageFont.truetype(str(font_path), size)
        lines = _wrap(draw, text, font, width, lang)
        line_height = int(size * 1.3)
        if top + line_height * len(lines) <= PAGE[1] - 8:
            break
    if layout == "chat":
        text_width = max(draw.textlength(text[start:end], font=font) for start, end in lines)
        draw.rounded_rectangle([left - 8, top - 5, left + text_width + 8, top + line_height * len(lines) + 3], radius=8, fill=(190, 225, 190))
    ink = rng.choice(INK)
    boxes: list[tuple[float, float, float, float] | None] = [None] * len(text)
    for k, (start, end) in enumerate(lines):
        y = top + k * line_height
        draw.text((left, y), text[start:end], font=font, fill=ink)
        for i in range(start, end):  # each glyph's own ink, where the line's advance puts it
            x = left + draw.textlength(text[start:i], font=font)
            x0, y0, x1, y1 = font.getbbox(text[i])
            boxes[i] = (x + x0, y + y0, x + x1, y + y1)
    return page, boxes
