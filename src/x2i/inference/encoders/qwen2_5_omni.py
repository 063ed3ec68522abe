"""Qwen2.5-Omni's thinker as X2I's reader: text, images, audio and video, in one forward pass.

Only the thinker (audio encoder, vision encoder, language model) loads; the talker and the speech
decoder are never needed. Sound is decoded by PyAV at the feature extractor's rate (16 kHz) and
turned into log-mel features by the model's Whisper feature extractor; images and video go through
the same processing as Qwen2.5-VL's. A clip with a sound track is heard as well as seen, as
Qwen2.5-Omni's `use_audio_in_video` does: PyAV decodes the track, transformers' processor
interleaves its tokens with the frames' in 2-second chunks, and the positions are the thinker's own
(M-RoPE with audio and video on one time axis), as `generate()` computes them.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from transformers import (
    AutoFeatureExtractor,
    Qwen2_5OmniProcessor,
    Qwen2_5OmniThinkerForConditionalGeneration,
)

from x2i.errors import X2IError
from x2i.inference.encoders.base import ChatTemplateEncoder
from x2i.inference.encoders.qwen2_5_vl import QwenVideoInputs, load_qwen_parts
from x2i.inference.encoders.video_processor import (
    TorchvisionFreeVideo,
)
from x2i.inference.request import Request
from x2i.media import Audio, Video


def sounds(requests) -> list[tuple[Audio, int | None]]:
    """Every sound the requests give, in prompt order, each with the index of the video clip whose
    track it is (None for a sound clip)."""
    found, videos = [], 0
    for m in (m for r in requests for m in r.all_media()):
        if isinstance(m, Audio):
            found.append((m, None))
        elif isinstance(m, Video):
            if m.sound is not None:
                found.append((m.sound, videos))
            videos += 1
    return found


class _Processor(TorchvisionFreeVideo, Qwen2_5OmniProcessor):
    """Qwen2.5-Omni's processor with x2i's torchvision-free video processor in its video slot."""


class Qwen2_5OmniEncoder(QwenVideoInputs, ChatTemplateEncoder):
    family = "qwen2_5_omni_thinker"
    name = "Qwen2.5-Omni"
    model_class = Qwen2_5OmniThinkerForConditionalGeneration
    takes = (Image.Image, Audio, Video)

    @classmethod
    def load_processor(cls, path: str | Path) -> Qwen2_5OmniProcessor:
        tokenizer, image_processor, video_processor = load_qwen_parts(path)
        feature_extractor = AutoFeatureExtractor.from_pretrained(path)
        return _Processor(image_processor=image_processor, video_processor=video_processor,
                          feature_extractor=feature_extractor, tokenizer=tokenizer, chat_template=tokenizer.chat_template)

    @classmethod
    def check(cls, request: Request, path: str | Path | None = None) -> None:
        super().check(request, path)
        if path is not None and sounds([request]):
            cls.refuse_long_audio([request], AutoFeatureExtractor.from_pretrained(path).chunk_length)

    @classmethod
    def refuse_long_audio(cls, requests, limit: float) -> None:
        """A sound longer than the feature extractor's window (its `chunk_length`) would be cut
        without a word: refuse it."""
        for clip, _ in sounds(requests):
            if clip.duration > limit + 1e-3:
                raise X2IError(
                    f"{clip.name} is {clip.duration:.1f} s long; {cls.name} hears at most {limit:g} s per clip: "
                    f"cut it (e.g. ffmpeg -i IN -t {limit:g} OUT.wav)"
                )

    def media_inputs(self, requests) -> dict:
        self.refuse_long_audio(requests, self.processor.feature_extractor.chunk_length)
        inputs = super().media_inputs(requests)
        rate = self.processor.feature_extractor.sampling_rate
        # Every sound in the order its tokens stand in the prompt; a clip's track sits with its frames.
        found = sounds(requests)
        heard = sum(clip is not None for _, clip in found)
        if 0 < heard < sum(isinstance(m, Video) for r in requests for m in r.all_media()):
            raise X2IError(f"{self.name} hears the sound of every clip read together or of none (use_audio_in_video is one switch per "
                           "pass): read clips with and without sound in separate requests")
        if found:
            inputs["audio"] = [sound.decode(rate) for sound, _ in found]
        if heard:
            inputs.update(load_audio_from_video=True, audio_from_video_indices=[clip for _, clip in found])
        return inputs

    def prepare(self, requests, pad_to=None, answers=None) -> dict:
        inputs = super().prepare(requests, pad_to, answers)
        if any(clip is not None for _, clip in sounds(requests)):
            inputs["use_audio_in_video"] = True  # for the positions and the forward pass
        return inputs
