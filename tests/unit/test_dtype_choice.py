"""What ``dtype="auto"`` resolves to: the hardware's choice, the override variable, the errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from qwen3_vl_rag.engine import _hardware, _loading
from qwen3_vl_rag.engine._hardware import cpu_flags, flags_do_bf16
from qwen3_vl_rag.engine._loading import DTYPE_VARIABLE, resolve_dtype
from qwen3_vl_rag.errors import ConfigurationError

CPU = torch.device("cpu")

# the flags lines of two real machines, shortened: an AMX server and an AVX2-only AMD EPYC
AMX_CPUINFO = (
    "processor\t: 0\nvendor_id\t: GenuineIntel\n"
    "flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile amx_int8\n"
)
AVX2_CPUINFO = (
    "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu vme sse sse2 avx f16c avx2 fma\n"
)


@pytest.fixture
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DTYPE_VARIABLE, raising=False)


def test_the_flags_line_of_cpuinfo_is_read(tmp_path: Path) -> None:
    amx, avx2 = tmp_path / "amx", tmp_path / "avx2"
    amx.write_text(AMX_CPUINFO)
    avx2.write_text(AVX2_CPUINFO)
    assert {"amx_bf16", "amx_tile", "avx512_bf16"} <= cpu_flags(str(amx))
    assert flags_do_bf16(cpu_flags(str(amx)))
    assert cpu_flags(str(avx2)) == {"fpu", "vme", "sse", "sse2", "avx", "f16c", "avx2", "fma"}
    assert not flags_do_bf16(cpu_flags(str(avx2)))
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()  # not Linux: no flags, float32


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx512_bf16"}, True),  # AVX512-BF16 alone (AMD Zen 4, Intel Cooper Lake)
        ({"amx_bf16", "amx_tile"}, True),  # AMX (Intel Sapphire Rapids and later)
        ({"avx512f", "avx512bw", "avx2"}, False),  # AVX-512 without BF16: emulated
        (set(), False),
    ],
)
def test_which_flags_mean_bf16_in_hardware(flags: set[str], expected: bool) -> None:
    assert flags_do_bf16(flags) is expected


@pytest.mark.usefixtures("no_override")
@pytest.mark.parametrize(("in_hardware", "expected"), [(True, "bfloat16"), (False, "float32")])
def test_auto_on_the_cpu_follows_the_hardware(
    monkeypatch: pytest.MonkeyPatch, in_hardware: bool, expected: str
) -> None:
    monkeypatch.setattr(_loading, "bf16_matmul_in_hardware", lambda device: in_hardware)
    assert resolve_dtype("auto", CPU) == getattr(torch, expected)


@pytest.mark.usefixtures("no_override")
def test_the_cpu_needs_the_flags_and_a_torch_that_uses_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _hardware._cpu_bf16.cache_clear()
    monkeypatch.setattr(_hardware, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    try:
        assert not _hardware.bf16_matmul_in_hardware(CPU)
        _hardware._cpu_bf16.cache_clear()
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
        assert _hardware.bf16_matmul_in_hardware(CPU)
    finally:
        _hardware._cpu_bf16.cache_clear()


@pytest.mark.usefixtures("no_override")
def test_this_machine_gets_what_its_flags_say() -> None:
    expected = flags_do_bf16(cpu_flags()) and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert resolve_dtype("auto", CPU) == (torch.bfloat16 if expected else torch.float32)


@pytest.mark.parametrize(
    ("value", "expected"), [("float32", "float32"), ("bf16", "bfloat16"), (" auto ", None)]
)
def test_the_variable_sets_what_auto_means(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str | None
) -> None:
    monkeypatch.setenv(DTYPE_VARIABLE, value)
    monkeypatch.setattr(_loading, "bf16_matmul_in_hardware", lambda device: True)
    assert resolve_dtype("auto", CPU) == getattr(torch, expected or "bfloat16")


def test_an_explicit_dtype_wins_over_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DTYPE_VARIABLE, "bfloat16")
    assert resolve_dtype("float32", CPU) == torch.float32
    assert resolve_dtype(torch.float16, CPU) == torch.float16


def test_a_bad_variable_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DTYPE_VARIABLE, "fp8")
    with pytest.raises(ConfigurationError, match=f"environment variable {DTYPE_VARIABLE} 'fp8'"):
        resolve_dtype("auto", CPU)
    with pytest.raises(ConfigurationError, match="unknown dtype 'fp7'"):
        resolve_dtype("fp7", CPU)


def test_other_devices_do_not_claim_bf16() -> None:
    assert not _hardware.bf16_matmul_in_hardware(torch.device("meta"))
