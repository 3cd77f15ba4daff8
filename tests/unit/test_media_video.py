"""Videos: sampling like the official defaults, clips with times, broken containers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qwen3_vl_rag import ConfigurationError, InputTooLargeError, VideoDecodeError
from qwen3_vl_rag import video_frames as media_video
from qwen3_vl_rag.media import MediaBudget, WorkerPool, load_video
from qwen3_vl_rag.video_frames import probe, read_frames
from tests.conftest import write_mp4


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 15 s at 10 fps; frame i has red level min(255, 10 * i)
    return write_mp4(
        tmp_path_factory.mktemp("video") / "lobby.mp4", frames=150, fps=10, width=160, height=120
    )


def test_whole_video_is_one_item_sampled_at_one_fps(clip: Path) -> None:
    document = load_video(clip)
    (item,) = list(document)
    assert item.kind == "video" and item.video is not None
    assert (item.video.fps, item.video.max_frames) == (1.0, 64)
    assert dict(item.metadata) == {
        "source": str(clip),
        "file_type": "mp4",
        "duration": 15.0,
        "native_fps": 10.0,
        "frame_count": 150,
        "video_width": 160,
        "video_height": 120,
        "sample_fps": 1.0,
        "sampled_frames": 14,
    }
    # 15 s at 1 fps -> 15 frames, rounded down to an even 14, spread over the whole video
    assert item.frame_times[0] == 0.0 and item.frame_times[-1] == 14.9
    assert len(item.frame_times) == 14


@pytest.mark.parametrize("seconds", [0, -5.0, float("nan")])
def test_a_clip_length_that_is_not_positive_is_a_configuration_error(
    clip: Path, seconds: float
) -> None:
    with pytest.raises(ConfigurationError, match="segment_seconds must be positive"):
        load_video(clip, segment_seconds=seconds)


def test_max_frames_bounds_the_sampling(clip: Path) -> None:
    (item,) = list(load_video(clip, fps=10.0, max_frames=8))
    assert len(item.frame_times) == 8
    (capped,) = list(load_video(clip, fps=10.0, budget=MediaBudget(max_frames=6)))
    assert len(capped.frame_times) == 6  # the budget wins over a bigger request


def test_segments_cut_the_video_into_timed_clips(clip: Path) -> None:
    clips = list(load_video(clip, segment_seconds=4))
    assert [c.kind for c in clips] == ["clip"] * 4
    assert [(c.metadata["start_seconds"], c.metadata["end_seconds"]) for c in clips] == [
        (0.0, 4.0),
        (4.0, 8.0),
        (8.0, 12.0),
        (12.0, 15.0),
    ]
    assert [c.metadata["clip_index"] for c in clips] == [0, 1, 2, 3]
    assert all(c.metadata["total_clips"] == 4 for c in clips)
    assert [c.locator for c in clips] == ["0:00-0:04", "0:04-0:08", "0:08-0:12", "0:12-0:15"]
    for item in clips:
        start, end = item.metadata["start_seconds"], item.metadata["end_seconds"]
        assert all(start <= t <= end for t in item.frame_times)
        assert len(item.frame_times) >= 4


def test_a_short_tail_joins_the_last_clip(clip: Path) -> None:
    clips = list(load_video(clip, segment_seconds=7.3))  # 0-7.3, 7.3-14.6, and 0.4 s left
    assert [(c.metadata["start_seconds"], c.metadata["end_seconds"]) for c in clips] == [
        (0.0, 7.3),
        (7.3, 15.0),
    ]


def test_clip_budget(clip: Path) -> None:
    document = load_video(clip, segment_seconds=1, budget=MediaBudget(max_clips=3))
    assert len(list(document)) == 3
    assert document.warnings == ["only the first 3 of 15 clips were kept (max_clips)"]


def test_sampled_frames_are_the_right_frames(clip: Path) -> None:
    header = probe(clip)
    assert (header.frames, header.fps, header.width, header.height) == (150, 10.0, 160, 120)
    frames = read_frames(clip, [0, 5, 20])
    assert frames.shape == (3, 120, 160, 3)
    np.testing.assert_allclose(frames[:, 60, 80, 0], [0, 50, 200], atol=6)


def _gop_video(path: Path, *, pts_ms: list[int] | None = None) -> Path:
    """120 distinct frames of H.264 with B-frames and a keyframe every 8 frames (10 fps, or
    the given millisecond timestamps for a variable frame rate)."""
    from fractions import Fraction

    import av

    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"g": "8", "keyint_min": "8", "bf": "3", "sc_threshold": "0"}
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(120):
            array = np.roll(base, 2 * i, axis=1)
            array[:4, :, 1] = 2 * i
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _from_start(path: Path, indices: list[int]) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        decoded = media_video._decode_from_start(container, container.streams.video[0], indices)
    return np.stack([decoded[i] for i in indices])


@pytest.mark.parametrize("variable_rate", [False, True], ids=["constant", "variable-rate"])
def test_clips_decode_from_the_nearest_keyframe_with_the_same_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable_rate: bool
) -> None:
    steps = np.random.default_rng(2).integers(40, 160, 120) if variable_rate else None
    pts = np.concatenate([[0], np.cumsum(steps)[:-1]]).tolist() if steps is not None else None
    video = _gop_video(tmp_path / "gop.mp4", pts_ms=pts)
    cases = [[50, 53, 57, 61], [8, 9, 10], [97, 100, 119], [60, 40, 100]]  # unsorted too
    expected = [_from_start(video, case) for case in cases]
    # past the first keyframe, nothing is decoded from the start
    monkeypatch.setattr(media_video, "_decode_from_start", lambda *a: pytest.fail("from start"))
    media_video._TIMELINES.clear()
    for case, frames in zip(cases, expected, strict=True):
        np.testing.assert_array_equal(read_frames(video, case), frames)
    # the frames the engine plans for each clip of the video, too
    monkeypatch.undo()
    from qwen3_vl_rag.engine._vision import VisionSettings, plan_video

    clips = list(load_video(video, segment_seconds=3))
    assert len(clips) >= 3
    for clip in clips:
        assert clip.video is not None
        indices = list(plan_video(clip.video, VisionSettings()).frame_indices)
        np.testing.assert_array_equal(read_frames(video, indices), _from_start(video, indices))


def test_frames_without_usable_timestamps_decode_from_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = _gop_video(tmp_path / "gop.mp4")
    expected = _from_start(video, [50, 60])
    monkeypatch.setattr(media_video, "_timeline", lambda *a: None)
    calls = []
    original = media_video._decode_from_start
    monkeypatch.setattr(
        media_video, "_decode_from_start", lambda *a: calls.append(1) or original(*a)
    )
    np.testing.assert_array_equal(read_frames(video, [50, 60]), expected)
    assert calls == [1]


def test_corrupt_zero_frame_and_audio_only_containers(tmp_path: Path, clip: Path) -> None:
    import av

    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(VideoDecodeError, match="could not be read"):
        load_video(corrupt)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[:2000])
    with pytest.raises(VideoDecodeError):
        load_video(truncated)
    header_only = tmp_path / "empty.mp4"
    with av.open(str(header_only), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        container.start_encoding()
    with pytest.raises(VideoDecodeError, match="no video stream"):
        load_video(header_only)
    audio = tmp_path / "audio.mp4"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(VideoDecodeError, match="no video stream"):
        load_video(audio)


def test_byte_budget(clip: Path) -> None:
    with pytest.raises(InputTooLargeError):
        load_video(clip, budget=MediaBudget(max_bytes=1000))


def test_the_same_items_through_a_worker_process(clip: Path) -> None:
    local = list(load_video(clip, segment_seconds=5))
    with WorkerPool(workers=1, timeout=30) as pool:
        isolated = list(load_video(clip, segment_seconds=5, runner=pool))
        assert [dict(i.metadata) for i in isolated] == [dict(i.metadata) for i in local]
        assert [i.frame_times for i in isolated] == [i.frame_times for i in local]
        reader = isolated[0].video.reader  # type: ignore[union-attr]
        frames = reader.read(clip, [0, 1], "lobby.mp4")  # type: ignore[union-attr]
        np.testing.assert_array_equal(frames, read_frames(clip, [0, 1]))
