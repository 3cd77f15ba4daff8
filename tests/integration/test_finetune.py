"""Fine-tuning on the tiny checkpoints: same inputs as inference, a score that rises, exports
that load, runs that resume to the same weights, and the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open

from qwen3_vl_rag import MultimodalInput, Qwen3VLEmbedder, Qwen3VLReranker
from qwen3_vl_rag.cli.main import main as cli
from qwen3_vl_rag.engine._training import embedding_sequences, pair_sequences, pooled_states
from qwen3_vl_rag.errors import ConfigurationError
from qwen3_vl_rag.finetune import (
    LoraSettings,
    TrainingExample,
    TrainingSettings,
    finetune_embedder,
    finetune_reranker,
    read_training_file,
)
from qwen3_vl_rag.finetune._objectives import EmbeddingObjective
from qwen3_vl_rag.testing import SYNTHETIC_MAX_PIXELS, SyntheticCorpus, make_synthetic_corpus

PIXELS = {"max_pixels": SYNTHETIC_MAX_PIXELS, "device": "cpu"}


@pytest.fixture(scope="module")
def train_corpus(tmp_path_factory: pytest.TempPathFactory) -> SyntheticCorpus:
    folder = tmp_path_factory.mktemp("synthetic-train")
    return make_synthetic_corpus(folder / "corpus", split="train", pages_per_class=1)


@pytest.fixture(scope="module")
def train_file(train_corpus: SyntheticCorpus) -> Path:
    return train_corpus.write_training_file(train_corpus.folder / "train.jsonl", negatives=1)


@pytest.fixture(scope="module")
def train(train_file: Path) -> list[TrainingExample]:
    return read_training_file(train_file)


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118


def test_training_inputs_are_the_inference_inputs(
    tiny_embedding_path: Path, tiny_reranker_path: Path, train: list[TrainingExample]
) -> None:
    embedder = Qwen3VLEmbedder.from_pretrained(tiny_embedding_path, **PIXELS)
    page = train[0].positives[0]
    items: list[Any] = [
        "a red bar chart",
        page,
        MultimodalInput(text="caption", images=page.images),
    ]
    with torch.no_grad():
        trained = pooled_states(
            embedder.backbone,  # type: ignore[arg-type]
            embedding_sequences(embedder, items, embedder.document_instruction),
        )
    served = embedder.embed(items, normalize=False)
    np.testing.assert_allclose(trained.numpy(), served, atol=1e-5)

    reranker = Qwen3VLReranker.from_pretrained(tiny_reranker_path, **PIXELS)
    pairs = [("a red bar chart", page), ("a table", "rows and columns")]
    with torch.no_grad():
        hidden = pooled_states(
            reranker.backbone,  # type: ignore[arg-type]
            pair_sequences(reranker, pairs, reranker.instruction),
        )
        scores = torch.sigmoid(hidden @ reranker._head()).tolist()
    assert scores == pytest.approx(reranker.score_pairs(pairs), abs=1e-6)


def test_a_lora_fine_tune_raises_the_score_on_what_it_trained_on(
    tiny_embedding_path: Path, train_corpus: SyntheticCorpus, tmp_path: Path
) -> None:
    # Queries and their pages' captions as text: LoRA on the language model learns them in a
    # few steps. (Generalising to unseen pages from random weights takes every weight and 200
    # steps: the trained tiny models, tests/integration/test_trained_retrieval.py.)
    by_id = {page.id: page for page in train_corpus.pages}
    rows = [
        TrainingExample(
            MultimodalInput(text=query.text),
            tuple(
                MultimodalInput(text=f"{by_id[p].caption} {by_id[p].text}")
                for p, grade in query.relevance.items()
                if grade == 2
            ),
        )
        for query in train_corpus.queries[:36]
    ]
    settings = TrainingSettings(steps=20, batch_size=12, learning_rate=3e-3, eval_every=0)
    result = finetune_embedder(
        tiny_embedding_path, rows, tmp_path / "run", settings=settings, held_out=rows, **PIXELS
    )
    (first_step, before), (last_step, after) = result.evaluations[0], result.evaluations[-1]
    assert (first_step, last_step, result.steps) == (0, 20, 20)
    assert after["nDCG@10"] > before["nDCG@10"] + 0.2, (before, after)
    assert result.losses[-1][1] < result.losses[0][1]

    # the adapter is peft's; base + adapter gives the merged checkpoint's vectors
    from peft import PeftModel

    assert result.adapter_dir is not None
    config = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert config["r"] == 32 and config["lora_alpha"] == 32
    assert set(config["target_modules"]) == set(LoraSettings().targets)
    merged = Qwen3VLEmbedder.from_pretrained(result.model_dir, **PIXELS)
    adapted = Qwen3VLEmbedder.from_pretrained(tiny_embedding_path, **PIXELS)
    adapted.backbone.loaded.model = PeftModel.from_pretrained(  # type: ignore[union-attr]
        adapted.backbone.loaded.model,  # type: ignore[union-attr]
        str(result.adapter_dir),
    ).eval()
    items = [rows[0].query, rows[0].positives[0], "a page never seen"]
    np.testing.assert_allclose(merged.embed(items), adapted.embed(items), atol=1e-5)


def test_the_merged_checkpoint_is_laid_out_like_its_base(
    tiny_reranker_path: Path, train: list[TrainingExample], tmp_path: Path
) -> None:
    settings = TrainingSettings(steps=2, batch_size=4, learning_rate=1e-3, eval_every=0)
    result = finetune_reranker(
        tiny_reranker_path, train, tmp_path / "run", settings=settings, **PIXELS
    )
    base, tuned = _tensors(tiny_reranker_path), _tensors(result.model_dir)
    assert {k: (v.shape, v.dtype) for k, v in tuned.items()} == {
        k: (v.shape, v.dtype) for k, v in base.items()
    }
    assert torch.equal(tuned["lm_head.weight"], base["lm_head.weight"])  # the score head
    changed = [k for k in base if not torch.equal(base[k], tuned[k])]
    assert changed and all("proj" in k for k in changed)  # only what LoRA adapted
    for file in tiny_reranker_path.iterdir():
        if file.suffix != ".safetensors":
            assert (result.model_dir / file.name).read_bytes() == file.read_bytes()
    reranker = Qwen3VLReranker.from_pretrained(result.model_dir, **PIXELS)
    assert 0.0 <= reranker.score("a red bar chart", [train[0].positives[0]])[0] <= 1.0


def test_a_stopped_run_resumes_to_the_weights_of_an_unstopped_one(
    tiny_embedding_path: Path,
    train: list[TrainingExample],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = TrainingSettings(steps=4, batch_size=4, save_every=2, eval_every=0)
    straight = finetune_embedder(
        tiny_embedding_path, train, tmp_path / "a", settings=settings, **PIXELS
    )

    calls = {"n": 0}
    original = EmbeddingObjective.loss

    def stop_at_the_third_update(self: EmbeddingObjective, *args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(EmbeddingObjective, "loss", stop_at_the_third_update)
    with pytest.raises(KeyboardInterrupt):
        finetune_embedder(tiny_embedding_path, train, tmp_path / "b", settings=settings, **PIXELS)
    assert not (tmp_path / "b" / "model").exists()
    monkeypatch.setattr(EmbeddingObjective, "loss", original)
    resumed = finetune_embedder(
        tiny_embedding_path, train, tmp_path / "b", settings=settings, **PIXELS
    )
    assert (resumed.resumed_from, resumed.steps) == (2, 4)
    assert [step for step, _ in resumed.losses] == [3, 4]
    a, b = _tensors(straight.model_dir), _tensors(resumed.model_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [
        json.loads(line)
        for line in (tmp_path / "b" / "training_log.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # the interrupted step never logged


def test_an_output_folder_holding_another_run_is_refused(
    tiny_embedding_path: Path, train: list[TrainingExample], tmp_path: Path
) -> None:
    settings = TrainingSettings(steps=1, batch_size=4, eval_every=0)
    finetune_embedder(tiny_embedding_path, train, tmp_path / "run", settings=settings, **PIXELS)
    other = TrainingSettings(steps=1, batch_size=4, eval_every=0, learning_rate=5e-4)
    with pytest.raises(ConfigurationError, match="other settings"):
        finetune_embedder(tiny_embedding_path, train, tmp_path / "run", settings=other, **PIXELS)
    with pytest.raises(ConfigurationError, match="earlier run"):
        finetune_embedder(
            tiny_embedding_path, train, tmp_path / "run", settings=settings, resume=False, **PIXELS
        )
    with pytest.raises(ConfigurationError, match="batch_size"):
        finetune_embedder(
            tiny_embedding_path, train[:3], tmp_path / "x", settings=settings, **PIXELS
        )


def test_the_command_trains_and_reports(
    tiny_embedding_path: Path,
    train_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    code = cli(
        [
            "finetune", str(train_file), "--output", str(out), "--model", str(tiny_embedding_path),
            "--steps", "2", "--batch-size", "4", "--held-out-fraction", "0.2",
            "--max-pixels", str(SYNTHETIC_MAX_PIXELS), "--device", "cpu", "--json", "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and summary["model_dir"] == str(out / "model")
    assert summary["held_out_examples"] > 0
    assert [row["step"] for row in summary["held_out"]] == [0, 2]
    assert Qwen3VLEmbedder.from_pretrained(out / "model", **PIXELS).dimension == 64


def test_the_command_refuses_a_bad_file_before_loading_a_model(
    train_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    lines = train_file.read_text().splitlines()
    bad.write_text("\n".join([lines[0], '{"query": "x", "positve": "typo"}', *lines[1:4]]) + "\n")
    for row in lines[:4]:  # the pictures the good rows name, next to the file
        for image in json.dumps(json.loads(row)).split('"image": "')[1:]:
            name = image.split('"')[0]
            target = tmp_path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((train_file.parent / name).read_bytes())
    code = cli(["finetune", str(bad), "--output", str(tmp_path / "run"), "--model", "nobody/none"])
    assert code == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2" in err and "positve" in err
    assert not (tmp_path / "run").exists()


def test_memory_settings_do_not_change_the_numbers(
    tiny_embedding_path: Path, tmp_path: Path
) -> None:
    rows = [
        TrainingExample(MultimodalInput(text=f"query {i}"), (MultimodalInput(text=f"doc {i}"),))
        for i in range(8)
    ]
    plain = TrainingSettings(steps=2, batch_size=4, eval_every=0, precision="float32")
    checkpointed = TrainingSettings(
        steps=2, batch_size=4, eval_every=0, precision="float32", gradient_checkpointing=True
    )
    a = finetune_embedder(tiny_embedding_path, rows, tmp_path / "a", settings=plain, **PIXELS)
    b = finetune_embedder(
        tiny_embedding_path, rows, tmp_path / "b", settings=checkpointed, **PIXELS
    )
    assert [loss for _, loss in a.losses] == pytest.approx([loss for _, loss in b.losses], abs=1e-5)
    ta, tb = _tensors(a.model_dir), _tensors(b.model_dir)
    assert all(torch.allclose(ta[k], tb[k], atol=1e-6) for k in ta)
    # accumulation: two passes of 2 per update, the same examples per update as a batch of 4
    accumulated = TrainingSettings(
        steps=2, batch_size=2, gradient_accumulation=2, eval_every=0, precision="float32"
    )
    c = finetune_embedder(tiny_embedding_path, rows, tmp_path / "c", settings=accumulated, **PIXELS)
    assert c.steps == 2 and len(c.losses) == 2
    assert any(not torch.equal(_tensors(c.model_dir)[k], ta[k]) for k in ta)  # it trained
