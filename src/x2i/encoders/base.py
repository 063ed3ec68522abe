"""The interface every MLLM family implements: requests in, stacked hidden states out.

A family module (one per MLLM: Qwen2.5-VL here; InternVL, MiniCPM-o, Qwen2.5-Omni later) owns how
its processor turns a request into model inputs and how to run ONE forward pass over the prompt.
Everything downstream (AlignNet, the pipeline, distillation) sees only `EncoderOutput`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import torch

from x2i.request import Request


@dataclass
class EncoderOutput:
    hidden_states: torch.Tensor  # [B, C, S, H]: embedding output + every decoder layer (last one normed)
    attention_mask: torch.Tensor  # [B, S]: 1 for real tokens, 0 for padding

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
        return EncoderOutput(hidden, mask)


class MLLMEncoder(ABC):
    """A frozen multimodal LLM that reads requests and returns all its hidden layers."""

    family: str  # the `model_type` in the model's config.json

    @property
    @abstractmethod
    def num_hidden_states(self) -> int:
        """C: decoder layers + 1."""

    @property
    @abstractmethod
    def hidden_size(self) -> int:
        """H."""

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @abstractmethod
    def encode(self, requests: Sequence[Request], pad_to: int | None = None, answers: Sequence[str] | None = None) -> EncoderOutput:
        """One forward pass over the prompts (and, given `answers`, the assistant's answers after
        them). Batches are left-padded to the longest prompt, or to `pad_to` tokens when given (the
        official checkpoints were trained padded to 512)."""

    @abstractmethod
    def answer(self, requests: Sequence[Request], max_new_tokens: int = 128) -> list[str]:
        """The model's greedy answers to the requests."""

    @abstractmethod
    def answer_length(self, answer: str) -> int:
        """How many tokens an answer and the chat template's closing tokens after it take."""
