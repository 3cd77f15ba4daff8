"""What the hardware computes fast: the precision ``dtype="auto"`` and training's autocast pick.

A CPU computes bfloat16 matrix products in hardware only with AMX or AVX512-BF16. There torch's
bf16 matmul runs about 5x faster than float32 (measured: 620-790 against 100-250 GFLOP/s on two
cores with AMX); everywhere else torch emulates it, about 10x *slower* than float32 (measured on
an AVX2-only AMD EPYC: 0.8 against 8.4 GFLOP/s). So the choice is read from the machine, never
guessed from the model: the instruction flags the kernel reports (Linux's ``/proc/cpuinfo``),
and whether this torch build runs bf16 through oneDNN at all.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["BF16_CPU_FLAGS", "bf16_matmul_in_hardware", "cpu_flags", "flags_do_bf16"]

#: CPU instruction flags (as Linux names them) with which bf16 matrix products run in hardware.
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
_CPUINFO = "/proc/cpuinfo"


def flags_do_bf16(flags: Iterable[str]) -> bool:
    """Whether a CPU with these instruction flags multiplies bfloat16 matrices in hardware.

    Example:
        >>> flags_do_bf16(["avx2", "amx_tile", "amx_bf16"])
        True
        >>> flags_do_bf16(["avx", "avx2", "fma"])
        False
    """
    return bool(BF16_CPU_FLAGS.intersection(flags))


def cpu_flags(cpuinfo: str = _CPUINFO) -> frozenset[str]:
    """The instruction flags of the first CPU in ``cpuinfo`` (empty where there is no such file).

    Example:
        >>> isinstance(cpu_flags(), frozenset)
        True
    """
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            line = next((line for line in handle if line.startswith("flags")), "")
    except OSError:
        return frozenset()
    return frozenset(line.partition(":")[2].split())


def bf16_matmul_in_hardware(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matrix products in hardware.

    CUDA: what torch reports. CPU: AMX or AVX512-BF16 in the CPU's flags, and a torch build
    whose oneDNN runs bf16 (torch's own check agrees with the flags on the builds we ship for).
    Any other device: no.

    Example:
        >>> import torch
        >>> bf16_matmul_in_hardware(torch.device("meta"))
        False
    """
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    return _cpu_bf16()


@functools.cache
def _cpu_bf16() -> bool:
    import torch

    if not flags_do_bf16(cpu_flags()):
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: emulated bf16 only
        return False
