"""``model_fingerprint``: what a checkpoint is, whatever folder holds it, quickly."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from qwen3_vl_rag import model_identity
from qwen3_vl_rag.model_identity import model_fingerprint

CONFIG = {"model_type": "qwen3_vl", "hidden_size": 64}


def write_weights(path: Path, tensors: dict[str, bytes], dtype: str = "U8") -> None:
    """A safetensors file: an 8-byte header length, a JSON header, then the tensors' bytes."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, data in tensors.items():
        header[name] = {
            "dtype": dtype,
            "shape": [len(data)],
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"".join(tensors.values()))


def tensors(seed: int = 0) -> dict[str, bytes]:
    return {
        f"layer.{i}.weight": bytes((seed + i + j) % 251 for j in range(40_000)) for i in range(3)
    }


def checkpoint(folder: Path, weights: dict[str, bytes] | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(CONFIG))
    (folder / "tokenizer.json").write_text('{"model": {"vocab": {"a": 0}}}')
    (folder / "preprocessor_config.json").write_text('{"patch_size": 16}')
    write_weights(folder / "model.safetensors", weights or tensors())
    return folder


def test_the_same_bytes_in_any_folder_by_any_path_are_the_same_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = checkpoint(tmp_path / "a" / "model")
    copy = Path(shutil.copytree(first, tmp_path / "b" / "other-name"))
    # laid out as the Hugging Face cache does: the snapshot's files are links to blobs
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    for file in first.iterdir():
        (snapshot / file.name).symlink_to(file)
    monkeypatch.chdir(tmp_path)
    expected = model_fingerprint(first)
    assert len(expected) == 64
    assert model_fingerprint(copy) == expected
    assert model_fingerprint("a/model") == expected
    assert model_fingerprint(snapshot) == expected
    # files that do not change a number do not count
    (copy / "generation_config.json").write_text('{"do_sample": true}')
    (copy / "README.md").write_text("a model card")
    assert model_fingerprint(copy) == expected


@pytest.mark.parametrize(
    "change",
    ["config", "tokenizer", "one tensor retrained", "a dtype", "another seed", "a second shard"],
)
def test_what_changes_the_numbers_changes_the_fingerprint(tmp_path: Path, change: str) -> None:
    original = model_fingerprint(checkpoint(tmp_path / "original"))
    other = checkpoint(tmp_path / "other")
    weights = tensors()
    if change == "config":
        (other / "config.json").write_text(json.dumps({**CONFIG, "rms_norm_eps": 1e-5}))
    elif change == "tokenizer":
        (other / "tokenizer.json").write_text('{"model": {"vocab": {"b": 0}}}')
    elif change == "one tensor retrained":  # same size, same header: only its bytes differ
        weights["layer.1.weight"] = bytes(255 - b for b in weights["layer.1.weight"])
        write_weights(other / "model.safetensors", weights)
    elif change == "a dtype":
        write_weights(other / "model.safetensors", weights, dtype="I8")
    elif change == "another seed":
        write_weights(other / "model.safetensors", tensors(seed=7))
    else:
        write_weights(other / "model-00002-of-00002.safetensors", {"extra": b"\x01" * 64})
    assert model_fingerprint(other) != original


def test_a_multi_gigabyte_checkpoint_is_fingerprinted_in_well_under_a_second(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "large"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(CONFIG))
    # 4 GiB in 2,048 tensors of 2 MiB, written as holes: nothing is stored, all of it is readable
    header: dict[str, object] = {}
    size = 2 << 20
    for i in range(2048):
        header[f"model.layers.{i}.weight"] = {
            "dtype": "BF16",
            "shape": [1024, 1024],
            "data_offsets": [i * size, (i + 1) * size],
        }
    raw = json.dumps(header).encode()
    weights = folder / "model.safetensors"
    with weights.open("wb") as handle:
        handle.write(len(raw).to_bytes(8, "little") + raw)
        handle.truncate(8 + len(raw) + 2048 * size)
    assert weights.stat().st_size > 4 * 1024**3

    started = time.perf_counter()
    first = model_fingerprint(folder)
    assert time.perf_counter() - started < 1.0

    with weights.open("r+b") as handle:  # one tensor retrained, deep inside the file
        handle.seek(8 + len(raw) + 1234 * size + size // 2)
        handle.write(b"\x07" * 256)
    assert model_fingerprint(folder) != first


def test_a_result_is_kept_while_the_files_stay_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = checkpoint(tmp_path / "model")
    expected = model_fingerprint(folder)

    def unread(*_: object) -> None:
        raise AssertionError("the weights were read again")

    monkeypatch.setattr(model_identity, "_hash_weights", unread)
    assert model_fingerprint(folder) == expected
    monkeypatch.undo()

    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # rewritten in place: the size is the same, the time is not
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
    assert model_fingerprint(folder) != expected


def test_a_folder_that_cannot_be_read_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        model_fingerprint(tmp_path / "missing")
