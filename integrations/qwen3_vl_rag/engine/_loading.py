"""Loading Qwen3-VL checkpoints: device, dtype and attention choices, safetensors only.

* ``device="auto"`` picks CUDA when available, else the CPU.
* ``dtype="auto"`` is bfloat16 on CUDA (float16 on GPUs without bf16); on the CPU bfloat16 where
  it multiplies bf16 matrices in hardware (AMX, AVX512-BF16: see :mod:`~._hardware`), else float32.
  The environment variable ``QWEN3_VL_RAG_DTYPE`` sets what ``"auto"`` means (``float32``: the
  parity mode everywhere, as the test suite runs); an explicit ``dtype`` always wins.
* Attention is FlashAttention-2 when the ``flash_attn`` package is installed and the model runs in
  half precision on CUDA, else PyTorch SDPA.
* A Hub id is located before anything loads, without transformers' retries (see
  :mod:`~qwen3_vl_rag.engine._hub`).
* Weights load with transformers' Qwen3-VL classes, ``use_safetensors=True`` and never
  ``trust_remote_code``. The reranker's score head is two rows of the LM head read directly from
  the safetensors files, so the 151k-row vocabulary projection is never materialised.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from qwen3_vl_rag.engine._hardware import bf16_matmul_in_hardware
from qwen3_vl_rag.engine._hub import HubOptions, locate
from qwen3_vl_rag.engine._vision import VisionSettings
from qwen3_vl_rag.errors import ConfigurationError, ModelLoadError
from qwen3_vl_rag.model_identity import CheckpointLocation

if TYPE_CHECKING:
    import torch

__all__ = [
    "DTYPE_VARIABLE",
    "HubOptions",
    "LoadedModel",
    "PretrainedOptions",
    "load_client_side",
    "load_model",
    "load_score_head",
    "resolve_device",
    "resolve_dtype",
]

logger = logging.getLogger(__name__)

#: The environment variable that sets what ``dtype="auto"`` means (``float32``, ``bfloat16``...).
DTYPE_VARIABLE = "QWEN3_VL_RAG_DTYPE"

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` means CUDA if available, else CPU; anything else is passed to ``torch.device``."""
    import torch

    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigurationError(f"invalid device {device!r}: {exc}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(
            f"device {device!r} was requested but CUDA is not available; "
            "use device='cpu' or 'auto'."
        )
    return resolved


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype to load in; ``"auto"`` follows ``QWEN3_VL_RAG_DTYPE``, else the hardware.

    ``"auto"`` without the variable: bfloat16 on CUDA (float16 where bf16 is unsupported),
    bfloat16 on a CPU that multiplies it in hardware, float32 elsewhere.

    Raises:
        ConfigurationError: An unknown dtype, in the argument or in ``QWEN3_VL_RAG_DTYPE``.
    """
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        dtype = os.environ.get(DTYPE_VARIABLE, "").strip() or "auto"
        if dtype == "auto":
            return _hardware_dtype(device)
        where = f"the environment variable {DTYPE_VARIABLE}"
    else:
        where = "dtype"
    name = _DTYPES.get(str(dtype).lower().removeprefix("torch."))
    if name is None:
        raise ConfigurationError(
            f"unknown {where} {dtype!r}; use 'auto', 'float32', 'bfloat16' or 'float16'."
        )
    resolved: torch.dtype = getattr(torch, name)
    return resolved


def _hardware_dtype(device: torch.device) -> torch.dtype:
    import torch

    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if bf16_matmul_in_hardware(device) else torch.float32


def resolve_attention(requested: str | None, device: torch.device, dtype: torch.dtype) -> str:
    """FlashAttention-2 when installed and usable, else SDPA; an explicit choice is kept."""
    import torch

    if requested not in (None, "auto"):
        return str(requested)
    half = dtype in (torch.bfloat16, torch.float16)
    if device.type == "cuda" and half and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


class PretrainedOptions(TypedDict, total=False):
    """How to load and run a checkpoint: the options both ``from_pretrained`` methods take.

    ``Qwen3VLEmbedder.from_pretrained`` and ``Qwen3VLReranker.from_pretrained`` accept each key
    as a keyword argument; all are optional.

    Attributes:
        device: ``"auto"`` (the default: CUDA if available, else CPU), ``"cpu"``, ``"cuda:1"``...
        dtype: ``"auto"`` (the default: bfloat16 on CUDA and on CPUs with AMX or AVX512-BF16,
            float32 on other CPUs; ``QWEN3_VL_RAG_DTYPE`` overrides it), or an explicit dtype.
            ``"float32"`` is the parity mode: the official code's default numbers.
        attn_implementation: ``None`` (the default) picks FlashAttention-2 when installed, else
            SDPA.
        min_pixels: Lower bound on an image's pixels after resizing (default 4096).
        max_pixels: Upper bound on an image's pixels after resizing (default 1843200, about
            1800 tokens; lower it for speed, e.g. 602112 for about 600 tokens).
        total_pixels: Upper bound on all frames of a video together (default 7864320).
        fps: Frames sampled per second of a video file (default 1.0).
        max_frames: Upper bound on frames per video (default 64).
        batch_tokens: Padded tokens per forward pass (default 16384 on GPU, 2048 on CPU).
        decode_workers: Threads decoding pixels ahead of the model (default up to 4).
        vision_cache_bytes: Memory for vision encodings kept between calls, keyed by the
            pixels' content, so pages seen again skip the vision tower; same numbers with or
            without it. Default: 1 GiB on the model's device for the reranker, 0 (off) for the
            embedder, which usually sees each page once.
        revision: A Hub branch, tag or commit.
        cache_dir: Hugging Face cache directory.
        local_files_only: Never touch the network (as ``HF_HUB_OFFLINE=1`` does).
        token: Hugging Face token for gated or private repositories.
    """

    device: str | torch.device
    dtype: str | torch.dtype
    attn_implementation: str | None
    min_pixels: int | None
    max_pixels: int | None
    total_pixels: int | None
    fps: float | None
    max_frames: int | None
    batch_tokens: int | None
    decode_workers: int | None
    vision_cache_bytes: int | None
    revision: str | None
    cache_dir: str | os.PathLike[str] | None
    local_files_only: bool
    token: str | bool | None


_VISION_KEYS = ("min_pixels", "max_pixels", "total_pixels", "fps", "max_frames")


def check_options(
    options: Mapping[str, object], method: str, schema: type = PretrainedOptions
) -> None:
    """Refuse keys that are not options of ``schema`` (a typo must not load with the defaults).

    Raises:
        TypeError: Naming the unknown keys, as Python does for an unknown keyword argument.
    """
    unknown = sorted(set(options) - set(schema.__annotations__))
    if unknown:
        raise TypeError(f"{method}() got unexpected keyword argument(s): {', '.join(unknown)}")


@dataclass
class LoadedModel:
    """A Qwen3-VL backbone with its tokenizer and the checkpoint's vision geometry."""

    model: Any
    tokenizer: Any
    config: Any
    vision: VisionSettings
    device: torch.device
    dtype: torch.dtype
    source: str
    hub: HubOptions = field(default_factory=HubOptions)
    location: CheckpointLocation | None = None  # None: not known (a model built in memory)
    server: str | None = None  # the URL of the vLLM server that runs it (``model`` is then None)


