"""Let the registry's CUDA-built ``torchvision==0.28.0`` import next to CPU-only torch.

Only the benchmark's sentence-transformers contender needs torchvision (transformers' Qwen3-VL
processor requires it); this library does not. The wheel's C extension cannot load without CUDA
torch, and its import then fails registering fake kernels for two operators whose schemas were
never defined. Defining those two schemas first lets the pure-Python transforms import. It does
nothing when torchvision is absent or loads normally. Import it before transformers.
"""

from __future__ import annotations

import importlib.util
import os

_library = None


def _extension_loads(location: str) -> bool:
    import torch

    for name in os.listdir(location):
        if name.startswith("_C.") and name.endswith(".so"):
            try:
                torch.ops.load_library(os.path.join(location, name))
            except (OSError, RuntimeError):
                return False
            return True
    return False


def install() -> None:
    global _library
    spec = importlib.util.find_spec("torchvision")
    if _library is not None or spec is None or not spec.submodule_search_locations:
        return
    if any(_extension_loads(loc) for loc in spec.submodule_search_locations):
        return
    import torch

    _library = torch.library.Library("torchvision", "FRAGMENT")
    _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


install()
