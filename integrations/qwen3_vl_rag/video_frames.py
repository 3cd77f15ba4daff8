"""Video files through PyAV: read the container's header, decode chosen frames, cut clips.

The two primitives, :func:`probe` and :func:`read_frames`, are what the engine uses to sample a
video's frames exactly as the official pipeline does; they stream (only the chosen frames are
kept) and raise :class:`~qwen3_vl_rag.errors.VideoDecodeError`, never a raw PyAV error. A
:class:`FrameReader` decides where they run: :data:`IN_PROCESS`, or a worker process (see
:mod:`qwen3_vl_rag.media.isolation`) that contains a hang or crash in FFmpeg.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from qwen3_vl_rag.errors import VideoDecodeError
from qwen3_vl_rag.media.files import FileIdentity, OpenedFile, open_checked

__all__ = [
    "IN_PROCESS",
    "CheckedFileReader",
    "FrameReader",
    "InProcessReader",
    "VideoHeader",
    "probe",
    "read_frames",
]


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


def _opened(path: Path, identity: FileIdentity | None, label: str, stage: str) -> OpenedFile:
    """The file, reopened only if it is still the regular file that was checked."""
    if not os.path.lexists(path):
        raise VideoDecodeError("no such video file.", source=label, stage=stage)
    try:
        return open_checked(
            path,
            max_bytes=identity.size if identity is not None else 2**63,
            label=label,
            error=VideoDecodeError,
            expected=identity,
        )
    except VideoDecodeError as err:
        err.stage = stage
        raise


def probe(
    path: Path, label: str | None = None, identity: FileIdentity | None = None
) -> VideoHeader:
    """Frame count, frame rate and size of a video file, from its container (no decoding).

    Args:
        path: The video file.
        label: How errors name it.
        identity: The file as it was checked: anything else found at ``path`` is refused.

    Raises:
        VideoDecodeError: For a missing, unreadable, stream-less or frame-less file (``stage``
            ``"probe"``).
    """
    import av

    label = label or str(path)
    try:
        with (
            _opened(path, identity, label, "probe") as opened,
            av.open(opened.name_for_libraries()) as container,
        ):
            if not container.streams.video:
                raise VideoDecodeError("the file has no video stream.", source=label, stage="probe")
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
            f"the container could not be read ({type(exc).__name__}: {exc}).",
            source=label,
            stage="probe",
        ) from exc
    if frames <= 0 or not width or not height:
        raise VideoDecodeError("the video has no frames.", source=label, stage="probe")
    if not rate or float(rate) <= 0:
        raise VideoDecodeError("the video's frame rate is unknown.", source=label, stage="probe")
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


def read_frames(
    path: Path,
    indices: Sequence[int],
    label: str | None = None,
    identity: FileIdentity | None = None,
) -> np.ndarray:
    """Decode the frames at ``indices`` (0-based, in presentation order) as RGB.

    Only the wanted frames are kept, so memory holds ``len(indices)`` frames whatever the video's
    length. When the first wanted frame lies past a keyframe, decoding starts at that keyframe
    instead of the first frame (a clip at 0:50:00 does not decode the 50 minutes before it);
    frames are told apart by their timestamps, so the frames are the same as a decode from the
    start, on variable frame rate files too. Files whose timestamps cannot vouch for that are
    decoded from the start.

    With ``identity``, only the file that was checked is read (see :func:`probe`).

    Raises:
        VideoDecodeError: When decoding fails or the file has fewer frames than its header said
            (``stage`` ``"decode"``).
    """
    import av

    label = label or str(path)
    wanted = sorted(set(indices))
    decoded = None
    try:
        with _opened(path, identity, label, "decode") as opened:
            name = opened.name_for_libraries()
            if wanted[0] > 0:
                with av.open(name) as container:
                    stream = _video_stream(container)
                    decoded = _decode_from_keyframe(container, stream, opened.identity, wanted)
            if decoded is None:
                with av.open(name) as container:
                    decoded = _decode_from_start(container, _video_stream(container), wanted)
    except VideoDecodeError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as exc:
        raise VideoDecodeError(
            f"decoding failed ({type(exc).__name__}: {exc}).", source=label, stage="decode"
        ) from exc
    missing = [i for i in wanted if i not in decoded]
    if missing:
        raise VideoDecodeError(
            f"only {len(decoded)} of the {len(wanted)} sampled frames could be decoded "
            f"(frame {missing[0]} is missing; the file may be truncated).",
            source=label,
            stage="decode",
        )
    return np.stack([decoded[i] for i in indices])


def _video_stream(container: Any) -> Any:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _decode_from_start(container: Any, stream: Any, wanted: list[int]) -> dict[int, np.ndarray]:
    """The reference behaviour: count frames as they come out of the decoder."""
    wanted_set, last = set(wanted), wanted[-1]
    decoded: dict[int, np.ndarray] = {}
    for index, frame in enumerate(container.decode(stream)):
        if index in wanted_set:
            decoded[index] = frame.to_ndarray(format="rgb24")
        if index >= last:
            break
    return decoded


@dataclass(frozen=True)
class _Timeline:
    """Every frame's timestamp in presentation order, and which frames are keyframes."""

    pts: np.ndarray  # sorted: the frame at index i has timestamp pts[i]
    keyframes: np.ndarray  # sorted indices of keyframes


