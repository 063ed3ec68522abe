"""The protocol every MLLM family implements: requests in, stacked hidden states out.

An encoder has
- `model`: the transformers model (`...ForConditionalGeneration`), frozen;
- `prepare(requests, pad_to=None)`: the exact inputs that model takes, a dict of tensors made by
  the model's own processor (left padded, as `generate()` needs);
- `encode(requests, pad_to=None)`: ONE forward pass of the model's backbone over those inputs, with
  the positions `generate()` would give them, returning every hidden state `[B, layers + 1, S, H]`
  and the mask. It equals the first step of `model.generate(**prepare(...), max_new_tokens=1,
  output_hidden_states=True, return_dict_in_generate=True)` on the real tokens (tests check this
  for every family).

A family module (Qwen2.5-VL, InternVL, Qwen2.5-Omni) says which model and processor it loads, which
inputs it takes besides text, and how a request becomes the prompt text its AlignNet was trained
on. Everything downstream (AlignNet, the pipeline, distillation) sees only `EncoderOutput`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image
from safetensors import SafetensorError
from transformers import PreTrainedModel

from x2i.errors import X2IError
from x2i.inference.request import Request, format_prompt, user_text_span
from x2i.media.clips import MAX_VIDEO_FRAMES, VIDEO_FPS, Audio, Video

MODALITY_NAMES = {Image.Image: "images", Audio: "audio", Video: "video"}


@dataclass
class EncoderOutput:
    hidden_states: torch.Tensor  # [B, C, S, H]: embedding output + every decoder layer (last one normed)
    attention_mask: torch.Tensor  # [B, S]: 1 for real tokens, 0 for padding
    request_mask: torch.Tensor | None = None  # [B, S]: True on the request's own tokens (`MLLMEncoder.request_tokens`)

    def keep_last(self, counts: Sequence[int | None]) -> EncoderOutput:
        """Row i keeps its last counts[i] tokens (None: all); the others become padding, with the
        states of the row's left padding (zeros when it has none), as if the prompt were shorter."""
        hidden, mask = self.hidden_states.clone(), self.attention_mask.clone()
        for i, keep in enumerate(counts):
            if keep is None or keep >= mask.shape[1]:
                continue
            padding = hidden[i, :, 0] if mask[i, 0] == 0 else torch.zeros_like(hidden[i, :, 0])
            cut = mask.shape[1] - keep
            hidden[i, :, :cut] = padding[:, None]
            mask[i, :cut] = 0
        return EncoderOutput(hidden, mask, None if self.request_mask is None else self.request_mask & mask.bool())

    def last(self, n: int) -> EncoderOutput:
        """The last `n` tokens of every row."""
        request_mask = None if self.request_mask is None else self.request_mask[:, -n:]
        return EncoderOutput(self.hidden_states[:, :, -n:], self.attention_mask[:, -n:], request_mask)


