"""The conditioning FLUX reads, and the one path that makes it from an MLLM's hidden states.

FLUX reads a text sequence (`prompt_embeds`, T5's place), a pooled vector (`pooled_prompt_embeds`,
CLIP's place) and text positions (`txt_ids`, zeros: text tokens carry no position in FLUX). The
teacher gets them from T5/CLIP (`FluxPipeline.encode_prompt`), X2I from MLLM -> AlignNet
(`condition`). The pipeline and distillation both use `condition`, so they cannot drift apart.

An AlignNet whose stream is "request" gives FLUX only the request's own tokens (`request_stream`):
each row's, right-aligned in a stream as long as the batch's longest, the rest hidden from FLUX's
attention by a mask, so that a picture does not depend on the requests beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from x2i.inference.encoders.base import EncoderOutput


@dataclass
class FluxConditioning:
    prompt_embeds: torch.Tensor  # [B, S, D]
    pooled_prompt_embeds: torch.Tensor  # [B, P]
    text_mask: torch.Tensor | None = None  # [B, S] bool: the text tokens FLUX attends to (None: every one)

    @property
    def text_ids(self) -> torch.Tensor:
        return torch.zeros(self.prompt_embeds.shape[1], 3, device=self.prompt_embeds.device, dtype=self.prompt_embeds.dtype)

    def rows(self, index: list[int]) -> FluxConditioning:
        """The conditioning of these rows (a row may repeat: one per image to make)."""
        mask = None if self.text_mask is None else self.text_mask[index]
        return FluxConditioning(self.prompt_embeds[index], self.pooled_prompt_embeds[index], mask)

    def attention_kwargs(self, image_tokens: int) -> dict:
        """FLUX's attention mask over its keys (text, then `image_tokens` image tokens), where some
        text token is hidden; none otherwise."""
        if self.text_mask is None or bool(self.text_mask.all()):
            return {}
        keys = torch.cat([self.text_mask, self.text_mask.new_ones(len(self.text_mask), image_tokens)], dim=1)
        return {"joint_attention_kwargs": {"attention_mask": keys}}

    def pipeline_kwargs(self, dtype: torch.dtype, image_tokens: int) -> dict:
        """For `FluxPipeline.__call__` (which makes the zero `txt_ids` itself)."""
        return dict(prompt_embeds=self.prompt_embeds.to(dtype), pooled_prompt_embeds=self.pooled_prompt_embeds.to(dtype),
                    **self.attention_kwargs(image_tokens))

    def transformer_kwargs(self, dtype: torch.dtype, image_tokens: int) -> dict:
        """For `FluxTransformer2DModel.forward`."""
        return dict(encoder_hidden_states=self.prompt_embeds.to(dtype), pooled_projections=self.pooled_prompt_embeds.to(dtype),
                    txt_ids=self.text_ids.to(dtype), **self.attention_kwargs(image_tokens))


def condition(alignnet, states: EncoderOutput) -> FluxConditioning:
    """MLLM hidden states -> AlignNet -> FLUX conditioning. AlignNet runs in its own dtype (fp32
    while it trains under autocast; the pipeline's dtype at inference)."""
    dtype = next(alignnet.parameters()).dtype  # also when DDP wraps AlignNet
    output = alignnet(states.hidden_states.to(dtype), attention_mask=states.attention_mask)
    model = getattr(alignnet, "module", alignnet)  # DDP wraps it while it trains
    config = model.config
    if config.stream == "all":
        return FluxConditioning(output.prompt_embeds, output.pooled_prompt_embeds)
    stream, mask = request_stream(output.prompt_embeds, streamed_tokens(states, config.closing_tokens))
    if config.registers:
        registers = model.register_tokens.to(stream.dtype)
        stream = torch.cat([registers.expand(len(stream), -1, -1), stream], dim=1)
        mask = torch.cat([mask.new_ones(len(mask), config.registers), mask], dim=1)
    return FluxConditioning(stream, output.pooled_prompt_embeds, mask)


def streamed_tokens(states: EncoderOutput, closing_tokens: int) -> torch.Tensor:
    """[B, S] bool: the MLLM tokens an AlignNet whose stream is "request" gives FLUX: the request's
    own, and the prompt's last `closing_tokens`."""
    if states.request_mask is None:
        raise ValueError("this AlignNet's stream is 'request': encode with request_tokens=True")
    keep = states.request_mask.clone()
    if closing_tokens:
        keep[:, -closing_tokens:] |= states.attention_mask[:, -closing_tokens:].bool()
    return keep


def stream_places(states: EncoderOutput, closing_tokens: int, registers: int) -> torch.Tensor:
    """[B, S]: each MLLM token's place in FLUX's text stream (-1: not in it), `registers` first."""
    positions = stream_positions(streamed_tokens(states, closing_tokens))
    return torch.where(positions >= 0, positions + registers, -1)


def stream_positions(request_mask: torch.Tensor) -> torch.Tensor:
    """[B, S]: where each request token goes in FLUX's text stream, -1 for the tokens it does not
    read. Each row's tokens keep their order and end the stream; the stream is as long as the
    batch's longest request."""
    counts = request_mask.sum(1, keepdim=True)
    positions = counts.max() - counts + request_mask.long().cumsum(1) - 1
    return positions.masked_fill(~request_mask, -1)


def request_stream(prompt_embeds: torch.Tensor, request_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The request tokens of `prompt_embeds [B, S, D]` as FLUX's text stream `[B, L, D]`, and its
    mask `[B, L]` (True where a token is)."""
    positions = stream_positions(request_mask)
    length = int(positions.max()) + 1
    rows, tokens = request_mask.nonzero(as_tuple=True)
    stream = prompt_embeds.new_zeros(len(prompt_embeds), length, prompt_embeds.shape[-1])
    stream[rows, positions[rows, tokens]] = prompt_embeds[rows, tokens]
    mask = torch.zeros(len(prompt_embeds), length, dtype=torch.bool, device=prompt_embeds.device)
    mask[rows, positions[rows, tokens]] = True
    return stream, mask
