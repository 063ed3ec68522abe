"""Make the reference that tests/test_video.py compares x2i's video processing with.

Runs where transformers' own `Qwen2VLVideoProcessor` runs, i.e. with torchvision (here: a venv with
`pip install torch==2.14.1 torchvision==0.29.1 transformers==5.24.0 av`):

    python tests/data/make_video_reference.py

It writes two small clips and, for the frames x2i samples from them (2 fps), the video input that
transformers' processor makes: one clip whose frames need no resizing, one that is resized.
"""

import sys
from pathlib import Path

import av
import numpy as np
import torch
from transformers import Qwen2VLVideoProcessor
from transformers.video_utils import VideoMetadata

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[1] / "src"))
from x2i.media import Video  # noqa: E402

CLIPS = {"clip-56x56.mp4": (56, 56), "clip-64x48.mp4": (64, 48)}
PIXELS = 56 * 56  # min = max pixels: 56x56 frames stay as they are, 64x48 ones become 56x56


def write_clip(path: Path, width: int, height: int, frames: int = 10, fps: int = 4) -> None:
    y, x = np.mgrid[:height, :width]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "0"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv444p"
        for i in range(frames):
            # smooth colour ramps (so bicubic resizing is tested on real detail) and a moving bar
            image = np.stack([(x * 255) // width, (y * 255) // height, (x * y + 40 * i) % 256], -1).astype(np.uint8)
            image[:, (3 * i) % width : (3 * i) % width + 4] = (255, 40, 0)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def main() -> None:
    processor = Qwen2VLVideoProcessor(min_pixels=PIXELS, max_pixels=PIXELS, do_sample_frames=False)
    reference = {}
    for name, (width, height) in CLIPS.items():
        write_clip(HERE / name, width, height)
        frames = Video.load(HERE / name).frames(fps=2.0)
        video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # [T, C, H, W]
        metadata = VideoMetadata(total_num_frames=len(frames), fps=2.0)
        out = processor(videos=[video], video_metadata=[metadata], cap_pixels_per_frame=False, return_tensors="pt")
        reference[f"{name}:pixel_values_videos"] = out["pixel_values_videos"].numpy()
        reference[f"{name}:video_grid_thw"] = out["video_grid_thw"].numpy()
    np.savez_compressed(HERE / "video-reference.npz", **reference)


if __name__ == "__main__":
    main()
