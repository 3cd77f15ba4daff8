"""The fine-tuning loop: LoRA (or every weight), AdamW, checkpoints to resume from, held-out runs.

A run writes into its output folder::

    checkpoints/step-000050/   trainable weights, optimiser, schedule, data position (resumable)
    training_log.jsonl         one line per update (loss, learning rate) and per evaluation
    adapter/                   the LoRA adapter (peft format), when training one
    model/                     the merged checkpoint: loads like the base one, vLLM included

A checkpoint is written to a temporary folder and renamed into place, so a run killed at any
moment resumes from its last complete checkpoint, with the same data order and random state,
and reaches the same weights as a run that was never stopped.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from qwen3_vl_rag.engine._hardware import bf16_matmul_in_hardware
from qwen3_vl_rag.errors import ConfigurationError, MissingDependencyError
from qwen3_vl_rag.finetune._export import FINETUNED_MARKER, write_checkpoint
from qwen3_vl_rag.finetune._objectives import (
    EmbeddingObjective,
    Example,
    Objective,
    RerankingObjective,
)
from qwen3_vl_rag.finetune._settings import TrainingSettings, default_matryoshka_dims

if TYPE_CHECKING:
    import torch

    from qwen3_vl_rag.engine._backbone import Backbone
    from qwen3_vl_rag.engine._embedder import Qwen3VLEmbedder
    from qwen3_vl_rag.engine._loading import PretrainedOptions
    from qwen3_vl_rag.engine._reranker import Qwen3VLReranker

__all__ = ["FinetuneResult", "finetune_embedder", "finetune_reranker"]

ModelKind = Literal["embedding", "reranker"]
_STATE = "state.json"
_TRAINABLE = "trainable.safetensors"
_OPTIMIZER = "optimizer.pt"


@dataclass(frozen=True)
class FinetuneResult:
    """What a fine-tuning run produced.

    Attributes:
        model_dir: The merged checkpoint; pass it to ``from_pretrained`` or ``serve``.
        adapter_dir: The LoRA adapter (peft format), or ``None`` when every weight trained.
        steps: Updates made in total (over every resumed part of the run).
        resumed_from: The step the run resumed from, or ``None`` for a fresh start.
        losses: ``(step, loss)`` of each update made by this call.
        evaluations: ``(step, measures)`` of each held-out evaluation made by this call,
            the first one before any update of a fresh run; measures such as ``"nDCG@10"``.
        seconds: Wall-clock time of this call.

    Example:
        >>> from pathlib import Path
        >>> from qwen3_vl_rag.finetune import FinetuneResult
        >>> result = FinetuneResult(
        ...     Path("run/model"), Path("run/adapter"), steps=100,
        ...     evaluations=[(0, {"nDCG@10": 0.41}), (100, {"nDCG@10": 0.58})],
        ... )
        >>> before, after = result.evaluations[0][1], result.evaluations[-1][1]
        >>> round(after["nDCG@10"] - before["nDCG@10"], 2)
        0.17
    """

    model_dir: Path
    adapter_dir: Path | None
    steps: int
    resumed_from: int | None = None
    losses: list[tuple[int, float]] = field(default_factory=list)
    evaluations: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    seconds: float = 0.0


def finetune_embedder(
    model: str | os.PathLike[str],
    train: Sequence[Example],
    output_dir: str | os.PathLike[str],
    *,
    settings: TrainingSettings | None = None,
    held_out: Sequence[Example] = (),
    resume: bool = True,
    show_progress: bool = False,
    **options: Any,
) -> FinetuneResult:
    """Fine-tune a Qwen3-VL-Embedding checkpoint on query/positive/negative examples.

    Args:
        model: The checkpoint to start from (Hub id or folder).
        train: Training examples (see :func:`read_training_file`).
        output_dir: Where checkpoints, the adapter and the merged model go.
        settings: How to train (defaults: the report's LoRA, InfoNCE and Matryoshka).
        held_out: Examples to evaluate on every ``settings.eval_every`` updates (nDCG@10,
            Recall@1/5, MRR@10 of each query's positives among all held-out documents).
        resume: Continue from the folder's last checkpoint when there is one.
        show_progress: Show a progress bar with the loss.
        **options: Loading options of :meth:`Qwen3VLEmbedder.from_pretrained` (``device``,
            ``max_pixels``...). ``dtype`` is chosen by ``settings.precision``.

    Returns:
        The run's outputs and its losses and evaluations.

    Raises:
        ConfigurationError: For bad settings, or an output folder holding another run.
        MissingDependencyError: When peft is not installed (LoRA runs).

    Example:
        >>> from qwen3_vl_rag import MultimodalInput, Qwen3VLEmbedder
        >>> from qwen3_vl_rag.finetune import TrainingExample, TrainingSettings, finetune_embedder
        >>> examples = [
        ...     TrainingExample(MultimodalInput(text=f"invoice {i}"),
        ...                     (MultimodalInput(text=f"Invoice no. {i}"),))
        ...     for i in range(4)
        ... ]
        >>> result = finetune_embedder("Qwen/Qwen3-VL-Embedding-2B", examples, "tuned",
        ...                            settings=TrainingSettings(steps=2, batch_size=2))
        >>> tuned = Qwen3VLEmbedder.from_pretrained(result.model_dir)
        >>> result.steps, tuned.embed_queries(["invoice 7"]).shape[1] == tuned.dimension
        (2, True)
    """
    from qwen3_vl_rag.engine._embedder import Qwen3VLEmbedder

    settings = settings or TrainingSettings()
    _check_examples(train, settings)
    embedder = Qwen3VLEmbedder.from_pretrained(model, **_loading(options, settings))
    dims = settings.matryoshka_dims or default_matryoshka_dims(embedder.dimension)
    if max(dims) > embedder.dimension:
        raise ConfigurationError(
            f"matryoshka_dims {dims} exceed the model's {embedder.dimension} dimensions."
        )
    objective = EmbeddingObjective(
        embedder,
        temperature=settings.temperature,
        dims=dims,
        margin=settings.false_negative_margin,
        hard_negatives=settings.hard_negatives,
    )
    return _Run("embedding", embedder, objective, settings, Path(output_dir)).train(
        train, held_out, resume=resume, show_progress=show_progress
    )


def finetune_reranker(
    model: str | os.PathLike[str],
    train: Sequence[Example],
    output_dir: str | os.PathLike[str],
    *,
    settings: TrainingSettings | None = None,
    held_out: Sequence[Example] = (),
    resume: bool = True,
    show_progress: bool = False,
    **options: Any,
) -> FinetuneResult:
    """Fine-tune a Qwen3-VL-Reranker checkpoint with yes/no cross-entropy on the judge prompt.

    Each example gives "yes" pairs (query, positive) and "no" pairs (query, hard negative); a
    row without negatives takes another row's positive. Arguments and result are those of
    :func:`finetune_embedder`; the held-out evaluation ranks each query's documents among a few
    other rows' with the reranker being trained.

    Example:
        >>> from pathlib import Path
        >>> from qwen3_vl_rag import MultimodalInput, Qwen3VLReranker
        >>> from qwen3_vl_rag.finetune import TrainingExample, TrainingSettings, finetune_reranker
        >>> def pair(query, picture):
        ...     return TrainingExample(MultimodalInput(text=query),
        ...                            (MultimodalInput(images=[Path(picture)]),))
        >>> examples = [pair("a chart", "chart.png"), pair("a photo", "photo.png")]
        >>> result = finetune_reranker("Qwen/Qwen3-VL-Reranker-2B", examples, "tuned-reranker",
        ...                            settings=TrainingSettings(steps=1, batch_size=2))
        >>> reranker = Qwen3VLReranker.from_pretrained(result.model_dir)
        >>> 0.0 <= reranker.score("a query", ["a document"])[0] <= 1.0
        True
    """
    from qwen3_vl_rag.engine._reranker import Qwen3VLReranker

    settings = settings or TrainingSettings()
    _check_examples(train, settings)
    reranker = Qwen3VLReranker.from_pretrained(model, **_loading(options, settings))
    objective = RerankingObjective(reranker, hard_negatives=max(1, settings.hard_negatives))
    return _Run("reranker", reranker, objective, settings, Path(output_dir)).train(
        train, held_out, resume=resume, show_progress=show_progress
    )


class _Run:
    """One fine-tuning run over an engine whose backbone gets trained in place."""

    def __init__(
        self,
        kind: ModelKind,
        engine: Qwen3VLEmbedder | Qwen3VLReranker,
        objective: Objective,
        settings: TrainingSettings,
        out: Path,
    ) -> None:
        import torch

        from qwen3_vl_rag.engine._training import trained_backbone

        self.kind = kind
        self.engine = engine
        self.backbone: Backbone = trained_backbone(engine)
        self.objective = objective
        self.settings = settings
        self.out = out
        self.device = self.backbone.loaded.device
        self.autocast_dtype = _autocast_dtype(settings, self.device)
        torch.manual_seed(settings.seed)
        self.model = self._trainable(self.backbone.loaded.model)
        self.backbone.loaded.model = self.model  # the engine now runs (and evaluates) it

    def _trainable(self, model: Any) -> Any:
        lora = self.settings.lora
        if lora is None:
            trainable = model
            for parameter in model.parameters():
                parameter.requires_grad_(True)
        else:
            try:
                from peft import LoraConfig, get_peft_model
            except ImportError as exc:
                raise MissingDependencyError("peft", "finetune", "LoRA fine-tuning") from exc
            targets = lora.targets if lora.targets == "all-linear" else list(lora.targets)
            trainable = get_peft_model(
                model,
                LoraConfig(
                    r=lora.r,
                    lora_alpha=lora.alpha,
                    lora_dropout=lora.dropout,
                    target_modules=targets,
                ),
            )
        if self.settings.gradient_checkpointing:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        return trainable

    # -- the loop --------------------------------------------------------------------------------

    def train(
        self,
        train: Sequence[Example],
        held_out: Sequence[Example],
        *,
        resume: bool,
        show_progress: bool,
    ) -> FinetuneResult:
        import torch
        from tqdm.auto import tqdm

        started = time.perf_counter()
        settings = self.settings
        total = settings.total_steps(len(train))
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
        warmup = max(1, round(settings.warmup_ratio * total)) if settings.warmup_ratio else 0
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(warmup, total))
        fingerprint = self._fingerprint(train)
        step, resumed_from = self._resume(fingerprint, optimizer, scheduler, resume)
        log = self.out / "training_log.jsonl"
        evaluations: list[tuple[int, dict[str, float]]] = []
        losses: list[tuple[int, float]] = []
        if held_out and step == 0:
            evaluations.append((0, self._evaluate(held_out, log, 0)))
        per_update = settings.batch_size * settings.gradient_accumulation
        with tqdm(
            total=total,
            initial=step,
            desc=f"Fine-tuning the {self.kind}",
            unit="step",
            disable=not show_progress,
        ) as bar:
            self.model.train()
            while step < total:
                rng = random.Random(f"{settings.seed}:{step}")
                examples = _examples_for(train, step, per_update, settings.seed)
                optimizer.zero_grad(set_to_none=True)
                loss_sum = 0.0
                for micro in range(settings.gradient_accumulation):
                    batch = examples[
                        micro * settings.batch_size : (micro + 1) * settings.batch_size
                    ]
                    with self._autocast():
                        loss = self.objective.loss(batch, rng) / settings.gradient_accumulation
                    loss.backward()  # type: ignore[no-untyped-call]
                    loss_sum += float(loss.detach())
                if not math.isfinite(loss_sum):
                    raise ConfigurationError(
                        f"the loss became {loss_sum} at step {step + 1}; lower learning_rate "
                        f"(now {settings.learning_rate}) or use precision='float32'."
                    )
                if settings.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(parameters, settings.max_grad_norm)
                optimizer.step()
                scheduler.step()
                step += 1
                losses.append((step, loss_sum))
                _append(log, {"step": step, "loss": loss_sum, "lr": scheduler.get_last_lr()[0]})
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum:.4f}")
                evaluate_now = settings.eval_every and step % settings.eval_every == 0
                if held_out and (evaluate_now or step == total):
                    measures = self._evaluate(held_out, log, step)
                    evaluations.append((step, measures))
                    bar.set_postfix(loss=f"{loss_sum:.4f}", ndcg10=f"{measures['nDCG@10']:.3f}")
                if step % settings.save_every == 0 or step == total:
                    self._save_checkpoint(step, fingerprint, optimizer, scheduler)
        adapter_dir = self._export_adapter()
        model_dir = self._export_model(total)
        return FinetuneResult(
            model_dir=model_dir,
            adapter_dir=adapter_dir,
            steps=step,
            resumed_from=resumed_from,
            losses=losses,
            evaluations=evaluations,
            seconds=time.perf_counter() - started,
        )

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _evaluate(self, held_out: Sequence[Example], log: Path, step: int) -> dict[str, float]:
        self.model.eval()
        try:
            measures = self.objective.run(held_out)["mean"]
        finally:
            self.model.train()
        _append(log, {"step": step, "held_out": measures})
        return measures

    # -- checkpoints -----------------------------------------------------------------------------

    def _fingerprint(self, train: Sequence[Example]) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "base": self.backbone.loaded.source,
            "settings": self.settings.fingerprint(),
            "examples": len(train),
            "data": _data_digest(train),
        }

    def _checkpoints(self) -> list[Path]:
        folder = self.out / "checkpoints"
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.glob("step-*") if (p / _STATE).is_file())

    def _resume(
        self, fingerprint: dict[str, Any], optimizer: Any, scheduler: Any, resume: bool
    ) -> tuple[int, int | None]:
        import torch
        from safetensors.torch import load_file

        checkpoints = self._checkpoints()
        if not checkpoints:
            return 0, None
        if not resume:
            raise ConfigurationError(
                f"{self.out} holds checkpoints of an earlier run; resume it (resume=True, the "
                "default) or choose another output folder."
            )
        latest = checkpoints[-1]
        state = json.loads((latest / _STATE).read_text(encoding="utf-8"))
        if state["fingerprint"] != fingerprint:
            differs = sorted(
                k for k in fingerprint if state["fingerprint"].get(k) != fingerprint[k]
            )
            raise ConfigurationError(
                f"{self.out} holds a run with other {', '.join(differs)}; resume it with the "
                "same model, data and settings, or choose another output folder."
            )
        weights = load_file(latest / _TRAINABLE, device=str(self.device))
        named = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, tensor in weights.items():
                named[name].copy_(tensor)
        saved = torch.load(latest / _OPTIMIZER, map_location=self.device, weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        step = int(state["step"])
        return step, step

    def _save_checkpoint(
        self, step: int, fingerprint: dict[str, Any], optimizer: Any, scheduler: Any
    ) -> None:
        import torch
        from safetensors.torch import save_file

        folder = self.out / "checkpoints"
        final = folder / f"step-{step:06d}"
        staging = folder / f".step-{step:06d}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        trainable = {
            name: p.detach().to("cpu").contiguous()
            for name, p in self.model.named_parameters()
            if p.requires_grad
        }
        save_file(trainable, staging / _TRAINABLE)
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
            staging / _OPTIMIZER,
        )
        state = {"step": step, "fingerprint": fingerprint, "settings": self.settings.to_json()}
        (staging / _STATE).write_text(json.dumps(state, indent=2), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        for old in self._checkpoints()[: -self.settings.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)

    # -- outputs ---------------------------------------------------------------------------------

    def _export_adapter(self) -> Path | None:
        if self.settings.lora is None:
            return None
        adapter = self.out / "adapter"
        self.model.save_pretrained(str(adapter))
        return adapter

    def _export_model(self, steps: int) -> Path:
        loaded = self.backbone.loaded
        if loaded.location is None:
            raise ConfigurationError(
                f"{loaded.source!r} was not loaded from a folder, so its files cannot be copied."
            )
        if self.settings.lora is not None:
            self.model = self.model.merge_and_unload()
            loaded.model = self.model
        marker = json.dumps({"base": loaded.source, "kind": self.kind, "steps": steps})
        return write_checkpoint(
            loaded.location.directory,
            self.model.state_dict(),
            self.out / "model",
            metadata={FINETUNED_MARKER: marker},
        )


def _check_examples(train: Sequence[Example], settings: TrainingSettings) -> None:
    if len(train) < 2:
        raise ConfigurationError(
            f"fine-tuning needs at least 2 training examples, got {len(train)}."
        )
    if settings.batch_size > len(train):
        raise ConfigurationError(
            f"batch_size {settings.batch_size} is larger than the {len(train)} examples."
        )


def _loading(options: dict[str, Any], settings: TrainingSettings) -> PretrainedOptions:
    if "dtype" in options:
        raise ConfigurationError(
            "fine-tuning keeps float32 weights; choose the compute precision with "
            "TrainingSettings(precision=...)."
        )
    loading: Any = {**options, "dtype": "float32"}
    return loading  # type: ignore[no-any-return]


def _autocast_dtype(settings: TrainingSettings, device: torch.device) -> torch.dtype | None:
    import torch

    if settings.precision == "float32":
        return None
    if settings.precision == "bfloat16" or bf16_matmul_in_hardware(device):
        return torch.bfloat16
    return None


def _schedule(warmup: int, total: int) -> Any:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _examples_for(train: Sequence[Example], step: int, count: int, seed: int) -> list[Example]:
    """The examples of update ``step``: epochs of seeded shuffles, read ``count`` at a time."""
    start = step * count
    chosen: list[Example] = []
    for position in range(start, start + count):
        epoch, offset = divmod(position, len(train))
        chosen.append(train[_permutation(len(train), seed, epoch)[offset]])
    return chosen


_PERMUTATIONS: dict[tuple[int, int, int], list[int]] = {}


def _permutation(size: int, seed: int, epoch: int) -> list[int]:
    key = (size, seed, epoch)
    if key not in _PERMUTATIONS:
        order = list(range(size))
        random.Random(f"{seed}:epoch:{epoch}").shuffle(order)
        _PERMUTATIONS.clear()  # one epoch at a time is all a run reads
        _PERMUTATIONS[key] = order
    return _PERMUTATIONS[key]


def _data_digest(train: Sequence[Example]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for example in train:
        for part in _describe(example):
            digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()[:16]


def _describe(example: Example) -> Iterator[str]:
    """Text and file names of every item (pictures in memory by their pixels)."""
    for item in (example.query, *example.positives, None, *example.negatives):
        if item is None:
            yield "|"
            continue
        yield item.text or ""
        for image in item.images:
            if isinstance(image, (str, os.PathLike)):
                yield os.fspath(image)
            elif hasattr(image, "tobytes"):
                import hashlib

                yield hashlib.sha256(image.tobytes()).hexdigest()
            else:
                yield type(image).__name__
        yield item.instruction or ""
    yield example.instruction or ""


def _append(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
