"""The conditioning FLUX reads, and the one path that makes it from an MLLM's hidden states.

FLUX reads a text sequence (`prompt_embeds`, T5's place), a pooled vector (`pooled_prompt_embeds`,
CLIP's place) and text positions (`txt_ids`, zeros: text tokens carry no position in FLUX). The
teacher gets them from T5/CLIP (`FluxPipeline.encode_prompt`), X2I from MLLM -> AlignNet
(`condition`). The pipeline and distillation both use `condition`, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from x2i.inference.encoders.base import EncoderOutput


@dataclass
class FluxConditioning:
    prompt_embeds: torch.Tensor  # [B, S, D]
    pooled_prompt_embeds: torch.Tensor  # [B, P]

    @property
    def text_ids(self) -> torch.Tensor:
        return torch.zeros(self.prompt_embeds.shape[1], 3, device=self.prompt_embeds.device, dtype=self.prompt_embeds.dtype)

    def rows(self, index: list[int]) -> FluxConditioning:
        """The conditioning of these rows (a row may repeat: one per image to make)."""
        return FluxConditioning(self.prompt_embeds[index], self.pooled_prompt_embeds[index])

    def pipeline_kwargs(self, dtype: torch.dtype) -> dict:
        """For `FluxPipeline.__call__` (which makes the zero `txt_ids` itself)."""
        return dict(prompt_embeds=self.prompt_embeds.to(dtype), pooled_prompt_embeds=self.pooled_prompt_embeds.to(dtype))

    def transformer_kwargs(self, dtype: torch.dtype) -> dict:
        """For `FluxTransformer2DModel.forward`."""
        return dict(encoder_hidden_states=self.prompt_embeds.to(dtype), pooled_projections=self.pooled_prompt_embeds.to(dtype),
                    txt_ids=self.text_ids.to(dtype))


def condition(alignnet, states: EncoderOutput) -> FluxConditioning:
    """MLLM hidden states -> AlignNet -> FLUX conditioning. AlignNet runs in its own dtype (fp32
    while it trains under autocast; the pipeline's dtype at inference)."""
    dtype = next(alignnet.parameters()).dtype  # also when DDP wraps AlignNet
    output = alignnet(states.hidden_states.to(dtype), attention_mask=states.attention_mask)
    return FluxConditioning(output.prompt_embeds, output.pooled_prompt_embeds)
