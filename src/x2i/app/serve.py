"""`x2i serve`: a Gradio app over one X2IPipeline, loaded once per process.

Two tabs: "Generate" (a prompt or a clickable example in five languages, uploads of the inputs the
reader takes, the usual settings, the conditioning road, the LightControl, edit LoRA and FLUX LoRA
strengths when they are loaded, a progress bar over the denoising steps, and a gallery of every result with the
inputs that made it, downloadable as one zip) and "Conversation" (an `x2i.Session` per browser
session). Requests are queued and run one at a time on the one pipeline. Bad input is a message in
the page: `X2IError`s say what is wrong, anything else is logged and reported in one line, and the
server keeps running. Gradio's analytics are off: nothing leaves the machine.
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
import traceback
import zipfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # set before Gradio loads: no calls home from the app

import gradio as gr  # noqa: E402
from PIL import Image

from x2i.errors import X2IError
from x2i.inference.lora import flux_lora_adapter, set_lora_scale
from x2i.inference.request import Request
from x2i.inference.session import Session
from x2i.media import AUDIO_SUFFIXES, VIDEO_SUFFIXES, Audio, Video, open_input

log = logging.getLogger("x2i.app.serve")
GALLERY_SIZE = 24  # results kept per browser session, newest first


def accepted_suffixes(pipe) -> list[str]:
    """The upload types the reader takes."""
    suffixes = [".png", ".jpg", ".jpeg", ".webp", ".bmp"]  # a .gif is a video clip to x2i (media.open_input)
    if Audio in pipe.encoder.takes:
        suffixes += list(AUDIO_SUFFIXES)
    if Video in pipe.encoder.takes:
        suffixes += list(VIDEO_SUFFIXES)
    return sorted(set(suffixes))


def open_uploads(files, max_inputs: int) -> list:
    files = files or []
    if len(files) > max_inputs:
        raise X2IError(f"{len(files)} files uploaded; this server takes at most {max_inputs} per request")
    return [open_input(f) for f in files]


def user_message(action):
    """Run `action`; an X2IError becomes the page's error message, any other failure too (logged
    with its traceback), so no request can take the server down or show a traceback."""
    try:
        return action()
    except X2IError as e:
        raise gr.Error(str(e), print_exception=False) from e
    except Exception as e:  # noqa: BLE001  (the app must answer every request)
        log.error("request failed:\n%s", traceback.format_exc())
        raise gr.Error(f"the request failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'no message'}); see the server log",
                       print_exception=False) from e


# One scene in the five languages the mini world speaks (and any real MLLM reads).
EXAMPLES = ["a large red circle on the left and a small blue square at the top",
            "左边有一个大的红色圆形，顶部有一个小的蓝色正方形",
            "un grand cercle rouge à gauche et un petit carré bleu en haut",
            "ein großer roter Kreis links und ein kleines blaues Quadrat oben",
            "un gran círculo rojo a la izquierda y un pequeño cuadrado azul arriba"]

ROAD_CHOICES = [("auto (per kind of request)", "auto"), ("prompt (the paper's)", "prompt"),
                ("answer (the MLLM writes what to draw)", "answer"), ("prompt + answer", "prompt+answer")]


def build_app(pipe, max_inputs: int = 4, default_steps: int = 28, answer_tokens: int = 64, lightcontrol_scale: float = 1.0) -> gr.Blocks:
    size = pipe.default_size
    # Each picture is written once; the gallery then refers to the file, not to a picture to encode again.
    outputs = Path(tempfile.mkdtemp(prefix="x2i-serve-"))
    numbers = itertools.count()

    def generate(prompt, files, seed, steps, height, width, guidance, num_images, road, control, lora, style, results,
                 progress=gr.Progress(track_tqdm=True)):  # noqa: B008  (Gradio's way: the bar follows diffusers' denoising bar)
        def run():
            media = open_uploads(files, max_inputs)
            request = Request(prompt, media)
            reading = pipe.plan([request], road)[0]
            if pipe.sources.get("lora"):
                set_lora_scale(pipe.flux, float(lora))
            for k in range(len(pipe.sources.get("flux_loras", []))):
                set_lora_scale(pipe.flux, float(style), flux_lora_adapter(k))
            images = pipe(request, height=int(height), width=int(width), num_inference_steps=int(steps), guidance_scale=float(guidance),
                          num_images_per_prompt=int(num_images), seed=int(seed), show_progress=True, readings=[reading],
                          lightcontrol_scale=float(control) if request.images else 0.0)  # the branch keeps an input image, when there is one
            inputs = ", ".join(Path(f).name for f in files or []) or "none"
            read = f"the answer: {reading.answer}" if reading.road == "answer" else reading.road
            caption = (f"{prompt.strip() or '(no text)'} | inputs: {inputs} | read: {read} | "
                       f"seed {int(seed)}, {int(steps)} steps, {int(width)}x{int(height)}")
            made = []
            for i, image in enumerate(images):
                path = outputs / f"{next(numbers)}.png"
                image.save(path)
                made.append((str(path), f"{caption} #{i}" if len(images) > 1 else caption))
            return (made + (results or []))[:GALLERY_SIZE]

        results = user_message(run)
        return results, results, download_all(results)

    def download_all(results) -> str:
        """Every picture in the gallery, and captions.txt with what made each, as one zip."""
        path = outputs / f"x2i-pictures-{next(numbers)}.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for i, (picture, caption) in enumerate(reversed(results)):
                archive.write(picture, f"{i:03d}.png")
            archive.writestr("captions.txt", "".join(f"{i:03d}.png  {caption}\n" for i, (_, caption) in enumerate(reversed(results))))
        return str(path)

    def chat(text, files, road, session, messages):
        def run():
            nonlocal session
            session = session or Session(pipe, answer_tokens=answer_tokens, num_inference_steps=default_steps, show_progress=False)
            session.condition_on = road
            media = open_uploads(files, max_inputs)
            images = session.send(text, media)
            answer = session.history[-1].answer
            shown = [{"role": "user", "content": text or "(inputs only)"}]
            shown += [{"role": "user", "content": gr.Image(value=item)} for item in media if isinstance(item, Image.Image)]
            shown += [{"role": "assistant", "content": gr.Image(value=images[0])}]
            if answer:
                shown.append({"role": "assistant", "content": answer})
            return (messages or []) + shown

        messages = user_message(run)
        return session, messages, "", None

    def reset(session):
        if session is not None:
            session.reset()
        return session, []

    types = accepted_suffixes(pipe)
    with gr.Blocks(title="x2i") as app:
        gr.Markdown(f"# x2i\nA FLUX transformer conditioned by **{pipe.encoder.name}** through AlignNet. "
                    f"Inputs this reader takes: text, images{', sound' if Audio in pipe.encoder.takes else ''}"
                    f"{', video' if Video in pipe.encoder.takes else ''}.")
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column():
                    prompt = gr.Textbox(label="Prompt (any language; with inputs, the instruction)", lines=2, elem_id="prompt")
                    files = gr.File(label=f"Inputs (at most {max_inputs})", file_count="multiple", file_types=types, elem_id="inputs")
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, label="Seed")
                        steps = gr.Slider(1, 100, value=default_steps, step=1, label="Steps", elem_id="steps")
                        guidance = gr.Number(value=3.5, label="Guidance")
                    with gr.Row():
                        height = gr.Number(value=size, precision=0, label="Height")
                        width = gr.Number(value=size, precision=0, label="Width")
                        num_images = gr.Slider(1, 8, value=1, step=1, label="Images")
                    road = gr.Dropdown(ROAD_CHOICES, value=pipe.condition_on, label="AlignNet reads", elem_id="road")
                    with gr.Row():
                        control = gr.Slider(0, 2, value=lightcontrol_scale, step=0.05, label="LightControl strength (requests with an image)",
                                            visible=pipe.lightcontrol is not None, elem_id="lightcontrol-scale")
                        lora = gr.Slider(0, 2, value=pipe.sources.get("lora_scale", 1.0), step=0.05, label="LoRA strength",
                                         visible=bool(pipe.sources.get("lora")), elem_id="lora-scale")
                        flux_loras = pipe.sources.get("flux_loras", [])
                        style = gr.Slider(0, 2, value=flux_loras[0][1] if flux_loras else 1.0, step=0.05, label="FLUX LoRA strength",
                                          visible=bool(flux_loras), elem_id="flux-lora-scale")
                    button = gr.Button("Generate", variant="primary", elem_id="generate")
                    gr.Examples([[text] for text in EXAMPLES], [prompt], label="Examples (click one)", elem_id="examples")
                with gr.Column():
                    gallery = gr.Gallery(label="Results (newest first), each with the inputs that made it", columns=2, elem_id="gallery")
                    download = gr.DownloadButton("Download all", value=None, elem_id="download")
            results = gr.State([])
            button.click(generate, [prompt, files, seed, steps, height, width, guidance, num_images, road, control, lora, style, results],
                         [gallery, results, download])
        with gr.Tab("Conversation"):
            chatbot = gr.Chatbot(label="Each turn edits the last picture and reads the earlier turns", elem_id="chat", height=480)
            with gr.Row():
                message = gr.Textbox(label="Message", scale=4, elem_id="message")
                attach = gr.File(label="Attach", file_count="multiple", file_types=types, scale=1, elem_id="attach")
            with gr.Row():
                send = gr.Button("Send", variant="primary", elem_id="send")
                clear = gr.Button("New conversation", elem_id="reset")
                chat_road = gr.Dropdown(ROAD_CHOICES, value=pipe.condition_on, label="AlignNet reads", elem_id="chat-road")
            session = gr.State(None)
            send.click(chat, [message, attach, chat_road, session, chatbot], [session, chatbot, message, attach])
            message.submit(chat, [message, attach, chat_road, session, chatbot], [session, chatbot, message, attach])
            clear.click(reset, [session], [session, chatbot])
    return app
