"""Video readers that decode through a :class:`~qwen3_vl_rag.media.isolation.DecodeRunner`.

The PyAV primitives themselves (:func:`~qwen3_vl_rag.video_frames.probe`,
:func:`~qwen3_vl_rag.video_frames.read_frames`) live in the leaf
:mod:`qwen3_vl_rag.video_frames`, which the engine uses too; the readers here send them to a
runner, so a worker process contains a hang or crash in FFmpeg.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from qwen3_vl_rag.checked_files import FileIdentity
from qwen3_vl_rag.media.isolation import DecodeRunner
from qwen3_vl_rag.video_frames import VideoHeader, probe, read_frames

if TYPE_CHECKING:
    import numpy as np

__all__ = ["CheckedFileReader", "IsolatedReader"]


class IsolatedReader:
    """Reads video headers and frames through a runner (a worker pool contains FFmpeg)."""

    def __init__(self, runner: DecodeRunner, timeout: float | None = None) -> None:
        self.runner = runner
        self.timeout = timeout

    def probe(self, path: Path, label: str) -> VideoHeader:
        """See :func:`~qwen3_vl_rag.video_frames.probe`; runs in the runner."""
        return self.runner.run(probe, path, label, label=label, stage="probe", timeout=self.timeout)

    def read(self, path: Path, indices: Sequence[int], label: str) -> np.ndarray:
        """See :func:`~qwen3_vl_rag.video_frames.read_frames`; runs in the runner."""
        return self._read(path, indices, label, None)

    def _read(
        self, path: Path, indices: Sequence[int], label: str, identity: FileIdentity | None
    ) -> np.ndarray:
        return self.runner.run(
            read_frames,
            path,
            list(indices),
            label,
            identity,
            label=label,
            stage="decode",
            timeout=self.timeout,
        )


class CheckedFileReader(IsolatedReader):
    """Reads one checked video file through a runner; its header is already known.

    Every read reopens the file only if it is still the file that was checked (its
    :class:`~qwen3_vl_rag.checked_files.FileIdentity`); other paths are read unchecked.
    """

    def __init__(
        self,
        runner: DecodeRunner,
        timeout: float | None,
        path: Path,
        identity: FileIdentity,
        header: VideoHeader,
    ) -> None:
        super().__init__(runner, timeout)
        self.path, self.identity, self.header = path, identity, header

    def probe(self, path: Path, label: str) -> VideoHeader:
        """The known header for the checked file; see :class:`IsolatedReader` for others."""
        return self.header if path == self.path else super().probe(path, label)

    def read(self, path: Path, indices: Sequence[int], label: str) -> np.ndarray:
        """Frames of the checked file (refusing any other file found at its path)."""
        return self._read(path, indices, label, self.identity if path == self.path else None)