class MLLMEncoder(ABC):
    """A frozen multimodal LLM that reads requests and returns all its hidden layers."""

    family: str  # the `model_type` in the model's config.json
    name: str  # for messages: "Qwen2.5-VL"
    model_class: type[PreTrainedModel]
    takes: tuple[type, ...] = (Image.Image,)  # the media it reads besides text
    video_fps: float = VIDEO_FPS
    max_video_frames: int = MAX_VIDEO_FRAMES

    def __init__(self, model: PreTrainedModel, processor):
        self.model = model.eval().requires_grad_(False)
        self.processor = processor
        # Where inputs go when the weights live elsewhere (sequential CPU offload streams them in).
        self.execution_device: torch.device | None = None
        # AlignNet was trained on left-padded prompts, and generate() needs them.
        self.processor.tokenizer.padding_side = "left"

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, quantization=None):
        try:
            if quantization is None:
                model = cls.model_class.from_pretrained(path, dtype=dtype).to(device)
            else:  # quantized as it loads, onto the device (a quantized model cannot be moved afterwards)
                model = cls.model_class.from_pretrained(path, dtype=dtype, quantization_config=quantization, device_map=str(torch.device(device)))
            processor = cls.load_processor(path)
        except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as e:  # missing or corrupt files
            raise X2IError(f"cannot load {cls.name} from {path}: {str(e).strip().splitlines()[0]}") from e
        encoder = cls(model, processor)
        encoder.check_tokenizer(path)
        return encoder

    @classmethod
    @abstractmethod
    def load_processor(cls, path: str | Path):
        """The model's processor, built without torchvision (which the CPU torch wheel lacks)."""

    def check_tokenizer(self, path) -> None:
        image_token = self.processor.tokenizer.convert_tokens_to_ids(self.processor.image_token)
        expected = getattr(self.model.config, "image_token_id", None) or self.model.config.image_token_index
        if image_token != expected:
            raise X2IError(
                f"the tokenizer in {path} does not belong to its model (image token id {image_token}, model expects {expected})"
            )

    @property
    def num_hidden_states(self) -> int:
        """C: decoder layers + 1."""
        return self.model.config.get_text_config().num_hidden_layers + 1

    @property
    def hidden_size(self) -> int:
        """H."""
        return self.model.config.get_text_config().hidden_size

    @property
    def device(self) -> torch.device:
        return self.execution_device or self.model.device

    @property
    def backbone(self) -> torch.nn.Module:
        """The model without its LM head: the head's logits over the whole vocabulary are not needed."""
        return self.model.model

    @classmethod
    def check(cls, request: Request, path: str | Path | None = None) -> None:
        """Refuse a request with an input this reader cannot take, in one line; with `path` (the
        checkpoint), also what its processor's settings refuse. Nothing but small files loads."""
        for item in request.all_media():
            if not isinstance(item, cls.takes):
                kind = next(name for t, name in MODALITY_NAMES.items() if isinstance(item, t))
                takes = ", ".join(["text", *(MODALITY_NAMES[t] for t in cls.takes)])
                hint = "Qwen2.5-Omni for audio (--mllm mini-omni: the mini one)" if kind == "audio" else "Qwen2.5-VL or Qwen2.5-Omni for video"
                raise X2IError(f"{cls.name} does not take {kind} (it reads {takes}); use a reader that does, e.g. {hint}")

    @abstractmethod
    def prompt_text(self, request: Request, answer: str | None = None) -> str:
        """The text the processor tokenizes (placeholders for the media not yet expanded); with
        `answer`, the model's answer after it (answer mode, training the mini MLLM)."""

    def media_inputs(self, requests: Sequence[Request]) -> dict:
        """The processor's media arguments, in prompt order."""
        images = [m for r in requests for m in r.all_media() if isinstance(m, Image.Image)]
        return {"images": images or None}

    def prepare(self, requests: Sequence[Request], pad_to: int | None = None, answers: Sequence[str] | None = None) -> dict:
        """The model's inputs (input_ids, attention_mask, pixel values, ...), left padded to the
        longest prompt, or to `pad_to` tokens (prompts longer than that stay whole). Without
        `answers`, each prompt ends where the model's answer would start."""
        for request in requests:
            self.check(request)
        texts = [self.prompt_text(r, None if answers is None else answers[i]) for i, r in enumerate(requests)]
        media = self.media_inputs(requests)
        # Padding goes to the tokenizer alone: given at the top level, `max_length` also reaches the
        # audio feature extractor, which would cut the sound to that many samples.
        inputs = self.processor(text=texts, text_kwargs={"padding": True}, return_tensors="pt", **media)
        if pad_to and inputs["input_ids"].shape[1] < pad_to:
            inputs = self.processor(text=texts, text_kwargs={"padding": "max_length", "max_length": pad_to}, return_tensors="pt", **media)
        return inputs.to(self.device)

    def position_ids(self, inputs: dict) -> torch.Tensor:
        """The positions `generate()` gives a prompt: its own method (padding-aware text positions,
        plus the 3D M-RoPE positions of image, video and audio tokens where the model has them). A
        plain forward would count left padding as positions."""
        return self.model._prepare_position_ids_for_generation(inputs["input_ids"], dict(inputs))

    @torch.no_grad()
    def encode(self, requests: Sequence[Request], pad_to: int | None = None, answers: Sequence[str] | None = None,
               request_tokens: bool = False) -> EncoderOutput:
        """One forward pass over the prompts (and, given `answers`, the answers after them); with
        `request_tokens`, also which tokens are the requests' own."""
        inputs = self.prepare(requests, pad_to, answers)
        out = self.backbone(**inputs, position_ids=self.position_ids(inputs), output_hidden_states=True, use_cache=False)
        mask = self.request_tokens(requests, inputs, answers) if request_tokens else None
        return EncoderOutput(torch.stack(out.hidden_states, dim=1), inputs["attention_mask"], mask)

    def request_tokens(self, requests: Sequence[Request], inputs: dict, answers: Sequence[str] | None = None) -> torch.Tensor:
        """[B, S], True on each prompt's own tokens: its media's, its text's, and earlier turns' and
        answers' — not the chat template's, the dict's around the text, or padding. The processor
        expands each media placeholder into many tokens, so the prompt text, tokenized again with
        character offsets, is walked beside each row: a row token the text lacks is a medium's."""
        tokenizer, config = self.processor.tokenizer, self.model.config
        media_ids = {getattr(config, name, None) for name in ("image_token_id", "image_token_index", "video_token_id",
                                                               "video_token_index", "audio_token_id", "audio_token_index")}
        ids, real = inputs["input_ids"].cpu(), inputs["attention_mask"].cpu().bool()
        mask = torch.zeros_like(real)
        for row, request in enumerate(requests):
            answer = None if answers is None else answers[row]
            chat = self.prompt_text(request, answer)
            spans = user_spans(chat, request, answer)
            text = tokenizer(chat, add_special_tokens=False, return_offsets_mapping=True)
            j = 0
            for i in real[row].nonzero().flatten().tolist():
                token = int(ids[row, i])
                if j < len(text.input_ids) and token == text.input_ids[j]:
                    a, b = text.offset_mapping[j]
                    mask[row, i] = token in media_ids or any(a < end and b > start for start, end in spans)
                    j += 1
                else:
                    mask[row, i] = True
            if j != len(text.input_ids):
                raise X2IError(f"cannot find the request's own tokens among the {self.name} prompt's (row {row}): "
                               "its processor changed the text; use an AlignNet whose stream is 'all'")
        return mask.to(inputs["input_ids"].device)

    def count_tokens(self, text: str) -> int:
        return len(self.processor.tokenizer(text, add_special_tokens=False).input_ids)

    def cut_text(self, text: str, max_tokens: int) -> str:
        """`text` cut to its first `max_tokens` tokens."""
        ids = self.processor.tokenizer(text, add_special_tokens=False).input_ids
        return text if len(ids) <= max_tokens else self.processor.tokenizer.decode(ids[:max_tokens])

    @torch.no_grad()
    def answer(self, requests: Sequence[Request], max_new_tokens: int = 128) -> list[str]:
        """The model's greedy answers to the requests."""
        inputs = self.prepare(requests)
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        texts = self.processor.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return [t.strip() for t in texts]

    def caption_tokens(self, caption: str, char_ends: list[int], length: int, answer: str | None = None) -> list[int] | None:
        """Where a text-only request's caption words are among its tokens: for each character
        position `e` of `char_ends` (the end of a word, exclusive), the index in a left-padded row of
        `length` tokens of the token that holds character e - 1 (the causal model's token there has
        read the whole word); -1 where that falls outside the row. None when quoting moves the
        caption's characters inside the prompt's dict string. With `answer`, the row ends with it."""
        chat = self.prompt_text(Request(caption), answer)
        if repr(caption)[1:-1] != caption:
            return None
        try:
            start = user_spans(chat, Request(caption), answer)[0][0]
        except ValueError:  # the prompt's dict string is not in the text
            return None
        offsets = self.processor.tokenizer(chat, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        ends = torch.tensor([end for _, end in offsets])
        shift = length - len(ends)  # left padding (or, when negative, the tokens cut from the left)
        indices = [int(torch.searchsorted(ends, start + e - 1, right=True)) + shift for e in char_ends]
        return [j if 0 <= j < length else -1 for j in indices]


def user_spans(chat: str, request: Request, answer: str | None = None) -> list[tuple[int, int]]:
    """The characters of `chat` (a prompt text) that are the user's text and the model's answers."""
    spans, cursor = [], 0
    for turn, reply in [*request.history, (request, answer)]:
        prompt = format_prompt(turn)
        at = chat.index(prompt, cursor)
        if (span := user_text_span(turn)) is not None:
            spans.append((at + span[0], at + span[1]))
        cursor = at + len(prompt)
        if reply:
            at = chat.index(reply, cursor)
            spans.append((at, at + len(reply)))
            cursor = at + len(reply)
    return spans


class ChatTemplateEncoder(MLLMEncoder):
    """Families whose AlignNets read the prompt inside the model's chat template (Qwen2.5-VL,
    Qwen2.5-Omni): one user message, its media first in the order given, then the formatted text."""

    def chat(self, request: Request, answer: str | None = None) -> list[dict]:
        """The messages: each earlier turn and its answer, then this request (and `answer`)."""
        kinds = {Image.Image: "image", Audio: "audio", Video: "video"}
        messages = []
        for turn, reply in [*request.history, (request, answer)]:
            content = [{"type": next(k for t, k in kinds.items() if isinstance(m, t))} for m in turn.media]
            content.append({"type": "text", "text": format_prompt(turn)})
            messages.append({"role": "user", "content": content})
            if reply is not None:
                messages.append({"role": "assistant", "content": [{"type": "text", "text": reply}]})
        return messages

    def prompt_text(self, request: Request, answer: str | None = None) -> str:
        return self.processor.apply_chat_template(self.chat(request, answer), tokenize=False, add_generation_prompt=answer is None)
