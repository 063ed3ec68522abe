"""Audio and video inputs, decoded with PyAV (FFmpeg's libraries; no torchvision or torchaudio needed).

A clip is opened and checked when the request is made (so a bad file fails before any model
loads), and decoded later at the rate the reader asks for: audio at its feature extractor's
sampling rate, video frames at a stated fps with a bounded count. PyAV is imported where a clip is
opened or decoded, so that a request without clips never pays for it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from x2i.errors import X2IError

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".mov", ".mkv", ".avi")
AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a", ".aac")
VIDEO_FPS = 2.0  # Qwen2.5-VL's and Qwen2.5-Omni's sampling rate for video
MAX_VIDEO_FRAMES = 64  # at 2 fps, the first 32 s of a clip


def _open(path: Path, kind: str, suffixes: tuple[str, ...]):
    if path.is_dir():
        raise X2IError(f"{kind} file {path} is a directory; give a file")
    if not path.is_file():
        raise X2IError(f"{kind} file not found: {path}")
    if path.suffix.lower() not in suffixes:
        raise X2IError(f"{path}: unsupported {kind} format {path.suffix or '(none)'}; use one of {', '.join(suffixes)}")
    import av

    try:
        return av.open(str(path))
    except av.error.FFmpegError as e:
        raise X2IError(f"cannot read {kind} {path}: {e.strerror or e}; is it a valid {kind} file?") from e


def _duration(container, stream) -> float | None:
    import av

    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


@dataclass
class Audio:
    """A sound clip: a file (decoded on demand) or samples already in memory (mono, float)."""

    path: Path | None = None
    samples: np.ndarray | None = field(default=None, repr=False)
    sampling_rate: int | None = None
    duration: float = 0.0  # seconds

    @classmethod
    def load(cls, path: str | Path) -> Audio:
        """Open and check an audio file (any format FFmpeg reads: wav, mp3, flac, ogg, m4a, ...)."""
        path = Path(path)
        with _open(path, "audio", AUDIO_SUFFIXES + VIDEO_SUFFIXES) as container:
            if not container.streams.audio:
                raise X2IError(f"{path} has no audio stream")
            stream = container.streams.audio[0]
            duration = _duration(container, stream)
            if duration is None:  # some formats only know their length once decoded
                duration = sum(frame.samples for frame in container.decode(stream)) / stream.rate
        if duration <= 0:
            raise X2IError(f"{path} is an empty audio clip")
        return cls(path=path, duration=duration)

    @classmethod
    def from_array(cls, samples: np.ndarray, sampling_rate: int) -> Audio:
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim == 2:  # channels first or last: mix down to mono
            samples = samples.mean(axis=0 if samples.shape[0] < samples.shape[1] else 1)
        if samples.ndim != 1 or samples.size == 0:
            raise X2IError("audio samples must be a non-empty 1D (mono) or 2D (channels) array")
        return cls(samples=samples, sampling_rate=sampling_rate, duration=samples.size / sampling_rate)

    @property
    def name(self) -> str:
        return str(self.path) if self.path else "audio"

    def decode(self, sampling_rate: int) -> np.ndarray:
        """Mono float32 samples at `sampling_rate`, resampled by FFmpeg (libswresample)."""
        if self.samples is not None and self.sampling_rate == sampling_rate:
            return self.samples
        import av

        resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
        chunks = []
        if self.samples is not None:
            frame = av.AudioFrame.from_ndarray(self.samples[None], format="flt", layout="mono")
            frame.sample_rate = self.sampling_rate
            frames = [frame]
            container = None
        else:
            container = av.open(str(self.path))
            frames = container.decode(container.streams.audio[0])
        try:
            for frame in frames:
                frame.pts = None  # let the resampler count samples itself: some files have gaps in pts
                chunks += [f.to_ndarray()[0] for f in resampler.resample(frame)]
            chunks += [f.to_ndarray()[0] for f in resampler.resample(None)]
        finally:
            if container is not None:
                container.close()
        return np.concatenate(chunks).astype(np.float32)


def _track(path: Path) -> Audio | None:
    """A video file's sound track; a track with no sound in it leaves the clip seen, not heard."""
    try:
        return Audio.load(path)
    except X2IError as e:
        warnings.warn(f"{path}: its sound track cannot be heard ({e}); the clip is read without it", stacklevel=3)
        return None


