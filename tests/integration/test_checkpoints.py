"""The offline tiny checkpoint builder: deterministic, realistic layout, loads everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwen3_vl_rag.testing import build_tiny_checkpoint, checkpoint_fingerprint


def test_same_arguments_same_bytes(tmp_path: Path, tiny_embedding_path: Path) -> None:
    again = build_tiny_checkpoint(tmp_path / "again", kind="embedding")
    assert checkpoint_fingerprint(again) == checkpoint_fingerprint(tiny_embedding_path)


def test_seed_and_kind_change_the_weights(tmp_path: Path, tiny_embedding_path: Path) -> None:
    other = build_tiny_checkpoint(tmp_path / "seed7", kind="embedding", seed=7)
    assert checkpoint_fingerprint(other) != checkpoint_fingerprint(tiny_embedding_path)
    assert (other / "tokenizer.json").read_bytes() == (
        tiny_embedding_path / "tokenizer.json"
    ).read_bytes()


def test_layout_of_a_released_checkpoint(
    tiny_embedding_path: Path, tiny_reranker_path: Path
) -> None:
    expected = {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
        "preprocessor_config.json",
        "video_preprocessor_config.json",
        "chat_template.json",
    }
    assert {p.name for p in tiny_embedding_path.iterdir()} == expected
    config = json.loads((tiny_reranker_path / "config.json").read_text())
    assert config["model_type"] == "qwen3_vl"
    assert config["text_config"]["rope_scaling"]["mrope_section"] == [4, 2, 2]
    from safetensors import safe_open

    with safe_open(str(tiny_embedding_path / "model.safetensors"), framework="pt") as handle:
        keys = set(handle.keys())
    assert "lm_head.weight" not in keys  # an embedding model has no LM head
    assert any(k.startswith("model.visual.") for k in keys)
    with safe_open(str(tiny_reranker_path / "model.safetensors"), framework="pt") as handle:
        assert "lm_head.weight" in handle.keys()  # noqa: SIM118


def test_tokenizer_has_qwen_special_tokens_and_single_token_answers(
    tiny_embedding_path: Path,
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_embedding_path)
    ids = [
        tokenizer.convert_tokens_to_ids(t)
        for t in (
            "<|endoftext|>",
            "<|im_start|>",
            "<|im_end|>",
            "<|vision_start|>",
            "<|vision_end|>",
            "<|vision_pad|>",
            "<|image_pad|>",
            "<|video_pad|>",
        )
    ]
    assert ids == [
        ids[0],
        ids[0] + 1,
        ids[0] + 2,
        ids[0] + 9,
        ids[0] + 10,
        ids[0] + 11,
        ids[0] + 12,
        ids[0] + 13,
    ]
    for word in ("yes", "no", "assistant"):
        assert len(tokenizer(word)["input_ids"]) == 1
    suffix = tokenizer("<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
    assert len(suffix) == 5  # the official reranker keeps exactly these five tokens
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"


def test_unknown_preset_and_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        build_tiny_checkpoint(tmp_path, preset="70b")
    with pytest.raises(ValueError, match="kind must be"):
        build_tiny_checkpoint(tmp_path, kind="classifier")  # type: ignore[arg-type]


def test_bpe_training_merges_most_frequent_pair_then_smallest() -> None:
    from qwen3_vl_rag.testing.checkpoints import train_bpe

    vocab, merges = train_bpe(["ab ab ab cd cd cd"], vocab_size=256 + 4)
    # "ab" x3 and "cd" x3 tie at first: the smaller pair wins; then the space-prefixed words
    assert merges[:2] == [("a", "b"), ("c", "d")]
    assert vocab["ab"] == 256 and vocab["cd"] == 257
    assert len(vocab) == 260
