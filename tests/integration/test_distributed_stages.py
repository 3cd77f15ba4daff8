"""The stages of a Ray run, called in this process: what workers compute, and how they fail.

Ray only moves these batches around (tests/integration/test_ray_ingest.py runs them on a real
cluster); here each stage is checked on its own, quickly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from qwen3_vl_rag import Qwen3VLEmbedder, SourceChangedError
from qwen3_vl_rag.checked_files import file_sha256
from qwen3_vl_rag.distributed import WorkerEngine
from qwen3_vl_rag.distributed._cluster import _row
from qwen3_vl_rag.distributed._reload import reload_items
from qwen3_vl_rag.distributed._stages import EmbedActor, render_batch
from qwen3_vl_rag.index._embedding import PendingItem
from qwen3_vl_rag.index._ids import item_locator
from qwen3_vl_rag.media import load
from qwen3_vl_rag.media.loaders import MediaOptions
from tests import media_files
from tests.conftest import write_mp4


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    pdf = media_files.report_pdf(tmp_path / "report.pdf", pages=3)
    image = tmp_path / "photo.png"
    Image.new("RGB", (70, 50), (120, 40, 200)).save(image)
    video = write_mp4(tmp_path / "clip.mp4")
    return {"pdf": pdf, "image": image, "video": video}


def pending(path: Path) -> list[PendingItem]:
    digest = file_sha256(path)
    return [
        PendingItem(f"{path.name}-{i}", item, str(path), path, digest)
        for i, item in enumerate(load(path))
    ]


def batch_of(items: list[PendingItem]) -> dict[str, Any]:
    rows = [_row(p) for p in items]
    return {name: np.array([row[name] for row in rows], dtype=object) for name in rows[0]}


def test_a_worker_reads_the_items_asked_for_and_refuses_a_changed_file(
    files: dict[str, Path],
) -> None:
    pdf = files["pdf"]
    digest = file_sha256(pdf)
    found = reload_items(
        pdf,
        label="report.pdf",
        digest=digest,
        locators={"page:2", "page:0"},
        options=MediaOptions(),
    )
    assert sorted(found) == ["page:0", "page:2"]
    assert [item_locator(found[k]) for k in sorted(found)] == ["page:0", "page:2"]
    with pytest.raises(SourceChangedError, match="changed after it was hashed") as info:
        reload_items(
            pdf, label="report.pdf", digest="0" * 64, locators={"page:0"}, options=MediaOptions()
        )
    assert info.value.stage == "open"


def test_rendered_rows_embed_to_the_vectors_of_the_items_themselves(
    files: dict[str, Path], embedder: Qwen3VLEmbedder
) -> None:
    items = [p for path in files.values() for p in pending(path)]
    batch = batch_of(items)
    rendered = render_batch(batch, MediaOptions())
    assert list(rendered["error"]) == [""] * len(items)
    kinds = [p.item.kind for p in items]
    drawn = [i for i, kind in enumerate(kinds) if kind in ("page", "image")]
    assert all(
        len(rendered["pixels"][i]) == 3 * rendered["width"][i] * rendered["height"][i]
        for i in drawn
    )
    assert all(rendered["pixels"][i] == b"" for i, kind in enumerate(kinds) if kind == "video")

    actor = EmbedActor(WorkerEngine.like(embedder), MediaOptions(), 64, None)
    out = actor(rendered)
    assert list(out["error"]) == [""] * len(items) and set(out["fatal"]) == {""}
    assert set(out["dtype"]) == {"float32"}
    expected = embedder.embed_documents([p.item for p in items], dim=64)
    np.testing.assert_allclose(out["vector"], expected, rtol=0, atol=1e-6)


def test_a_file_changed_after_hashing_fails_its_rows_with_the_stage(
    files: dict[str, Path], embedder: Qwen3VLEmbedder
) -> None:
    items = pending(files["image"]) + pending(files["video"]) + pending(files["pdf"])[:1]
    Image.new("RGB", (70, 50), (0, 0, 0)).save(files["image"])  # now other bytes
    write_mp4(files["video"], frames=8)
    rendered = render_batch(batch_of(items), MediaOptions())
    assert list(rendered["error"]) == ["SourceChangedError", "", ""]  # videos: in the actor
    out = EmbedActor(WorkerEngine.like(embedder), MediaOptions(), 64, None)(rendered)
    assert list(out["error"]) == ["SourceChangedError", "SourceChangedError", ""]
    assert list(out["error_stage"]) == ["open", "open", ""]
    assert not out["vector"][0].any() and out["vector"][2].any()


def test_an_actor_that_cannot_load_its_model_marks_every_row_fatal(
    files: dict[str, Path], tmp_path: Path
) -> None:
    actor = EmbedActor(WorkerEngine(str(tmp_path / "missing")), MediaOptions(), 64, None)
    out = actor(render_batch(batch_of(pending(files["image"])), MediaOptions()))
    assert out["fatal"][0] and "ModelLoadError" in out["fatal"][0]


def test_the_recipe_of_an_embedder_loads_the_same_model_and_settings(
    embedder: Qwen3VLEmbedder, tiny_embedding_path: Path
) -> None:
    engine = WorkerEngine.like(embedder)
    assert (
        engine.source == "pretrained"
        and Path(str(engine.model)).resolve() == tiny_embedding_path.resolve()
    )
    assert engine.options["dtype"] == "float32"
    assert engine.options["max_pixels"] == embedder.vision.max_pixels
    assert "device" not in engine.options  # each worker picks its own
    loaded = engine.load(device="cpu")
    assert (
        loaded.vision == embedder.vision
        and loaded.document_instruction == embedder.document_instruction
    )


class _BuggyRunner:
    """A decoding runner whose render step fails the way a bug does (not a typed input error)."""

    def run(
        self, step: Any, *args: Any, label: str, stage: str, timeout: float | None = None
    ) -> Any:
        if stage == "render":
            raise KeyError("an unexpected decoder state")
        return step(*args)


def test_an_unexpected_decoder_error_fails_the_item_not_the_task(files: dict[str, Path]) -> None:
    rows = batch_of(pending(files["pdf"])[:2])
    rendered = render_batch(rows, MediaOptions(), decoding=lambda options: _BuggyRunner())
    assert list(rendered["error"]) == ["KeyError", "KeyError"]
    assert list(rendered["error_stage"]) == ["render", "render"]
    assert "an unexpected decoder state" in rendered["error_reason"][0]