@dataclass
class Video:
    """A video clip: a file (mp4, webm, gif, ...) decoded on demand into RGB frames at a stated
    fps, or frames already in memory."""

    path: Path | None
    duration: float  # seconds
    fps: float  # the clip's own frame rate
    clip: list[np.ndarray] | None = field(default=None, repr=False)
    sound: Audio | None = None  # the file's sound track, if it has one

    @classmethod
    def from_frames(cls, frames, fps: float) -> Video:
        """Frames in memory (PIL images or uint8 arrays [H, W, 3]) shown at `fps`."""
        clip = [np.asarray(f.convert("RGB") if hasattr(f, "convert") else f, dtype=np.uint8) for f in frames]
        if not clip or fps <= 0 or any(f.ndim != 3 or f.shape[2] != 3 or f.shape != clip[0].shape for f in clip):
            raise X2IError("a clip is one or more RGB frames of one size, at a positive fps")
        return cls(path=None, duration=len(clip) / fps, fps=fps, clip=clip)

    @classmethod
    def load(cls, path: str | Path) -> Video:
        path = Path(path)
        with _open(path, "video", VIDEO_SUFFIXES) as container:
            if not container.streams.video:
                raise X2IError(f"{path} has no video stream")
            stream = container.streams.video[0]
            duration = _duration(container, stream)
            rate = float(stream.average_rate or stream.guessed_rate or 0) or None
            if duration is None or rate is None:  # e.g. some GIFs: count the frames
                times = [frame.time for frame in container.decode(stream)]
                rate = rate or (len(times) / max(times[-1], 1e-6) if len(times) > 1 else 1.0)
                duration = len(times) / rate
            has_sound = bool(container.streams.audio)
        if duration <= 0:
            raise X2IError(f"{path} is an empty video clip")
        return cls(path=path, duration=duration, fps=rate, sound=_track(path) if has_sound else None)

    @property
    def name(self) -> str:
        return str(self.path) if self.path else "video"

    def frames(self, fps: float = VIDEO_FPS, max_frames: int = MAX_VIDEO_FRAMES) -> list[np.ndarray]:
        """RGB frames (uint8 [H, W, 3]) sampled at `fps`: for each time k / fps, the last frame shown by
        then. At most `max_frames`: a longer clip is cut, with a warning that says where."""
        import av

        wanted = max(1, math.floor(self.duration * fps + 1e-6))
        if wanted > max_frames:
            warnings.warn(
                f"{self.path}: {self.duration:.1f} s at {fps:g} fps is {wanted} frames; reading only the first "
                f"{max_frames / fps:.1f} s ({max_frames} frames)",
                stacklevel=2,
            )
            wanted = max_frames
        times = [k / fps for k in range(wanted)]
        if self.clip is not None:  # frame i is shown from i / self.fps on
            return [self.clip[min(len(self.clip) - 1, math.floor(t * self.fps + 1e-6))] for t in times]
        frames: list[np.ndarray] = []
        with av.open(str(self.path)) as container:
            shown = None
            for frame in container.decode(container.streams.video[0]):
                while frame.time is not None and len(frames) < wanted and frame.time > times[len(frames)] + 1e-6:
                    frames.append(shown if shown is not None else frame.to_ndarray(format="rgb24"))
                if len(frames) == wanted:
                    break
                shown = frame.to_ndarray(format="rgb24")
            while len(frames) < wanted and shown is not None:  # the clip ends before the last sample time
                frames.append(shown)
        if not frames:
            raise X2IError(f"{self.path}: no frame could be decoded")
        return frames
