"""Qwen2-VL's video processing (used by Qwen2.5-VL and Qwen2.5-Omni) on PIL and numpy.

transformers' `Qwen2VLVideoProcessor` needs torchvision, which does not install beside the CPU
torch wheel. This does the same steps on frames that `x2i.media.Video` already sampled: resize every
frame of a clip to one size that is a multiple of patch x merge within the video pixel bounds
(`smart_resize`, the image processor's PIL bicubic resize), rescale and normalise with the image
processor, pad to a whole number of temporal patches with the last frame, and cut into the
vision tower's patches. The output is the model's own video input (`pixel_values_videos`,
`video_grid_thw`); tests/test_video.py compares it with transformers' torchvision processor.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import SizeDict
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize
from transformers.video_utils import VideoMetadata

# Qwen2VLVideoProcessor's defaults (and Qwen2.5-Omni's processor's video settings).
MIN_PIXELS = 128 * 28 * 28
MAX_PIXELS = 768 * 28 * 28


class QwenVideoProcessor:
    model_input_names = ["pixel_values_videos", "video_grid_thw"]

    def __init__(self, image_processor, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS):
        self.image_processor = image_processor
        self.min_pixels, self.max_pixels = min_pixels, max_pixels
        self.patch_size = image_processor.patch_size
        self.temporal_patch_size = image_processor.temporal_patch_size
        self.merge_size = image_processor.merge_size

    @classmethod
    def from_pretrained(cls, path: str | Path, image_processor) -> QwenVideoProcessor:
        """Sizes from the checkpoint's video_preprocessor_config.json when it has one."""
        config_file = Path(path) / "video_preprocessor_config.json"
        size = json.loads(config_file.read_text()).get("size", {}) if config_file.is_file() else {}
        return cls(image_processor, size.get("shortest_edge", MIN_PIXELS), size.get("longest_edge", MAX_PIXELS))

    def save_pretrained(self, path: str | Path) -> None:
        config = {"size": {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels}}
        (Path(path) / "video_preprocessor_config.json").write_text(json.dumps(config, indent=2))

    def __call__(self, videos, video_metadata: list[VideoMetadata] | None = None, return_tensors=None, **kwargs) -> BatchFeature:
        """`videos`: clips, each a list of RGB uint8 frames [H, W, 3] (or an array [T, H, W, 3]) already
        sampled; `video_metadata`: their sampling rate (the positions of the frames in time)."""
        ip = self.image_processor
        factor = self.patch_size * self.merge_size
        all_patches, grids = [], []
        for clip in videos:
            frames = [np.asarray(f) for f in clip]
            height, width = frames[0].shape[:2]
            h, w = smart_resize(height, width, factor=factor, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
            processed = []
            for frame in frames:
                chw = frame.transpose(2, 0, 1)
                if (h, w) != (height, width):
                    chw = PilBackend.resize(ip, chw, size=SizeDict(height=h, width=w), resample=ip.resample)
                chw = ip.normalize(ip.rescale(chw.astype(np.float32), ip.rescale_factor), ip.image_mean, ip.image_std)
                processed.append(chw)
            if pad := -len(processed) % self.temporal_patch_size:
                processed += [processed[-1]] * pad
            patches, grid = self.patchify(np.stack(processed).astype(np.float32))
            all_patches.append(patches)
            grids.append(grid)
        metadata = video_metadata or [VideoMetadata(total_num_frames=len(clip)) for clip in videos]
        return BatchFeature(
            data={
                "pixel_values_videos": torch.from_numpy(np.concatenate(all_patches)),
                "video_grid_thw": torch.tensor(grids),
                "video_metadata": metadata,
            },
        )

    def patchify(self, video: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """[T, C, H, W] -> [grid_t * grid_h * grid_w, C * temporal * patch * patch], in the vision
        tower's order: merge windows together, each window's patches together."""
        t, c, h, w = video.shape
        p, m, tp = self.patch_size, self.merge_size, self.temporal_patch_size
        gt, gh, gw = t // tp, h // p, w // p
        patches = video.reshape(gt, tp, c, gh // m, m, p, gw // m, m, p)
        patches = patches.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
        return patches.reshape(gt * gh * gw, c * tp * p * p), [gt, gh, gw]


class TorchvisionFreeVideo:
    """Put before a transformers processor class: its video slot may hold a `QwenVideoProcessor`
    (Qwen2.5-VL, Qwen2.5-Omni) or nothing (InternVL, which reads no video here), where transformers
    would ask for its torchvision-based video processor."""

    def check_argument_for_proper_class(self, argument_name, argument):
        if argument_name == "video_processor" and (argument is None or isinstance(argument, QwenVideoProcessor)):
            return None
        return super().check_argument_for_proper_class(argument_name, argument)
