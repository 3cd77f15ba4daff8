"""The compute dtype in the index and on the command line: recorded, shown, and a mismatch said."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qwen3_vl_rag import MultimodalIndex, PrecisionMismatchWarning, Qwen3VLEmbedder
from qwen3_vl_rag.cli.main import main
from qwen3_vl_rag.engine import _loading
from qwen3_vl_rag.engine._loading import DTYPE_VARIABLE
from qwen3_vl_rag.index._precision import COMPUTE_DTYPES

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 40)}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, colour in COLOURS.items():
        Image.new("RGB", (160, 120), colour).save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def bf16_embedder(tiny_embedding_path: Path) -> Qwen3VLEmbedder:
    return Qwen3VLEmbedder.from_pretrained(tiny_embedding_path, device="cpu", dtype="bfloat16")


def test_the_index_records_the_dtype_and_says_when_a_query_differs(
    tmp_path: Path, corpus: Path, embedder: Qwen3VLEmbedder, bf16_embedder: Qwen3VLEmbedder
) -> None:
    directory = tmp_path / "index"
    assert embedder.dtype is not None and str(embedder.dtype) == "torch.float32"
    with MultimodalIndex(directory, embedder) as index:
        index.index([corpus / "red.png", corpus / "blue.png"])
        assert index.status().compute_dtypes == ("float32",)
        with warnings.catch_warnings():
            warnings.simplefilter("error", PrecisionMismatchWarning)
            same = index.search("a red picture", rerank=False, top_n=2)
        assert index.precision_mismatch() is None

    with MultimodalIndex(directory, bf16_embedder, mode="read") as index:
        message = index.precision_mismatch()
        assert message is not None
        assert "computed in float32 and this query in bfloat16" in message
        assert "dtype='float32'" in message and "--dtype float32" in message
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            other = index.search("a red picture", rerank=False, top_n=2)
            index.search("a blue picture", rerank=False, top_n=2)
        said = [w for w in caught if issubclass(w.category, PrecisionMismatchWarning)]
        assert len(said) == 1  # once per opened index, not per query
        assert said[0].filename == __file__  # points at the caller's search
    # the search still works, on the same items, with scores a bf16 query moves a little
    assert [hit.id for hit in other] == [hit.id for hit in same]
    assert np.allclose([h.score for h in other], [h.score for h in same], atol=0.02)

    # more files in bfloat16 join the same index (same ids: the dtype is not in the signature)
    with MultimodalIndex(directory, bf16_embedder) as index:
        report = index.index([corpus])
        assert (report.counts()["indexed"], report.counts()["unchanged"]) == (1, 2)
        assert index.status().compute_dtypes == ("bfloat16", "float32")
        assert index.precision_mismatch() is None  # some vectors are bf16: nothing to say
        assert index.precision_mismatch(bf16_embedder) is None


def test_an_index_made_before_dtypes_were_recorded_says_nothing(
    tmp_path: Path,
    corpus: Path,
    embedder: Qwen3VLEmbedder,
    bf16_embedder: Qwen3VLEmbedder,
    capsys: pytest.CaptureFixture[str],
) -> None:
    directory = tmp_path / "index"
    with MultimodalIndex(directory, embedder) as index:
        index.index([corpus / "red.png"])
        index.manifest.set_meta({COMPUTE_DTYPES: None})  # as indexes made before the record are
        assert index.status().compute_dtypes == ()
    with MultimodalIndex(directory, bf16_embedder, mode="read") as index:
        assert index.precision_mismatch() is None
    assert main(["status", "--index", str(directory)]) == 0
    assert "computed:  not recorded (an index made before dtypes were)" in capsys.readouterr().out


def test_the_command_line_shows_the_dtype_and_the_mismatch(
    tmp_path: Path,
    corpus: Path,
    tiny_embedding_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    index = tmp_path / "index"
    model = ["--model", str(tiny_embedding_path), "--device", "cpu"]
    assert main(["index", str(corpus), "--index", str(index), *model, "--quiet"]) == 0
    capsys.readouterr()

    assert main(["status", "--index", str(index)]) == 0
    assert "computed:  float32\n" in capsys.readouterr().out
    assert main(["status", "--index", str(index), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["compute_dtypes"] == ["float32"]

    search = ["search", "red", "--index", str(index), "--no-rerank", "--top-n", "1"]
    assert main(search) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == "query embedded in float32 on cpu"
    assert "computed in" not in captured.err

    assert main([*search, "--dtype", "bfloat16"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1] == "query embedded in bfloat16 on cpu"
    notes = [line for line in captured.err.splitlines() if "computed in" in line]
    assert len(notes) == 1 and notes[0].startswith("note: the index's vectors were computed in")
    assert "computed in float32 and this query in bfloat16" in notes[0]

    assert main([*search, "--dtype", "bfloat16", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "embedded in" not in captured.out and "note:" not in captured.err


def test_auto_on_a_cpu_with_bf16_in_hardware_computes_in_bfloat16(
    tmp_path: Path,
    corpus: Path,
    tiny_embedding_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What a user on an AMX machine gets, whatever this machine has."""
    monkeypatch.delenv(DTYPE_VARIABLE)
    monkeypatch.setattr(_loading, "bf16_matmul_in_hardware", lambda device: True)
    embedder = Qwen3VLEmbedder.from_pretrained(tiny_embedding_path, device="cpu")
    assert "dtype=torch.bfloat16" in repr(embedder)
    index = tmp_path / "index"
    model = ["--model", str(tiny_embedding_path), "--device", "cpu", "--quiet"]
    assert main(["index", str(corpus), "--index", str(index), *model]) == 0
    assert main(["search", "red", "--index", str(index), "--no-rerank", "--top-n", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "query embedded in bfloat16 on cpu"
    with MultimodalIndex(index, mode="read") as built:
        assert built.compute_dtypes() == ("bfloat16",)
    monkeypatch.setenv(DTYPE_VARIABLE, "float32")  # the parity mode, without touching code
    assert Qwen3VLEmbedder.from_pretrained(tiny_embedding_path, device="cpu").dtype is not None
    assert str(Qwen3VLEmbedder.from_pretrained(tiny_embedding_path).dtype) == "torch.float32"
