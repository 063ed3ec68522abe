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
    def encode(self, requests: Sequence[Request], pad_to: int | None = None) -> EncoderOutput:
        """One forward pass over the prompts. Batches are left-padded to the longest prompt, or to
        `pad_to` tokens when given (the official checkpoints were trained padded to 512)."""