def load_model(model_id_or_path: str | os.PathLike[str], options: PretrainedOptions) -> LoadedModel:
    """Load tokenizer and ``Qwen3VLModel`` (no LM head) from a checkpoint.

    Raises:
        ModelLoadError: When the checkpoint is missing, not Qwen3-VL, or has no safetensors;
            for a Hub id, when it is not in the cache while offline, the Hub cannot be
            reached and it is not cached, or the Hub has no such model.
    """
    from transformers import AutoTokenizer

    source = os.fspath(model_id_or_path)
    resolved_device = resolve_device(options.get("device", "auto"))
    resolved_dtype = resolve_dtype(options.get("dtype", "auto"), resolved_device)
    attention = resolve_attention(
        options.get("attn_implementation"), resolved_device, resolved_dtype
    )
    located, config = _located_config(source, options)
    hub = located.hub_kwargs()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False, **hub)
        with _quiet_weight_loading():
            model = _backbone_class().from_pretrained(
                source,
                config=config,
                dtype=resolved_dtype,
                attn_implementation=attention,
                use_safetensors=True,
                trust_remote_code=False,
                **hub,
            )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(_load_failure(source, exc)) from exc
    model.to(resolved_device).eval()
    overrides = {key: options.get(key) for key in _VISION_KEYS}
    vision = _vision_settings(
        config, _read_json(source, "preprocessor_config.json", located), overrides
    )
    logger.info(
        "loaded %s on %s (%s, %s attention)", source, resolved_device, resolved_dtype, attention
    )
    location = _location(source, located)
    return LoadedModel(
        model, tokenizer, config, vision, resolved_device, resolved_dtype, source, located, location
    )


