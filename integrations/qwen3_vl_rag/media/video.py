"""Video files through PyAV: read the container's header, decode chosen frames, cut clips.

The two primitives, :func:`probe` and :func:`read_frames`, are what the engine uses to sample a
video's frames exactly as the official pipeline does; they stream (only the chosen frames are
kept) and raise :class:`~qwen3_vl_rag.errors.VideoDecodeError`, never a raw PyAV error. A
:class:`FrameReader` decides where they run: :data:`IN_PROCESS`, or a worker process (see
:mod:`qwen3_vl_rag.media.isolation`) that contains a hang or crash in FFmpeg.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from qwen3_vl_rag.errors import VideoDecodeError

__all__ = ["IN_PROCESS", "FrameReader", "InProcessReader", "VideoHeader", "probe", "read_frames"]


@dataclass(frozen=True)
class VideoHeader:
    """What a container says about its first video stream."""

    frames: int
    fps: float
    width: int
    height: int

    @property
    def duration(self) -> float:
        """Length in seconds (frames / fps)."""
        return self.frames / self.fps


class FrameReader(Protocol):
    """Where video headers are read and frames decoded."""

    def probe(self, path: Path, label: str) -> VideoHeader:
        """The file's :class:`VideoHeader`."""
        ...

    def read(self, path: Path, indices: Sequence[int], label: str) -> np.ndarray:
        """Frames at ``indices`` (decode order), as a ``(len(indices), H, W, 3)`` uint8 array."""
        ...


def probe(path: Path, label: str | None = None) -> VideoHeader:
    """Frame count, frame rate and size of a video file, from its container (no decoding).

    Raises:
        VideoDecodeError: For a missing, unreadable, stream-less or frame-less file.
    """
    import av

    label = label or str(path)
    if not path.is_file():
        message = "no such video file." if not path.exists() else "not a regular file."
        raise VideoDecodeError(message, source=label)
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError("the file has no video stream.", source=label)
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            width, height = stream.codec_context.width, stream.codec_context.height
            frames = int(stream.frames or 0)
            if frames <= 0:  # some containers (WebM, MKV) do not record it: count packets
                frames = _count_packets(container, stream)
    except VideoDecodeError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoDecodeError(
            f"the container could not be read ({type(exc).__name__}: {exc}).", source=label
        ) from exc
    if frames <= 0 or not width or not height:
        raise VideoDecodeError("the video has no frames.", source=label)
    if not rate or float(rate) <= 0:
        raise VideoDecodeError("the video's frame rate is unknown.", source=label)
    return VideoHeader(frames, float(rate), int(width), int(height))


def _count_packets(container: Any, stream: Any) -> int:
    import av

    count = 0
    try:
        for packet in container.demux(stream):
            count += 1 if packet.size else 0
    except av.error.EOFError:
        pass  # a container cut short after its header: count what is there
    return count


def read_frames(path: Path, indices: Sequence[int], label: str | None = None) -> np.ndarray:
    """Decode the frames at ``indices`` (0-based, in decode order) as RGB.

    Decoding streams through the file up to the last wanted frame and keeps only the wanted ones,
    so memory holds ``len(indices)`` frames whatever the video's length.

    Raises:
        VideoDecodeError: When decoding fails or the file has fewer frames than its header said.
    """
    import av

    label = label or str(path)
    wanted = sorted(set(indices))
    last = wanted[-1]
    wanted_set = set(wanted)
    decoded: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted_set:
                    decoded[index] = frame.to_ndarray(format="rgb24")
                if index >= last:
                    break
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as exc:
        raise VideoDecodeError(
            f"decoding failed ({type(exc).__name__}: {exc}).", source=label
        ) from exc
    missing = [i for i in wanted if i not in decoded]
    if missing:
        raise VideoDecodeError(
            f"only {len(decoded)} of the {len(wanted)} sampled frames could be decoded "
            f"(frame {missing[0]} is missing; the file may be truncated).",
            source=label,
        )
    return np.stack([decoded[i] for i in indices])


class InProcessReader:
    """Reads videos in the calling process (the default)."""

    def probe(self, path: Path, label: str) -> VideoHeader:
        """See :func:`probe`."""
        return probe(path, label)

    def read(self, path: Path, indices: Sequence[int], label: str) -> np.ndarray:
        """See :func:`read_frames`."""
        return read_frames(path, indices, label)


#: The default reader.
IN_PROCESS = InProcessReader()


# -- readers that run elsewhere, and videos as items -----------------------------------------------


class IsolatedReader:
    """Reads video headers and frames through a runner (a worker pool contains FFmpeg)."""

    def __init__(self, runner: Any, timeout: float | None = None) -> None:
        self.runner = runner
        self.timeout = timeout

    def probe(self, path: Path, label: str) -> VideoHeader:
        """See :func:`probe`; runs in the runner."""
        header: VideoHeader = self.runner.run(
            probe, path, label, label=label, stage="probe", timeout=self.timeout
        )
        return header

    def read(self, path: Path, indices: Sequence[int], label: str) -> np.ndarray:
        """See :func:`read_frames`; runs in the runner."""
        frames: np.ndarray = self.runner.run(
            read_frames,
            path,
            list(indices),
            label,
            label=label,
            stage="decode",
            timeout=self.timeout,
        )
        return frames


class _KnownHeader:
    """A reader that answers ``probe`` for one file from a header already read."""

    def __init__(self, reader: FrameReader, path: Path, header: VideoHeader) -> None:
        self._reader, self._path, self._header = reader, path, header

    def probe(self, path: Path, label: str) -> VideoHeader:
        return self._header if path == self._path else self._reader.probe(path, label)

    def read(self, path: Path, indices: Sequence[int], label: str) -> np.ndarray:
        return self._reader.read(path, indices, label)
