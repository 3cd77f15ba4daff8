"""The training objectives: InfoNCE terms, the false-negative mask, Matryoshka, yes/no."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from qwen3_vl_rag.errors import ConfigurationError
from qwen3_vl_rag.finetune import LoraSettings, TrainingSettings, default_matryoshka_dims
from qwen3_vl_rag.finetune._losses import contrastive_loss, yes_no_loss


def _reference(q: torch.Tensor, d: torch.Tensor, t: float, masked: set[tuple[str, int, int]]):
    """InfoNCE written out term by term: query i against every document and other query."""
    q, d = F.normalize(q, dim=-1), F.normalize(d, dim=-1)
    total = 0.0
    for i in range(q.shape[0]):
        positive = math.exp(float(q[i] @ d[i]) / t)
        others = sum(
            math.exp(float(q[i] @ d[j]) / t)
            for j in range(d.shape[0])
            if j != i and ("d", i, j) not in masked
        )
        others += sum(
            math.exp(float(q[i] @ q[j]) / t)
            for j in range(q.shape[0])
            if j != i and ("q", i, j) not in masked
        )
        total += -math.log(positive / (positive + others))
    return total / q.shape[0]


def test_loss_counts_in_batch_documents_hard_negatives_and_other_queries() -> None:
    torch.manual_seed(0)
    q, p, n = torch.randn(3, 8), torch.randn(3, 8), torch.randn(2, 8)
    loss = contrastive_loss(q, p, n, temperature=10.0, dims=(8,), margin=100.0)
    expected = _reference(q, torch.cat([p, n]), 10.0, set())
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_a_candidate_above_the_positive_plus_margin_is_masked_as_a_false_negative() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 1.0], [0.0, 1.0]])  # query 0's positive: cosine 0.707
    duplicate = torch.tensor([[1.0, 0.0]])  # scores 1.0 for query 0: above 0.707 + 0.1
    loss = contrastive_loss(q, p, duplicate, temperature=1.0, dims=(2,), margin=0.1)
    expected = _reference(q, torch.cat([p, duplicate]), 1.0, {("d", 0, 2)})
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # with a wide margin the same candidate counts, and the loss is higher
    unmasked = contrastive_loss(q, p, duplicate, temperature=1.0, dims=(2,), margin=0.5)
    assert float(unmasked) == pytest.approx(_reference(q, torch.cat([p, duplicate]), 1.0, set()))
    assert float(unmasked) > float(loss)


def test_matryoshka_loss_is_the_mean_over_prefix_sizes() -> None:
    torch.manual_seed(1)
    q, p = torch.randn(4, 16), torch.randn(4, 16)
    empty = torch.empty(0, 16)
    full = contrastive_loss(q, p, empty, temperature=0.5, dims=(16,), margin=9.0)
    half = contrastive_loss(
        q[:, :8], p[:, :8], empty[:, :8], temperature=0.5, dims=(8,), margin=9.0
    )
    both = contrastive_loss(q, p, empty, temperature=0.5, dims=(16, 8), margin=9.0)
    assert float(both) == pytest.approx((float(full) + float(half)) / 2, rel=1e-6)


def test_gradients_reach_queries_and_documents() -> None:
    q = torch.randn(3, 8, requires_grad=True)
    d = torch.randn(3, 8, requires_grad=True)
    contrastive_loss(q, d, torch.empty(0, 8), temperature=0.05, dims=(8, 4), margin=0.1).backward()
    assert q.grad is not None and d.grad is not None
    assert float(q.grad.abs().sum()) > 0 and float(d.grad.abs().sum()) > 0


def test_yes_no_loss_is_the_two_way_cross_entropy_of_the_official_score() -> None:
    logits = torch.tensor([2.0, -1.0, 0.5])  # l_yes - l_no
    labels = torch.tensor([1.0, 0.0, 0.0])
    two_way = torch.stack([torch.zeros(3), logits], dim=1)  # (l_no, l_yes) up to a shift
    expected = F.cross_entropy(two_way, labels.long())
    assert float(yes_no_loss(logits, labels)) == pytest.approx(float(expected), rel=1e-6)


def test_defaults_are_the_reports() -> None:
    settings = TrainingSettings()
    assert settings.lora == LoraSettings(r=32, alpha=32)
    assert settings.lora.targets == (
        "q_proj",
        "k_proj",
        "v_proj",
        "up_proj",
        "down_proj",
        "gate_proj",
    )
    assert settings.false_negative_margin == 0.1
    assert default_matryoshka_dims(2048) == (2048, 1024, 512, 256, 128, 64, 32)
    assert default_matryoshka_dims(64) == (64, 32)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"batch_size": 1}, "batch_size"),
        ({"steps": 0}, "steps"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"temperature": -1}, "temperature"),
        ({"precision": "fp8"}, "precision"),
        ({"matryoshka_dims": (0,)}, "matryoshka_dims"),
    ],
)
def test_settings_that_cannot_work_are_refused(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        TrainingSettings(**kwargs)  # type: ignore[arg-type]


def test_total_steps_follow_epochs_batch_and_accumulation() -> None:
    assert TrainingSettings(batch_size=4, gradient_accumulation=2).total_steps(20) == 3
    assert TrainingSettings(batch_size=4, epochs=2).total_steps(20) == 10
    assert TrainingSettings(steps=7).total_steps(20) == 7
