"""Tiny Qwen3-VL models that retrieve for real: trained here, offline, on the synthetic corpus.

A random-weight checkpoint exercises every step of the pipeline but ranks at random. The models
built here start from the same tiny random checkpoint (:func:`build_tiny_checkpoint`) and are
fine-tuned by :mod:`qwen3_vl_rag.finetune` on a synthetic training split
(:func:`make_synthetic_corpus`), on the CPU in a few minutes. They then find a red bar chart for
"red bar chart of quarterly revenue" among pages they never saw, and nothing else: they know the
six kinds of page and six colours of the synthetic corpus, not language.

They read pages at :data:`SYNTHETIC_MAX_PIXELS` (about 80 visual tokens), the size they were
trained at: pass ``max_pixels=SYNTHETIC_MAX_PIXELS`` to ``from_pretrained`` (or
``--max-pixels`` to the command line).

The weights file says what it is (:data:`SYNTHETIC_TRAINED_MARKER` in its safetensors metadata),
so the command line and the gallery can say so. A folder that already holds a model built by the
same recipe (the same code, corpus and settings) is reused, not trained again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from qwen3_vl_rag.testing.checkpoints import _safetensors_metadata, build_tiny_checkpoint

__all__ = [
    "SYNTHETIC_MAX_PIXELS",
    "SYNTHETIC_TRAINED_MARKER",
    "build_trained_checkpoint",
    "is_synthetic_trained_checkpoint",
    "trained_recipe_digest",
]

Kind = Literal["embedding", "reranker"]

#: The pixel budget the trained tiny models read pages at: 256x320, 80 visual tokens.
SYNTHETIC_MAX_PIXELS = 256 * 320
#: safetensors metadata key set to ``"true"`` in a model built by :func:`build_trained_checkpoint`.
SYNTHETIC_TRAINED_MARKER = "qwen3_vl_rag_synthetic_trained"
_RECIPE_FILE = "qwen3_vl_rag_recipe.json"
_PAGES_PER_CLASS = 4
_HARD_NEGATIVES = 2

# What each model trains with. Every weight trains: the models start from random weights, so a
# low-rank update of the language model alone would leave the vision tower random. The reranker
# starts from the trained embedder's weights (its score head from the random reranker): both
# official models start from one Qwen3-VL too, and a 2-layer model learns to judge pairs far
# sooner from features that already tell the pages apart. Float32 throughout: bf16 autocast (the
# "auto" choice on CPUs with AMX) would give other weights on other machines.
_RECIPES: dict[str, dict[str, Any]] = {
    "embedding": {
        "steps": 300,
        "batch_size": 12,
        "learning_rate": 2e-3,
        "hard_negatives": 2,
        "warmup_ratio": 0.05,
        "precision": "float32",
    },
    "reranker": {
        "steps": 200,
        "batch_size": 8,
        "learning_rate": 1e-3,
        "hard_negatives": 2,
        "warmup_ratio": 0.05,
        "precision": "float32",
    },
}


def trained_recipe_digest(kind: Kind) -> str:
    """A digest of everything that decides a trained model's weights: code, corpus, settings.

    Example:
        >>> len(trained_recipe_digest("embedding"))
        16
    """
    import qwen3_vl_rag

    root = Path(qwen3_vl_rag.__file__).parent
    sources = [
        *sorted((root / "finetune").glob("*.py")),
        *sorted((root / "testing").glob("*synthetic*.py")),
        root / "testing" / "checkpoints.py",
        root / "testing" / "trained.py",
        root / "engine" / "_training.py",
    ]
    digest = hashlib.sha256(json.dumps([kind, _RECIPES[kind], _PAGES_PER_CLASS]).encode())
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()[:16]


def build_trained_checkpoint(
    path: str | os.PathLike[str],
    *,
    kind: Kind = "embedding",
    embedder: str | os.PathLike[str] | None = None,
    show_progress: bool = False,
) -> Path:
    """The tiny model of ``kind`` trained on the synthetic corpus, in ``path``.

    Built once: a folder holding a model of the same recipe is returned as it is. Training runs
    in a scratch folder and the result is moved into place at the end, so an interrupted build
    leaves nothing half-written behind.

    Args:
        path: Where the checkpoint goes.
        kind: ``"embedding"`` or ``"reranker"``.
        embedder: For the reranker: the trained embedder to start from (built by this
            function); ``None`` trains one on the way.
        show_progress: Show the training's progress bar.

    Returns:
        ``path``, a checkpoint that ``from_pretrained`` loads.

    Example:
        >>> from qwen3_vl_rag import Qwen3VLEmbedder
        >>> from qwen3_vl_rag.testing import SYNTHETIC_MAX_PIXELS, build_trained_checkpoint
        >>> model = build_trained_checkpoint("trained-embedding")  # doctest: +SKIP
        >>> embedder = Qwen3VLEmbedder.from_pretrained(  # doctest: +SKIP
        ...     model, max_pixels=SYNTHETIC_MAX_PIXELS
        ... )

        (Skipped as a doctest: it trains for minutes. The tests build these models once per
        recipe, in ``tests/conftest.py``.)
    """
    import torch

    from qwen3_vl_rag.finetune import (
        TrainingSettings,
        finetune_embedder,
        finetune_reranker,
        read_training_file,
    )
    from qwen3_vl_rag.testing.synthetic import make_synthetic_corpus

    out = Path(path)
    digest = trained_recipe_digest(kind)
    if _recipe_of(out) == digest:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    # One thread: the same weights on any machine, and for a model this small the fastest
    # (measured: 1.15 steps/s, against 0.2 for two threads sharing two busy cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = build_tiny_checkpoint(scratch / "random", kind=kind)
        if kind == "reranker":
            start = embedder or build_trained_checkpoint(
                scratch / "embedder", kind="embedding", show_progress=show_progress
            )
            base = _reranker_from(Path(start), base, scratch / "start")
        corpus = make_synthetic_corpus(
            scratch / "corpus", split="train", pages_per_class=_PAGES_PER_CLASS
        )
        examples = read_training_file(
            corpus.write_training_file(scratch / "train.jsonl", negatives=_HARD_NEGATIVES)
        )
        settings = TrainingSettings(lora=None, eval_every=0, save_every=10_000, **_RECIPES[kind])
        finetune = finetune_embedder if kind == "embedding" else finetune_reranker
        result = finetune(
            base,
            examples,
            scratch / "run",
            settings=settings,
            device="cpu",
            max_pixels=SYNTHETIC_MAX_PIXELS,
            show_progress=show_progress,
        )
        model = result.model_dir
        _mark(model, kind)
        (model / _RECIPE_FILE).write_text(
            json.dumps({"recipe": digest, "kind": kind, "max_pixels": SYNTHETIC_MAX_PIXELS}),
            encoding="utf-8",
        )
        if out.exists():
            shutil.rmtree(out)
        os.replace(model, out)
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def is_synthetic_trained_checkpoint(model: str | os.PathLike[str]) -> bool:
    """Whether ``model`` is a folder holding a model built by :func:`build_trained_checkpoint`.

    Example:
        >>> is_synthetic_trained_checkpoint("nobody/no-such-model")
        False
    """
    try:
        weights = sorted(Path(model).glob("*.safetensors"))
    except (OSError, ValueError):
        return False
    return any(
        _safetensors_metadata(file).get(SYNTHETIC_TRAINED_MARKER) == "true" for file in weights
    )


def _reranker_from(embedder: Path, random_reranker: Path, out: Path) -> Path:
    """A reranker checkpoint with the trained embedder's backbone and the random score head."""
    from safetensors.torch import load_file

    from qwen3_vl_rag.finetune._export import write_checkpoint

    if _recipe_of(embedder) != trained_recipe_digest("embedding"):
        raise ValueError(f"{embedder} is not the trained embedder of this recipe.")
    state = {
        name.removeprefix("model."): tensor
        for name, tensor in load_file(embedder / "model.safetensors").items()
    }
    return write_checkpoint(random_reranker, state, out, metadata={})


def _recipe_of(folder: Path) -> str | None:
    try:
        return str(json.loads((folder / _RECIPE_FILE).read_text(encoding="utf-8"))["recipe"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _mark(model: Path, kind: Kind) -> None:
    """Say in the weights' metadata that this is the synthetic-trained tiny model."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    file = model / "model.safetensors"
    with safe_open(str(file), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        metadata = dict(handle.metadata() or {})
    metadata.pop("qwen3_vl_rag_finetuned", None)  # it names the scratch folder it came from
    metadata[SYNTHETIC_TRAINED_MARKER] = "true"
    metadata["qwen3_vl_rag_kind"] = kind
    save_file(tensors, str(file), metadata=metadata)