def load_client_side(
    model_id_or_path: str | os.PathLike[str], options: PretrainedOptions, *, server: str
) -> LoadedModel:
    """Everything of a checkpoint but its weights: for a model that a server runs.

    The tokenizer, the configuration and the processor's geometry decide the prompts, the token
    counts and the resized pictures, so the client reads them from the same checkpoint (a few MB
    from the Hub, or a local folder). The weights stay on the server.

    Raises:
        ModelLoadError: As :func:`load_model`, for the configuration and tokenizer files.
    """
    import torch
    from transformers import AutoTokenizer

    source = os.fspath(model_id_or_path)
    located, config = _located_config(source, options)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source, trust_remote_code=False, **located.hub_kwargs()
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(_load_failure(source, exc)) from exc
    overrides = {key: options.get(key) for key in _VISION_KEYS}
    vision = _vision_settings(
        config, _read_json(source, "preprocessor_config.json", located), overrides
    )
    location = _location(source, located)
    if location is not None and not location.local and not _has_weights(location.directory):
        location = None  # only the tokenizer is cached here: identified by name, not fingerprint
    return LoadedModel(
        None,
        tokenizer,
        config,
        vision,
        torch.device("cpu"),  # where the client's arithmetic (normalising, quantizing) runs
        torch.float32,
        source,
        located,
        location,
        server=server,
    )


def _located_config(source: str, options: PretrainedOptions) -> tuple[HubOptions, Any]:
    """Where the checkpoint is (failing fast for the Hub) and its configuration, checked.

    Raises:
        ModelLoadError: Not found, unreadable, or not a Qwen3-VL checkpoint.
    """
    from transformers import AutoConfig

    hub_options = HubOptions(
        revision=options.get("revision"),
        cache_dir=options.get("cache_dir"),
        local_files_only=options.get("local_files_only", False),
        token=options.get("token"),
    )
    located = locate(source, hub_options)
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=False, **located.hub_kwargs())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(_load_failure(source, exc)) from exc
    if getattr(config, "model_type", None) != "qwen3_vl":
        raise ModelLoadError(
            f"{source!r} is a {getattr(config, 'model_type', 'unknown')!r} checkpoint; expected a "
            "Qwen3-VL one (model_type 'qwen3_vl'), such as Qwen/Qwen3-VL-Embedding-2B."
        )
    return located, config


def _has_weights(directory: Path) -> bool:
    return any(directory.glob("*.safetensors"))


