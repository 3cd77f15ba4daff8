"""How a fine-tuning run trains: LoRA shape, optimisation, objective and bookkeeping.

The defaults are the Qwen3-VL technical report's (arXiv 2601.04720): LoRA rank 32, alpha 32 on
the language model's q/k/v and MLP projections; InfoNCE with a false-negative margin of 0.1 and
a Matryoshka loss; yes/no cross-entropy for the reranker.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from qwen3_vl_rag.errors import ConfigurationError

__all__ = ["LoraSettings", "TrainingPrecision", "TrainingSettings", "default_matryoshka_dims"]

TrainingPrecision = Literal["auto", "float32", "bfloat16"]

#: The report's LoRA targets: attention q/k/v and the MLP's three projections (language model).
REPORT_TARGETS = ("q_proj", "k_proj", "v_proj", "up_proj", "down_proj", "gate_proj")


@dataclass(frozen=True)
class LoraSettings:
    """A LoRA adapter: rank, scaling and the modules it adapts.

    Args:
        r: Rank of the update matrices.
        alpha: Scaling numerator (the update is scaled by ``alpha / r``).
        dropout: Dropout on the adapter's input during training.
        targets: Module names to adapt (peft's ``target_modules``), or ``"all-linear"``.

    Example:
        >>> from qwen3_vl_rag.finetune import LoraSettings
        >>> LoraSettings().r, LoraSettings().targets[:3]
        (32, ('q_proj', 'k_proj', 'v_proj'))
    """

    r: int = 32
    alpha: int = 32
    dropout: float = 0.0
    targets: tuple[str, ...] | Literal["all-linear"] = REPORT_TARGETS

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha < 1:
            raise ConfigurationError(
                f"LoRA r and alpha must be positive, got {self.r}, {self.alpha}."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigurationError(f"LoRA dropout must be in [0, 1), got {self.dropout}.")
        if not self.targets:
            raise ConfigurationError("LoRA targets are empty: name modules or use 'all-linear'.")


@dataclass(frozen=True)
class TrainingSettings:
    """Everything that decides a fine-tuning run's numbers (and so whether a run can resume).

    Args:
        steps: Optimiser updates; ``None`` runs ``epochs`` passes over the data.
        epochs: Passes over the data when ``steps`` is ``None``.
        batch_size: Examples per forward pass; the embedder's in-batch negatives come from it.
        gradient_accumulation: Forward passes per update (the update then sees
            ``batch_size * gradient_accumulation`` examples; in-batch negatives stay per pass).
        learning_rate: Peak learning rate of AdamW (linear warm-up, then linear decay to 0).
        warmup_ratio: Share of the updates spent warming up.
        weight_decay: AdamW's weight decay.
        max_grad_norm: Gradients are clipped to this norm (``None``: no clipping).
        lora: The adapter to train; ``None`` trains every weight (small models only).
        temperature: InfoNCE temperature on cosine similarities (embedder).
        matryoshka_dims: Prefix sizes the embedder is trained to work at; ``None``: the full
            size and its halvings down to 32 (see :func:`default_matryoshka_dims`).
        false_negative_margin: A candidate scoring above the positive by more than this is
            treated as an unlabelled positive and left out of the loss (the report's 0.1).
        hard_negatives: Hard negatives used per example and step (the first ones of a row).
        precision: ``"auto"``: bfloat16 autocast where the hardware computes it (CUDA with
            bf16, a CPU with AMX or AVX512-BF16), float32 elsewhere; weights stay float32.
        gradient_checkpointing: Recompute activations in the backward pass (less memory).
        eval_every: Evaluate on the held-out examples every this many updates (0: only at
            the start and the end).
        save_every: Write a resumable checkpoint every this many updates.
        keep_checkpoints: How many recent checkpoints to keep on disk.
        seed: Seeds the data order, the choice among several positives, and the adapter.

    Example:
        >>> from qwen3_vl_rag.finetune import TrainingSettings
        >>> settings = TrainingSettings(steps=100, batch_size=16)
        >>> settings.lora.r, settings.temperature, settings.false_negative_margin
        (32, 0.05, 0.1)
    """

    steps: int | None = None
    epochs: float = 1.0
    batch_size: int = 8
    gradient_accumulation: int = 1
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    lora: LoraSettings | None = field(default_factory=LoraSettings)
    temperature: float = 0.05
    matryoshka_dims: tuple[int, ...] | None = None
    false_negative_margin: float = 0.1
    hard_negatives: int = 3
    precision: TrainingPrecision = "auto"
    gradient_checkpointing: bool = False
    eval_every: int = 50
    save_every: int = 50
    keep_checkpoints: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.steps is None or self.steps >= 1, f"steps must be at least 1, got {self.steps}"),
            (self.epochs > 0, f"epochs must be positive, got {self.epochs}"),
            (self.batch_size >= 2, f"batch_size must be at least 2, got {self.batch_size}"),
            (self.gradient_accumulation >= 1, "gradient_accumulation must be at least 1"),
            (self.learning_rate > 0, f"learning_rate must be positive, got {self.learning_rate}"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.temperature > 0, f"temperature must be positive, got {self.temperature}"),
            (self.hard_negatives >= 0, "hard_negatives must be non-negative"),
            (self.eval_every >= 0, "eval_every must be non-negative"),
            (self.save_every >= 1, "save_every must be at least 1"),
            (self.keep_checkpoints >= 1, "keep_checkpoints must be at least 1"),
            (
                self.precision in ("auto", "float32", "bfloat16"),
                f"precision must be 'auto', 'float32' or 'bfloat16', got {self.precision!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigurationError(message + ".")
        if self.matryoshka_dims is not None and (
            not self.matryoshka_dims or min(self.matryoshka_dims) < 1
        ):
            raise ConfigurationError(
                f"matryoshka_dims must be positive sizes, got {self.matryoshka_dims}."
            )

    def total_steps(self, examples: int) -> int:
        """Updates this run makes over ``examples`` training examples."""
        if self.steps is not None:
            return self.steps
        per_update = self.batch_size * self.gradient_accumulation
        return max(1, math.ceil(self.epochs * examples / per_update))

    def fingerprint(self) -> str:
        """A hash of the settings that decide the numbers (not the bookkeeping ones)."""
        data = dataclasses.asdict(self)
        for key in ("eval_every", "save_every", "keep_checkpoints"):
            data.pop(key)
        return _digest(data)

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON-ready data (written next to every checkpoint)."""
        return dataclasses.asdict(self)


def default_matryoshka_dims(hidden: int) -> tuple[int, ...]:
    """The full size and its halvings down to 32: ``2048 -> (2048, 1024, ..., 32)``.

    Example:
        >>> from qwen3_vl_rag.finetune import default_matryoshka_dims
        >>> default_matryoshka_dims(256)
        (256, 128, 64, 32)
    """
    dims = [hidden]
    while dims[-1] % 2 == 0 and dims[-1] // 2 >= 32:
        dims.append(dims[-1] // 2)
    return tuple(dims)


def _digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
