"""Qwen2.5-VL as X2I's reader: text and images -> all hidden layers, in one forward pass."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from safetensors import SafetensorError
from transformers import (
    AutoImageProcessor,
    AutoProcessor,
    AutoTokenizer,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
)
from transformers.utils import is_torchvision_available

from x2i.encoders.base import EncoderOutput, MLLMEncoder
from x2i.errors import X2IError
from x2i.request import Request, format_prompt


class _ImageOnlyQwenProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL's processor without its video processor.

    transformers needs torchvision to build the video processor and refuses to build the processor
    without one (huggingface/transformers#43986). Images and text need neither, so on a machine
    without torchvision we leave the video slot empty; asking for video then fails clearly.
    """

    def check_argument_for_proper_class(self, argument_name, argument):
        if argument_name == "video_processor" and argument is None:
            return None
        return super().check_argument_for_proper_class(argument_name, argument)


def load_processor(path: str | Path) -> Qwen2_5_VLProcessor:
    if is_torchvision_available():
        processor = AutoProcessor.from_pretrained(path)
    else:
        tokenizer = AutoTokenizer.from_pretrained(path)
        image_processor = AutoImageProcessor.from_pretrained(path)
        processor = _ImageOnlyQwenProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=None,
            chat_template=tokenizer.chat_template,
        )
    if processor.chat_template is None:
        raise X2IError(f"{path} has no chat template; X2I prompts need the model's chat template")
    # AlignNet was trained on left-padded prompts; the saved tokenizer may default to the right.
    processor.tokenizer.padding_side = "left"
    return processor


class Qwen2_5_VLEncoder(MLLMEncoder):
    family = "qwen2_5_vl"

    def __init__(self, model: Qwen2_5_VLForConditionalGeneration, processor: Qwen2_5_VLProcessor):
        self.model = model.eval().requires_grad_(False)
        self.processor = processor

    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> Qwen2_5_VLEncoder:
        try:
            model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=dtype)
            processor = load_processor(path)
        except (OSError, ValueError, RuntimeError, SafetensorError) as e:  # missing or corrupt files
            raise X2IError(f"cannot load Qwen2.5-VL from {path}: {str(e).strip().splitlines()[0]}") from e
        image_token = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
        if image_token != model.config.image_token_id:
            raise X2IError(
                f"the tokenizer in {path} does not belong to its model (image token id {image_token}, "
                f"model expects {model.config.image_token_id})"
            )
        return cls(model.to(device), processor)

    @property
    def num_hidden_states(self) -> int:
        return self.model.config.text_config.num_hidden_layers + 1

    @property
    def hidden_size(self) -> int:
        return self.model.config.text_config.hidden_size

    @property
    def device(self) -> torch.device:
        return self.model.device

    def chat(self, request: Request, answer: str | None = None) -> list[dict]:
        """The conversation the model reads: images first, then the formatted text; with `answer`,
        the assistant's reply too (for training the MLLM, or answer mode)."""
        content = [{"type": "image"} for _ in request.images]
        content.append({"type": "text", "text": format_prompt(request)})
        messages = [{"role": "user", "content": content}]
        if answer is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return messages

    def prompt_text(self, request: Request, answer: str | None = None) -> str:
        """The chat text the processor tokenizes (image placeholders not yet expanded)."""
        return self.processor.apply_chat_template(self.chat(request, answer), tokenize=False, add_generation_prompt=answer is None)

    def prepare(self, requests: Sequence[Request], pad_to: int | None = None, answers: Sequence[str] | None = None):
        """Processor outputs (input_ids, attention_mask, mm_token_type_ids, pixel_values, ...).
        Without `answers` each prompt ends with the assistant's turn opened, as for generation."""
        texts = [self.prompt_text(r, None if answers is None else answers[i]) for i, r in enumerate(requests)]
        images = [image for r in requests for image in r.images] or None
        inputs = self.processor(text=texts, images=images, padding=True, return_tensors="pt")
        if pad_to and inputs["input_ids"].shape[1] < pad_to:
            # Prompts longer than pad_to stay whole; shorter ones are padded up to it.
            inputs = self.processor(text=texts, images=images, padding="max_length", max_length=pad_to, return_tensors="pt")
        return inputs.to(self.device)

    def caption_token_ends(self, caption: str, answer: str | None = None) -> tuple[int, torch.Tensor] | None:
        """For a text-only request: the character where its caption starts in the chat text, and the
        end character of each of the chat's tokens; None when quoting moves the caption's characters
        inside the prompt's dict string."""
        chat = self.prompt_text(Request(caption), answer)
        start = chat.find(format_prompt(Request(caption)))
        if repr(caption)[1:-1] != caption or start < 0:
            return None
        offsets = self.processor.tokenizer(chat, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        return start + len("{'Text input': '"), torch.tensor([end for _, end in offsets])

    def position_ids(self, inputs) -> torch.Tensor:
        """The positions `generate()` gives a prompt: padding-aware text positions, plus 3D (M-RoPE)
        positions for image tokens. A plain forward would count left padding as positions."""
        mask = inputs["attention_mask"]
        text = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
        if inputs.get("image_grid_thw") is not None:
            vision, _ = self.model.model.get_rope_index(
                inputs["input_ids"],
                mm_token_type_ids=inputs["mm_token_type_ids"],
                image_grid_thw=inputs["image_grid_thw"],
                attention_mask=mask,
            )
        else:
            vision = text.unsqueeze(0).expand(3, -1, -1)
        return torch.cat([text.unsqueeze(0), vision], dim=0)

    @torch.no_grad()
    def answer(self, requests: Sequence[Request], max_new_tokens: int = 128) -> list[str]:
        inputs = self.prepare(requests)
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        texts = self.processor.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return [t.strip() for t in texts]

    def answer_length(self, answer: str) -> int:
        return len(self.processor.tokenizer(answer + "<|im_end|>\n").input_ids)

    @torch.no_grad()
    def encode(self, requests: Sequence[Request], pad_to: int | None = None, answers: Sequence[str] | None = None) -> EncoderOutput:
        inputs = self.prepare(requests, pad_to, answers)
        # The backbone alone: the LM head's logits over the whole vocabulary are not needed.
        out = self.model.model(
            **inputs,
            position_ids=self.position_ids(inputs),
            output_hidden_states=True,
            use_cache=False,
        )
        return EncoderOutput(torch.stack(out.hidden_states, dim=1), inputs["attention_mask"])
