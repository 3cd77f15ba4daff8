"""``benchmarks/bench_gpu.py`` runs end to end: its CPU smoke mode, and its FLOP counting.

The GPU benchmark is run by hand on a GPU (``make bench-gpu``); these tests keep it from rotting
where no GPU is: the same code on the tiny checkpoints, no timing asserted.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"


def _measure_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_bench_measure", SCRIPT.parent / "_measure.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(600)
def test_the_smoke_mode_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench_gpu.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "integrations"),
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, str(SCRIPT), "--preset", "tiny", "--device", "cpu", "--quick"]
    command += ["--out", str(out), "--cache", str(tmp_path / "models")]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    report = json.loads(out.read_text())
    contenders = {
        "embed-pages": ["ours", "official-chunks8-float32", "official-chunks8-bfloat16"],
        "embed-texts": ["ours", "official-chunks8-float32", "official-chunks8-bfloat16"],
        "rerank-pages": ["ours", "official-per-pair-float32", "official-per-pair-bfloat16"],
    }
    for task, names in contenders.items():
        for who in names:
            row = report["results"][f"{task}/{who}"]
            assert row["items_per_second"] > 0
            assert row["tflop"] > 0
            assert row["fraction_of_bf16_peak"] > 0
            assert row["dtype"] == ("bfloat16" if who.endswith("bfloat16") else "float32")
            if who != "ours":
                assert report["speedup_of_ours"][f"{task}: ours vs {who}"] > 0
    for dtype in ("bfloat16", "float32"):
        assert report["matmul_peak"][dtype]["flops_per_second"] > 0
    # the official usage in float32 computes what ours does (same preprocessing, same precision)
    for name in ("embed-pages/ours", "embed-texts/ours"):
        assert report["results"][name]["agreement_with_official_float32"]["min_cosine"] > 0.99999
    assert (
        report["results"]["rerank-pages/ours"]["agreement_with_official_float32"]["max_abs_diff"]
        < 1e-4
    )
    for unit in ("pages/s", "texts/s", "pairs/s", "of bf16 peak"):
        assert unit in done.stdout


def test_flops_count_attention_on_the_cpu() -> None:
    import torch

    measure = _measure_module()
    query = torch.randn(2, 4, 100, 16)
    key = torch.randn(2, 4, 60, 16)
    _, flops = measure.count_flops(
        lambda: torch.nn.functional.scaled_dot_product_attention(query, key, key)
    )
    assert flops == 2 * (2 * 2 * 4 * 100 * 60 * 16)  # Q @ K^T and P @ V
    _, flops = measure.count_flops(lambda: torch.randn(8, 32) @ torch.randn(32, 4))
    assert flops == 2 * 8 * 32 * 4


def test_agreement_and_the_stated_tolerances() -> None:
    import numpy as np

    measure = _measure_module()
    reference = np.array([[1.0, 0.0], [0.6, 0.8]])
    found = measure.agreement(reference, np.array([[1.0, 0.0], [0.8, 0.6]]))
    assert found["min_cosine"] == pytest.approx(0.96)
    assert found["max_abs_diff"] == pytest.approx(0.2)
    assert not measure.within_tolerance(found, "bfloat16")
    assert measure.within_tolerance({"max_abs_diff": 5e-5}, "float32")
    assert not measure.within_tolerance({"max_abs_diff": 5e-3}, "float32")
    assert measure.within_tolerance({"max_abs_diff": 1e-2}, "bfloat16")  # scores
