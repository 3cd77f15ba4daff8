"""Videos as items: the whole video, or clips of a few seconds each (segments mode).

Segments are how a long recording becomes searchable moment by moment: with
``segment_seconds=10`` every 10-second stretch is its own item, with its start and end time, so a
query such as "two people at the ATM" lands on the minute it happens. Frames are sampled the
official way (``fps`` per second, at most ``max_frames`` per item), and each item lists the
seconds of the frames the model sees.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from qwen3_vl_rag.checked_files import FileIdentity, display_path, open_checked
from qwen3_vl_rag.errors import ConfigurationError, VideoDecodeError
from qwen3_vl_rag.inputs import Video
from qwen3_vl_rag.media.budget import MediaBudget
from qwen3_vl_rag.media.isolation import IN_PROCESS_RUNNER, DecodeRunner
from qwen3_vl_rag.media.items import MediaItem, MetadataValue
from qwen3_vl_rag.media.sniff import HEAD_BYTES, sniff_bytes
from qwen3_vl_rag.media.video import CheckedFileReader
from qwen3_vl_rag.video_frames import FrameReader, VideoHeader, probe, sample_frames

__all__ = ["VideoDocument", "load_video"]

DEFAULT_FPS = 1.0  # the official sampling rate


@dataclass
class VideoDocument:
    """A video file as items: one for the whole video, or one per clip.

    Iterate it for the items; ``warnings`` notes clips left out by the budget.

    Example:
        >>> from qwen3_vl_rag.media import load_video
        >>> video = load_video("clip.mp4", segment_seconds=2)
        >>> video.header.duration, video.clips
        (4.0, [(0.0, 2.0), (2.0, 4.0)])
        >>> [(clip.kind, clip.locator) for clip in video]
        [('clip', '0:00-0:02'), ('clip', '0:02-0:04')]
    """

    path: Path
    source: str
    header: VideoHeader
    fps: float
    max_frames: int
    clips: list[tuple[float, float]]
    reader: FrameReader
    file_type: str
    warnings: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[MediaItem]:
        whole = len(self.clips) == 1 and self.clips[0] == (0.0, self.header.duration)
        for index, (start, end) in enumerate(self.clips):
            if whole:
                video = Video(
                    self.path, fps=self.fps, max_frames=self.max_frames, reader=self.reader
                )
            else:
                video = Video(
                    self.path,
                    fps=self.fps,
                    max_frames=self.max_frames,
                    start=start,
                    end=end,
                    reader=self.reader,
                )
            times = self._frame_times(video)
            metadata: dict[str, MetadataValue] = {
                "source": self.source,
                "file_type": self.file_type,
                "duration": round(self.header.duration, 3),
                "native_fps": round(self.header.fps, 3),
                "frame_count": self.header.frames,
                "video_width": self.header.width,
                "video_height": self.header.height,
                "sample_fps": self.fps,
                "sampled_frames": len(times),
            }
            if not whole:
                metadata.update(
                    {
                        "clip_index": index,
                        "total_clips": len(self.clips),
                        "start_seconds": round(start, 3),
                        "end_seconds": round(end, 3),
                    }
                )
            yield MediaItem(
                "video" if whole else "clip", self.source, metadata, video=video, frame_times=times
            )

    def __len__(self) -> int:
        return len(self.clips)

    def _frame_times(self, video: Video) -> tuple[float, ...]:
        """Seconds of the frames the engine will sample (it uses the same sampler)."""
        indices = sample_frames(
            self.header,
            fps=self.fps,
            max_frames=self.max_frames,
            start=video.start,
            end=video.end,
            label=self.source,
        )
        return tuple(round(index / self.header.fps, 3) for index in indices)


def _segments(
    duration: float, frame_seconds: float, length: float, limit: int
) -> tuple[list[tuple[float, float]], int]:
    """The first ``limit`` consecutive clips of ``length`` seconds, and how many there are.

    A tail too short to sample joins the last clip. Only the clips kept are built: a header
    that claims billions of frames costs nothing more than an honest one.
    """
    count = max(1, math.ceil(duration / length))
    too_short = max(0.5, 4 * frame_seconds)  # fewer than 4 frames cannot be sampled properly
    if count > 1 and duration - (count - 1) * length < too_short:
        count -= 1  # the short tail joins the clip before it
    kept = min(count, limit)
    clips = [(i * length, min((i + 1) * length, duration)) for i in range(kept)]
    if kept == count:
        clips[-1] = (clips[-1][0], duration)
    return clips, count


def load_video(
    path: str | Path,
    *,
    fps: float | None = None,
    max_frames: int | None = None,
    segment_seconds: float | None = None,
    budget: MediaBudget | None = None,
    runner: DecodeRunner | None = None,
    identity: FileIdentity | None = None,
) -> VideoDocument:
    """A video file as one item, or as clips of ``segment_seconds`` each.

    Args:
        path: MP4, MOV, WebM, MKV or AVI (any container FFmpeg reads).
        fps: Frames sampled per second (default 1.0, the official value).
        max_frames: Frames per item (default ``budget.max_frames``, 64 as officially).
        segment_seconds: Cut the video into clips this long (default: one item for it all).
        budget: Frame, clip, byte and time limits (default: :class:`MediaBudget`).
        runner: Where FFmpeg runs; pass a :class:`~qwen3_vl_rag.media.isolation.WorkerPool`
            for untrusted files (default: this process).
        identity: The file as a scan checked it (see
            :func:`~qwen3_vl_rag.checked_files.open_checked`); default: checked here. Every
            later read of the file refuses anything but that file.

    Raises:
        VideoDecodeError: A corrupt container, no video stream, or no frames.
        InputTooLargeError: Over ``budget.max_bytes``.

    Example:
        >>> for clip in load_video("lobby-camera.mp4", segment_seconds=1):
        ...     print(clip.metadata["start_seconds"], clip.frame_times)
        0.0 (0.0, 0.375, 0.625, 1.0)
        1.0 (1.0, 1.375, 1.625, 2.0)
        2.0 (2.0, 2.375, 2.625, 3.0)
        3.0 (3.0, 3.25, 3.625, 3.875)
    """
    budget = budget or MediaBudget()
    runner = runner or IN_PROCESS_RUNNER
    path = Path(path)
    label = display_path(path)
    with open_checked(
        path, max_bytes=budget.max_bytes, label=label, error=VideoDecodeError, expected=identity
    ) as opened:
        identity, head = opened.identity, opened.head(HEAD_BYTES)
    header: VideoHeader = runner.run(
        probe, path, label, identity, label=label, stage="probe", timeout=budget.timeout
    )
    fps = fps or DEFAULT_FPS
    frames = min(max_frames or budget.max_frames, budget.max_frames)
    warnings = []
    if segment_seconds is None:
        clips = [(0.0, header.duration)]
    else:
        if not segment_seconds > 0:
            msg = f"segment_seconds must be positive, got {segment_seconds!r}."
            raise ConfigurationError(msg)
        clips, count = _segments(
            header.duration, 1.0 / header.fps, float(segment_seconds), budget.max_clips
        )
        if count > len(clips):
            warnings.append(f"only the first {len(clips)} of {count} clips were kept (max_clips)")
    reader: FrameReader = CheckedFileReader(runner, budget.timeout, path, identity, header)
    return VideoDocument(
        path=path,
        source=label,
        header=header,
        fps=fps,
        max_frames=frames,
        clips=clips,
        reader=reader,
        file_type=sniff_bytes(head).format or "video",
        warnings=warnings,
    )