@contextlib.contextmanager
def _quiet_weight_loading() -> Iterator[None]:
    """Hide transformers' "Loading weights" bar (a CLI search loads two models); nothing else.

    Downloads keep their bars. The previous tqdm hook is put back afterwards.
    """
    from transformers.utils import logging as hf_logging

    set_hook = getattr(hf_logging, "set_tqdm_hook", None)
    if set_hook is None:  # pragma: no cover - transformers without tqdm hooks
        yield
        return

    def hook(factory: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if kwargs.get("desc") == "Loading weights":
            kwargs = {**kwargs, "disable": True}
        if previous is not None:
            return previous(factory, args, kwargs)
        return factory(*args, **kwargs)

    previous = set_hook(hook)
    try:
        yield
    finally:
        set_hook(previous)


@functools.cache
def _backbone_class() -> Any:
    """``Qwen3VLModel`` that expects the LM head in a checkpoint and quietly skips it."""
    from transformers import Qwen3VLModel

    return type(
        "Qwen3VLBackbone", (Qwen3VLModel,), {"_keys_to_ignore_on_load_unexpected": [r"^lm_head\."]}
    )


def _load_failure(source: str, exc: BaseException) -> str:
    message = f"could not load a Qwen3-VL checkpoint from {source!r}: {exc}"
    text = str(exc).lower()
    if "safetensors" in text or ".bin" in text:
        message += " (only safetensors weights are loaded; pickle files are never used)"
    return message


def _location(source: str, options: HubOptions) -> CheckpointLocation | None:
    """The folder the checkpoint was read from: the local one, or the Hub id's cached snapshot."""
    local = Path(source)
    if local.is_dir():
        directory = local.resolve()
        return CheckpointLocation(str(directory), directory, local=True)
    # just loaded, so in the cache: looked up there, without another request
    config = _resolve_file(source, "config.json", replace(options, local_files_only=True))
    return None if config is None else CheckpointLocation(source, Path(config).parent, local=False)


def _resolve_file(source: str, filename: str, options: HubOptions) -> str | None:
    local = Path(source)
    if local.is_dir():
        candidate = local / filename
        return str(candidate) if candidate.is_file() else None
    from transformers.utils.hub import cached_file

    try:
        return cached_file(
            source, filename, _raise_exceptions_for_missing_entries=False, **options.hub_kwargs()
        )
    except OSError:
        return None


def _read_json(source: str, filename: str, options: HubOptions) -> dict[str, Any]:
    path = _resolve_file(source, filename, options)
    if path is None:
        return {}
    with open(path, encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def _vision_settings(
    config: Any, preprocessor: dict[str, Any], overrides: dict[str, Any]
) -> VisionSettings:
    vision = config.vision_config
    chosen = {key: value for key, value in overrides.items() if value is not None}
    return VisionSettings(
        patch_size=int(vision.patch_size),
        merge_size=int(vision.spatial_merge_size),
        temporal_patch_size=int(vision.temporal_patch_size),
        image_mean=_triple(preprocessor.get("image_mean", (0.5, 0.5, 0.5))),
        image_std=_triple(preprocessor.get("image_std", (0.5, 0.5, 0.5))),
        **chosen,
    )


def _triple(values: Any) -> tuple[float, float, float]:
    first, second, third = (float(v) for v in values)
    return (first, second, third)


def load_score_head(loaded: LoadedModel) -> torch.Tensor:
    """``lm_head[yes] - lm_head[no]`` as a vector, in the model's dtype, on its device.

    Read from the checkpoint's safetensors (``lm_head.weight``), or from the input embeddings
    when the checkpoint ties them (then no ``lm_head.weight`` is stored).

    Raises:
        ModelLoadError: When ``yes``/``no`` are not single tokens of the tokenizer.
    """
    import torch

    vocab = loaded.tokenizer.get_vocab()
    missing = [word for word in ("yes", "no") if word not in vocab]
    if missing:
        raise ModelLoadError(
            f"{loaded.source!r}: the tokenizer has no single token for {missing}; a Qwen3-VL "
            "reranker scores with the 'yes' and 'no' tokens."
        )
    yes, no = vocab["yes"], vocab["no"]
    rows = _lm_head_rows(loaded.source, (yes, no), loaded.hub)
    if rows is None:
        embeddings = loaded.model.get_input_embeddings().weight
        rows = embeddings[[yes, no]].detach()
    # The official code casts both rows to the model dtype and subtracts there.
    rows = rows.to(device=loaded.device, dtype=loaded.dtype)
    with torch.no_grad():
        head: torch.Tensor = rows[0] - rows[1]
    return head


def _lm_head_rows(source: str, ids: tuple[int, int], options: HubOptions) -> torch.Tensor | None:
    import torch
    from safetensors import safe_open

    index_path = _resolve_file(source, "model.safetensors.index.json", options)
    if index_path is not None:
        with open(index_path, encoding="utf-8") as handle:
            shard = json.load(handle)["weight_map"].get("lm_head.weight")
        if shard is None:
            return None
        path = _resolve_file(source, shard, options)
    else:
        path = _resolve_file(source, "model.safetensors", options)
    if path is None:
        return None
    with safe_open(path, framework="pt") as handle:
        if "lm_head.weight" not in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
            return None
        weight = handle.get_slice("lm_head.weight")
        return torch.stack([weight[i : i + 1][0] for i in ids])
