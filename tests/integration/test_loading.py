"""Loading checkpoints: device and dtype choices, refusals, safetensors only, no remote code."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from qwen3_vl_rag import ConfigurationError, ModelLoadError, Qwen3VLEmbedder, Qwen3VLReranker
from qwen3_vl_rag.engine._loading import resolve_attention, resolve_device, resolve_dtype


def test_auto_device_and_dtype_on_a_cpu_machine() -> None:
    if torch.cuda.is_available():
        pytest.skip("this test describes a machine without CUDA")
    device = resolve_device("auto")
    assert device == torch.device("cpu")
    assert resolve_dtype("auto", device) is torch.float32
    assert resolve_attention(None, device, torch.float32) == "sdpa"


def test_explicit_choices() -> None:
    cpu = torch.device("cpu")
    assert resolve_dtype("bf16", cpu) is torch.bfloat16
    assert resolve_dtype("torch.float16", cpu) is torch.float16
    assert resolve_dtype(torch.float64, cpu) is torch.float64
    assert resolve_attention("eager", cpu, torch.float32) == "eager"
    with pytest.raises(ConfigurationError, match="unknown dtype"):
        resolve_dtype("int8", cpu)
    with pytest.raises(ConfigurationError, match="invalid device"):
        resolve_device("gpu:7")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigurationError, match="CUDA is not available"):
            resolve_device("cuda")


def test_loaded_model_reports_its_settings(tiny_embedding_path: Path) -> None:
    embedder = Qwen3VLEmbedder.from_pretrained(
        tiny_embedding_path, device="cpu", max_pixels=64 * 32 * 32
    )
    assert embedder.dimension == 64
    assert embedder.device == torch.device("cpu")
    assert embedder.model_id == str(tiny_embedding_path)
    vision = embedder.backbone.loaded.vision
    assert (vision.patch_size, vision.merge_size, vision.temporal_patch_size) == (16, 2, 2)
    assert vision.max_pixels == 64 * 32 * 32 and vision.min_pixels == 4096
    assert "dimension=64" in repr(embedder)
    assert next(embedder.backbone.loaded.model.parameters()).dtype is torch.float32


def test_bfloat16_on_cpu_is_honoured(tiny_embedding_path: Path) -> None:
    embedder = Qwen3VLEmbedder.from_pretrained(tiny_embedding_path, device="cpu", dtype="bfloat16")
    vector = embedder.embed(["hello"])
    assert vector.dtype.name == "float32"  # outputs are always float32 numpy arrays
    reference = Qwen3VLEmbedder.from_pretrained(tiny_embedding_path, device="cpu").embed(["hello"])
    assert float(vector[0] @ reference[0]) > 0.99


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="could not load"):
        Qwen3VLEmbedder.from_pretrained(tmp_path / "nowhere", device="cpu")


def test_offline_hub_id_explains_itself() -> None:
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache"):
        Qwen3VLEmbedder.from_pretrained("Qwen/Qwen3-VL-Embedding-2B", device="cpu")


def test_other_architectures_are_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    with pytest.raises(ModelLoadError, match="'bert' checkpoint; expected a Qwen3-VL one"):
        Qwen3VLEmbedder.from_pretrained(tmp_path, device="cpu")


def test_pickle_weights_are_never_loaded(tiny_embedding_path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "pickled"
    shutil.copytree(tiny_embedding_path, copy)
    from safetensors.torch import load_file

    state = load_file(copy / "model.safetensors")
    (copy / "model.safetensors").unlink()
    torch.save(state, copy / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="only safetensors"):
        Qwen3VLEmbedder.from_pretrained(copy, device="cpu")


def test_remote_code_in_a_checkpoint_is_never_run(
    tiny_embedding_path: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "with-code"
    shutil.copytree(tiny_embedding_path, copy)
    marker = tmp_path / "executed"
    (copy / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((copy / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.Config", "AutoModel": "evil.Model"}
    (copy / "config.json").write_text(json.dumps(config))
    tokenizer_config = json.loads((copy / "tokenizer_config.json").read_text())
    tokenizer_config["auto_map"] = {"AutoTokenizer": ["evil.Tok", None]}
    (copy / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    with contextlib.suppress(ModelLoadError, ValueError):  # refusing is fine; running code is not
        Qwen3VLEmbedder.from_pretrained(copy, device="cpu").embed(["x"])
    assert not marker.exists()


def test_reranker_loads_only_two_head_rows(tiny_reranker_path: Path) -> None:
    reranker = Qwen3VLReranker.from_pretrained(tiny_reranker_path, device="cpu")
    assert reranker.score_head.shape == (64,)
    assert not hasattr(reranker.backbone.loaded.model, "lm_head")
    from safetensors import safe_open

    with safe_open(str(tiny_reranker_path / "model.safetensors"), framework="pt") as handle:
        head = handle.get_tensor("lm_head.weight")
    vocab = reranker.backbone.loaded.tokenizer.get_vocab()
    torch.testing.assert_close(reranker.score_head, head[vocab["yes"]] - head[vocab["no"]])
