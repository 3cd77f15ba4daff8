"""Video frames through PyAV: read a container's header, choose frames, decode them.

A leaf module (it imports only the errors and :mod:`qwen3_vl_rag.checked_files`), shared by the
engine and the media loaders without either importing the other. The two primitives,
:func:`probe` and :func:`read_frames`, are what the engine uses to sample a video's frames
exactly as the official pipeline does (:func:`sample_frames` decides which); they stream (only
the chosen frames are kept) and raise :class:`~qwen3_vl_rag.errors.VideoDecodeError`, never a
raw PyAV error. A :class:`FrameReader` decides where they run: :data:`IN_PROCESS_READER`, or a
worker process (see :mod:`qwen3_vl_rag.media.video`) that contains a hang or crash in FFmpeg.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from qwen3_vl_rag.checked_files import FileIdentity, OpenedFile, open_checked
from qwen3_vl_rag.errors import VideoDecodeError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "FPS_MIN_FRAMES",
    "FRAME_FACTOR",
    "IN_PROCESS_READER",
    "FrameReader",
    "InProcessReader",
    "VideoHeader",
    "probe",
    "read_frames",
    "sample_frames",
]

#: Frames are sampled in pairs (the model's temporal patch).
FRAME_FACTOR = 2
#: Fewest frames sampled from a video file (the official sampler's lower bound).
FPS_MIN_FRAMES = 4


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
    import numpy as np

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
    import numpy as np

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
    import numpy as np

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


#: The default frame reader: decodes in the calling process, without a worker.
IN_PROCESS_READER = InProcessReader()


# -- which frames ----------------------------------------------------------------------------------


def sample_frames(
    header: VideoHeader,
    *,
    fps: float,
    max_frames: int,
    start: float | None = None,
    end: float | None = None,
    label: str,
) -> list[int]:
    """The frames the model sees of a video file (or of its ``start``-``end`` seconds).

    ``fps`` frames per second, at least :data:`FPS_MIN_FRAMES`, at most ``max_frames``, an even
    count, spread evenly as the official sampler does (float32 ``linspace``, then rounded).

    Raises:
        VideoDecodeError: The video (or the clip) has fewer than two frames to sample.

    Example:
        >>> header = VideoHeader(frames=120, fps=30.0, width=64, height=64)  # 4 seconds
        >>> sample_frames(header, fps=1.0, max_frames=64, label="clip.mp4")
        [0, 40, 79, 119]
    """
    import torch

    first, last, total = _frame_range(header, start, end, label)
    limit = _floor_by(max_frames, FRAME_FACTOR)
    wanted = total / header.fps * fps
    count = min(min(max(wanted, _ceil_by(FPS_MIN_FRAMES, FRAME_FACTOR)), limit), total)
    count = _floor_by(count, FRAME_FACTOR)
    if not FRAME_FACTOR <= count <= total:
        raise VideoDecodeError(
            f"the video has {total} frame(s); at least {FRAME_FACTOR} are needed.", source=label
        )
    # float32 linspace then round, exactly as the official frame sampler
    indices: list[int] = torch.linspace(first, last, count).round().long().tolist()
    return indices


def _frame_range(
    header: VideoHeader, start: float | None, end: float | None, label: str
) -> tuple[int, int, int]:
    if start is None and end is None:
        return 0, header.frames - 1, header.frames
    duration = header.frames / header.fps
    first = 0
    if start is not None:
        first = math.ceil(max(0.0, min(start, duration)) * header.fps)
    last = header.frames - 1
    if end is not None:
        last = min(math.floor(max(0.0, min(end, duration)) * header.fps), header.frames - 1)
    if first >= last:
        raise VideoDecodeError(
            f"the clip {start}s-{end}s selects no frames of a {duration:.2f}s video.",
            source=label,
        )
    return first, last, last - first + 1


def _ceil_by(value: float, factor: int) -> int:
    return math.ceil(value / factor) * factor


def _floor_by(value: float, factor: int) -> int:
    return math.floor(value / factor) * factor
