"""Write a fine-tuned model as a checkpoint laid out exactly like the one it started from.

The merged weights keep the base checkpoint's tensor names, shapes and dtypes (and its LM head,
which a reranker scores with), and every other file of the checkpoint (configuration, tokenizer,
processor settings, chat template) is copied unchanged. So anything that loads the base model
loads the fine-tuned one the same way: :meth:`Qwen3VLEmbedder.from_pretrained`, the index, and
vLLM (``qwen3-vl-rag serve --model DIR``).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwen3_vl_rag.errors import ConfigurationError

if TYPE_CHECKING:
    import torch

__all__ = ["FINETUNED_MARKER", "base_tensors", "write_checkpoint"]

#: safetensors metadata key of a checkpoint written here; its value says what it was tuned from.
FINETUNED_MARKER = "qwen3_vl_rag_finetuned"
_WEIGHT_SUFFIXES = (".safetensors",)
_SKIPPED = {"model.safetensors.index.json"}
_SHARD_BYTES = 4 * 1024**3
_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2}


def base_tensors(directory: Path) -> dict[str, tuple[str, str]]:
    """Every tensor of a checkpoint folder: ``name -> (file, dtype)``."""
    from safetensors import safe_open

    index = directory / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    found: dict[str, tuple[str, str]] = {}
    for name in files:
        with safe_open(directory / name, framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                found[key] = (name, handle.get_slice(key).get_dtype())
    return found


def write_checkpoint(
    base: Path,
    state: Mapping[str, torch.Tensor],
    out: Path,
    *,
    metadata: Mapping[str, str],
) -> Path:
    """Write ``state`` (the backbone's ``state_dict``) as a checkpoint shaped like ``base``.

    A base tensor ``model.X`` takes the backbone's ``X``; one the backbone does not hold (the LM
    head) is copied from the base. The folder is written next to ``out`` and moved into place
    at the end, so ``out`` is either the old checkpoint or the whole new one.

    Raises:
        ConfigurationError: When the backbone holds a tensor the base does not, or shapes
            differ (the base is not the model that was trained).
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    tensors = base_tensors(base)
    unused = set(state) - {_backbone_name(name) for name in tensors}
    if unused:
        raise ConfigurationError(
            f"the trained model has tensors the checkpoint {base} lacks ({sorted(unused)[:3]}...)"
            "; fine-tune and export from the same checkpoint."
        )
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for item in base.iterdir():
        if (
            item.is_file()
            and not item.name.endswith(_WEIGHT_SUFFIXES)
            and item.name not in _SKIPPED
        ):
            shutil.copy2(item, staging / item.name)
    shards = list(_shards(tensors, state))
    weight_map: dict[str, str] = {}
    handles: dict[str, Any] = {}
    try:
        for number, names in enumerate(shards, start=1):
            file = (
                "model.safetensors"
                if len(shards) == 1
                else f"model-{number:05d}-of-{len(shards):05d}.safetensors"
            )
            chunk: dict[str, torch.Tensor] = {}
            for name in names:
                source_file, dtype = tensors[name]
                backbone_name = _backbone_name(name)
                if backbone_name in state:
                    tensor = state[backbone_name].detach().to("cpu")
                else:
                    if source_file not in handles:
                        handles[source_file] = safe_open(base / source_file, framework="pt")
                    tensor = handles[source_file].get_tensor(name)
                chunk[name] = tensor.to(_torch_dtype(dtype, torch)).contiguous()
                weight_map[name] = file
            save_file(chunk, staging / file, metadata={"format": "pt", **metadata})
    finally:
        handles.clear()
    if len(shards) > 1:
        (staging / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2), encoding="utf-8"
        )
    if out.exists():
        shutil.rmtree(out)
    os.replace(staging, out)
    return out


def _backbone_name(checkpoint_name: str) -> str:
    """``model.language_model.X`` in a checkpoint is ``language_model.X`` in the backbone."""
    return checkpoint_name.removeprefix("model.")


def _shards(
    tensors: Mapping[str, tuple[str, str]], state: Mapping[str, torch.Tensor]
) -> Iterator[list[str]]:
    """Tensor names in shards of at most 4 GiB (the LM head, copied, is not counted)."""
    shard: list[str] = []
    size = 0
    for name in sorted(tensors):
        tensor = state.get(_backbone_name(name))
        width = _BYTES.get(tensors[name][1], 4)
        nbytes = 0 if tensor is None else tensor.numel() * width
        if shard and size + nbytes > _SHARD_BYTES:
            yield shard
            shard, size = [], 0
        shard.append(name)
        size += nbytes
    if shard:
        yield shard


def _torch_dtype(name: str, torch: Any) -> Any:
    return {
        "F32": torch.float32,
        "BF16": torch.bfloat16,
        "F16": torch.float16,
        "F64": torch.float64,
    }.get(name, torch.float32)