# A video cut into clips is read once per clip: its timeline is demuxed once per file (and
# process), kept for the last few files.
_TIMELINES: OrderedDict[FileIdentity, _Timeline | None] = OrderedDict()
_TIMELINES_LOCK = threading.Lock()
_TIMELINE_CACHE_SIZE = 8


def _timeline(container: Any, stream: Any, key: FileIdentity) -> _Timeline | None:
    """The stream's timeline, read from its packets without decoding.

    ``None`` when timestamps are missing or repeated, and so cannot name frames.
    """
    with _TIMELINES_LOCK:
        if key in _TIMELINES:
            _TIMELINES.move_to_end(key)
            return _TIMELINES[key]
    import av

    stamps: list[int] = []
    keys: list[int] = []
    usable = True
    try:
        for packet in container.demux(stream):
            if not packet.size:
                continue  # the flush packet
            if packet.pts is None:
                usable = False
                break
            stamps.append(int(packet.pts))
            if packet.is_keyframe:
                keys.append(int(packet.pts))
    except av.error.FFmpegError:
        usable = False  # a damaged file: the decode from the start reports it
    timeline = None
    if usable and stamps:
        pts = np.sort(np.asarray(stamps, dtype=np.int64))
        if not (np.diff(pts) > 0).all():
            usable = False
        else:
            keyframes = np.searchsorted(pts, np.asarray(keys, dtype=np.int64))
            timeline = _Timeline(pts, np.sort(keyframes))
    with _TIMELINES_LOCK:
        _TIMELINES[key] = timeline
        while len(_TIMELINES) > _TIMELINE_CACHE_SIZE:
            _TIMELINES.popitem(last=False)
    return timeline


def _decode_from_keyframe(
    container: Any, stream: Any, key: FileIdentity, wanted: list[int]
) -> dict[int, np.ndarray] | None:
    """Seek to the last keyframe at or before the first wanted frame and decode from there.

    ``None`` when seeking would not help (the first wanted frame is in the first group of
    pictures) or cannot be trusted (no usable timeline, a frame whose timestamp is unknown):
    the caller then decodes from the start.
    """
    timeline = _timeline(container, stream, key)
    if timeline is None or wanted[-1] >= len(timeline.pts):
        return None
    before = timeline.keyframes[timeline.keyframes <= wanted[0]]
    if not len(before) or before[-1] == 0:
        return None
    container.seek(int(timeline.pts[before[-1]]), stream=stream, backward=True, any_frame=False)
    wanted_set, last = set(wanted), wanted[-1]
    decoded: dict[int, np.ndarray] = {}
    for frame in container.decode(stream):
        if frame.pts is None:
            return None
        index = int(np.searchsorted(timeline.pts, frame.pts))
        if index >= len(timeline.pts) or timeline.pts[index] != frame.pts:
            return None  # a frame the packets did not announce
        if index in wanted_set:
            decoded[index] = frame.to_ndarray(format="rgb24")
        if index >= last:
            break
    return decoded


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


class CheckedFileReader:
    """Reads one checked video file through a runner; its header is already known.

    Every read reopens the file only if it is still the file that was checked (its
    :class:`~qwen3_vl_rag.media.files.FileIdentity`); other paths are read unchecked.
    """

    def __init__(
        self,
        runner: Any,
        timeout: float | None,
        path: Path,
        identity: FileIdentity,
        header: VideoHeader,
    ) -> None:
        self.runner, self.timeout = runner, timeout
        self.path, self.identity, self.header = path, identity, header

    def probe(self, path: Path, label: str) -> VideoHeader:
        """The known header for the checked file; see :func:`probe` for others."""
        if path == self.path:
            return self.header
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
            self.identity if path == self.path else None,
            label=label,
            stage="decode",
            timeout=self.timeout,
        )
        return frames
