"""Shared fixtures: offline guards, tiny checkpoints built once per session, generated media."""

from __future__ import annotations

import os

# Never reach for the Hub, even by accident; sockets are also blocked by pytest-socket.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every number in the suite is checked in the parity mode (the official code's float32), on any
# CPU: "auto" would be bfloat16 on CPUs with AMX. tests/integration/test_precision.py checks
# bfloat16 and the hardware's choice on their own.
os.environ["QWEN3_VL_RAG_DTYPE"] = "float32"

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from qwen3_vl_rag import Qwen3VLEmbedder, Qwen3VLReranker
    from tests.vllm_servers import Server

TESTS = Path(__file__).parent

# With --doctest-modules every .py file is a module to search for examples; conftest files hold
# none, and two of them (here and integrations/) would clash as the top-level module "conftest".
collect_ignore = ["conftest.py"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tag tests by tier from their folder, so ``-m unit`` and friends work."""
    for item in items:
        if isinstance(item, pytest.DoctestItem):
            item.add_marker(pytest.mark.doctest)
            continue
        path = Path(item.fspath)
        if not path.is_relative_to(TESTS):
            continue
        tier = path.relative_to(TESTS).parts[0]
        if tier in ("unit", "integration", "parity"):
            item.add_marker(getattr(pytest.mark, tier))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the vLLM servers and the Ray cluster now if tests need them (they boot meanwhile)."""
    if any(item.get_closest_marker("vllm") for item in session.items):
        from tests.vllm_servers import FLEET

        FLEET.launch()
    if any(item.get_closest_marker("ray") for item in session.items):
        from tests.ray_cluster import CLUSTER

        CLUSTER.launch()


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests import ray_cluster, vllm_servers

    vllm_servers.FLEET.stop()
    ray_cluster.CLUSTER.stop()


@pytest.fixture(scope="session")
def ray_address() -> str:
    """The address of the session's local Ray cluster (two CPUs, token authentication)."""
    from tests.ray_cluster import CLUSTER

    return CLUSTER.get()


@pytest.fixture(scope="session")
def vllm_embedding() -> Server:
    """A vLLM server running the tiny ``vllm``-preset embedding checkpoint (as ``serve`` does)."""
    from tests.vllm_servers import FLEET

    return FLEET.get("embedding")


@pytest.fixture(scope="session")
def vllm_reranker() -> Server:
    """A vLLM server running the tiny ``vllm``-preset reranker with our judge template."""
    from tests.vllm_servers import FLEET

    return FLEET.get("reranker")


@pytest.fixture(scope="session")
def vllm_reranker_without_template() -> Server:
    """The same reranker started without ``--chat-template``: misconfigured on purpose."""
    from tests.vllm_servers import FLEET

    return FLEET.get("reranker-without-template")


@pytest.fixture(scope="session")
def tiny_embedding_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from qwen3_vl_rag.testing import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "embedding", kind="embedding")


@pytest.fixture(scope="session")
def tiny_reranker_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from qwen3_vl_rag.testing import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "reranker", kind="reranker")


def _trained(kind: str, embedder: Path | None = None) -> Path:
    """The tiny model trained on the synthetic corpus, built once per recipe on this machine."""
    import tempfile

    from qwen3_vl_rag.testing.trained import build_trained_checkpoint, trained_recipe_digest

    digest = trained_recipe_digest(kind)  # type: ignore[arg-type]
    root = Path(tempfile.gettempdir()) / "qwen3-vl-rag-tests" / f"trained-{kind}-{digest}"
    return build_trained_checkpoint(root, kind=kind, embedder=embedder)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def trained_embedding_path() -> Path:
    """The tiny embedder trained on synthetic pages (qwen3_vl_rag.testing.trained)."""
    return _trained("embedding")


@pytest.fixture(scope="session")
def trained_reranker_path(trained_embedding_path: Path) -> Path:
    """The tiny reranker trained on synthetic pages, from the trained embedder's weights."""
    return _trained("reranker", trained_embedding_path)


@pytest.fixture(scope="session")
def embedder(tiny_embedding_path: Path) -> Qwen3VLEmbedder:
    from qwen3_vl_rag import Qwen3VLEmbedder

    # float32: the parity mode, pinned (the parity tests use these fixtures)
    return Qwen3VLEmbedder.from_pretrained(tiny_embedding_path, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def reranker(tiny_reranker_path: Path) -> Qwen3VLReranker:
    from qwen3_vl_rag import Qwen3VLReranker

    return Qwen3VLReranker.from_pretrained(tiny_reranker_path, device="cpu", dtype="float32")


@pytest.fixture
def rng() -> np.random.RandomState:
    return np.random.RandomState(1234)


def write_mp4(
    path: Path, frames: int = 12, fps: int = 6, width: int = 96, height: int = 64
) -> Path:
    """A small H.264 clip whose frame ``i`` has red level ``10 * i``."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            array = np.zeros((height, width, 3), np.uint8)
            array[..., 0] = min(255, 10 * i)
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def python_stdout(code: str) -> str:
    """What ``python -c code`` prints, in a fresh interpreter of this environment."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout
