"""The package's docstring examples run as tests (``pytest --doctest-modules``).

An example is written for a reader: it names the default Hub models and files such as
``report.pdf``. To run it as written, offline, every example runs

- in a fresh scratch folder holding the files the examples name (``report.pdf``, ``chart.png``,
  ``documents/``, …; see :data:`WORKSPACE_FILES`), and
- against a Hugging Face cache holding the project's tiny random-weight checkpoints under the
  default Hub ids, with ``HF_HUB_OFFLINE=1``: ``from_pretrained("Qwen/Qwen3-VL-Embedding-2B")``
  resolves from that cache exactly as it does for a user who has the model cached.

Examples therefore show calls and shapes, never scores: the weights are random.
This file is not part of the wheel (only ``integrations/qwen3_vl_rag`` is).
"""

from __future__ import annotations

import os

# Set before anything imports huggingface_hub, which reads them once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Hub ids that resolve, offline, to tiny random-weight checkpoints of the same kind.
HUB_CHECKPOINTS = {
    "Qwen/Qwen3-VL-Embedding-2B": "embedding",
    "Qwen/Qwen3-VL-Embedding-8B": "embedding",
    "Qwen/Qwen3-VL-Reranker-2B": "reranker",
    "Qwen/Qwen3-VL-Reranker-8B": "reranker",
}

#: Files every example finds in its working folder, by the corpus file they copy.
WORKSPACE_FILES = {
    "report.pdf": "corpus/annual-report.pdf",
    "annual-report.pdf": "corpus/annual-report.pdf",
    "reports/annual-report.pdf": "corpus/annual-report.pdf",
    "reports/billing-manual.pdf": "corpus/billing-manual.pdf",
    "chart.png": "artwork/chart.png",
    "page.png": "artwork/chart.png",
    "p1.png": "artwork/chart.png",
    "p7.png": "artwork/screenshot.png",
    "report/page-3.png": "artwork/chart.png",
    "screens/settings.png": "corpus/settings-screenshot.png",
    "screenshots/settings.png": "corpus/settings-screenshot.png",
    "screenshots/billing.png": "artwork/screenshot.png",
    "photo.png": "corpus/sunset.png",
    "clip.mp4": "corpus/square.mp4",
    "meeting.mp4": "corpus/square.mp4",
    "lobby-camera.mp4": "corpus/square.mp4",
}
#: Folders copied whole.
WORKSPACE_FOLDERS = {"documents": "corpus"}

_COMMIT = "0" * 40  # the snapshot name; any 40-hex string is a valid revision in the cache


@pytest.fixture(scope="session")
def doctest_hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face cache whose default Qwen3-VL ids hold tiny random-weight checkpoints."""
    from qwen3_vl_rag.testing import build_tiny_checkpoint

    cache = tmp_path_factory.mktemp("hub-cache")
    built: dict[str, Path] = {}
    for repo_id, kind in HUB_CHECKPOINTS.items():
        repo = cache / f"models--{repo_id.replace('/', '--')}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(_COMMIT)
        snapshot = repo / "snapshots" / _COMMIT
        if kind in built:
            shutil.copytree(built[kind], snapshot)
        else:
            built[kind] = build_tiny_checkpoint(snapshot, kind=kind)  # type: ignore[arg-type]
    return cache


@pytest.fixture(scope="session")
def doctest_workspace_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the examples name, generated once (see :data:`WORKSPACE_FILES`)."""
    from qwen3_vl_rag.demo import make_corpus

    source = tmp_path_factory.mktemp("doctest-source")
    make_corpus(source / "corpus")
    template = tmp_path_factory.mktemp("doctest-template")
    for name, origin in WORKSPACE_FILES.items():
        (template / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / origin, template / name)
    for name, origin in WORKSPACE_FOLDERS.items():
        shutil.copytree(source / origin, template / name)
    return template


@pytest.fixture(autouse=True)
def _doctest_environment(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[None]:
    """Run each example in a fresh copy of the workspace, against the tiny-checkpoint cache."""
    if not isinstance(request.node, pytest.DoctestItem):
        yield
        return
    import huggingface_hub.constants

    cache = request.getfixturevalue("doctest_hub_cache")
    template = request.getfixturevalue("doctest_workspace_template")
    workspace = tmp_path / "workspace"
    shutil.copytree(template, workspace)
    monkeypatch.chdir(workspace)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    yield
