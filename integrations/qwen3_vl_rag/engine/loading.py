"""Loading Qwen3-VL checkpoints: device, dtype and attention choices, safetensors only.

* ``device="auto"`` picks CUDA when available, else the CPU.
* ``dtype="auto"`` is bfloat16 on CUDA (float16 on GPUs without bf16), float32 on the CPU.
* Attention is FlashAttention-2 when the ``flash_attn`` package is installed and the model runs in
  half precision on CUDA, else PyTorch SDPA.
* A Hub id is located before anything loads, without transformers' retries: from the local cache
  when offline mode is on (``HF_HUB_OFFLINE=1`` or ``local_files_only=True``), else with one
  request to the Hub (``HF_HUB_ETAG_TIMEOUT`` seconds at most), falling back to the cache when
  the Hub cannot be reached. Each failure says which of these it is: not in the cache, Hub
  unreachable, or no such model.
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
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from qwen3_vl_rag.engine.vision import VisionSettings
from qwen3_vl_rag.errors import ConfigurationError, ModelLoadError

if TYPE_CHECKING:
    import torch

__all__ = [
    "HubOptions",
    "LoadedModel",
    "PretrainedOptions",
    "load_model",
    "load_score_head",
    "resolve_device",
    "resolve_dtype",
]

logger = logging.getLogger(__name__)

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
    """``"auto"``: bfloat16 on CUDA (float16 where bf16 is unsupported), float32 elsewhere."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    name = _DTYPES.get(str(dtype).lower().removeprefix("torch."))
    if name is None:
        raise ConfigurationError(
            f"unknown dtype {dtype!r}; use 'auto', 'float32', 'bfloat16' or 'float16'."
        )
    resolved: torch.dtype = getattr(torch, name)
    return resolved


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
        dtype: ``"auto"`` (the default: bfloat16 on CUDA, float32 on CPU), or an explicit dtype.
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
    revision: str | None
    cache_dir: str | os.PathLike[str] | None
    local_files_only: bool
    token: str | bool | None


_VISION_KEYS = ("min_pixels", "max_pixels", "total_pixels", "fps", "max_frames")
# A Hub repository id: a name, or a namespace and a name (the Hub's own rules, as a shape).
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(?:/[A-Za-z0-9][\w.-]{0,95})?")


def check_options(options: PretrainedOptions, method: str) -> None:
    """Refuse keys that are not options (a typo must not load with the defaults).

    Raises:
        TypeError: Naming the unknown keys, as Python does for an unknown keyword argument.
    """
    unknown = sorted(set(options) - set(PretrainedOptions.__annotations__))
    if unknown:
        raise TypeError(f"{method}() got unexpected keyword argument(s): {', '.join(unknown)}")


@dataclass(frozen=True)
class HubOptions:
    """Where to find a checkpoint's files: a Hub revision, the cache, the network, a token."""

    revision: str | None = None
    cache_dir: str | os.PathLike[str] | None = None
    local_files_only: bool = False
    token: str | bool | None = field(default=None, repr=False)  # a secret

    @classmethod
    def from_options(cls, options: PretrainedOptions) -> HubOptions:
        """The Hub part of ``from_pretrained`` options."""
        return cls(
            revision=options.get("revision"),
            cache_dir=options.get("cache_dir"),
            local_files_only=options.get("local_files_only", False),
            token=options.get("token"),
        )

    def hub_kwargs(self) -> dict[str, Any]:
        """Keyword arguments understood by every transformers ``from_pretrained``."""
        return {
            "revision": self.revision,
            "cache_dir": self.cache_dir,
            "local_files_only": self.local_files_only,
            "token": self.token,
        }


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
    hub: HubOptions = HubOptions()


def load_model(model_id_or_path: str | os.PathLike[str], options: PretrainedOptions) -> LoadedModel:
    """Load tokenizer and ``Qwen3VLModel`` (no LM head) from a checkpoint.

    Raises:
        ModelLoadError: When the checkpoint is missing, not Qwen3-VL, or has no safetensors;
            for a Hub id, when it is not in the cache while offline, the Hub cannot be
            reached and it is not cached, or the Hub has no such model.
    """
    from transformers import AutoConfig, AutoTokenizer

    source = os.fspath(model_id_or_path)
    resolved_device = resolve_device(options.get("device", "auto"))
    resolved_dtype = resolve_dtype(options.get("dtype", "auto"), resolved_device)
    attention = resolve_attention(
        options.get("attn_implementation"), resolved_device, resolved_dtype
    )
    located = locate(source, HubOptions.from_options(options))
    hub = located.hub_kwargs()
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=False, **hub)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(_load_failure(source, exc)) from exc
    if getattr(config, "model_type", None) != "qwen3_vl":
        raise ModelLoadError(
            f"{source!r} is a {getattr(config, 'model_type', 'unknown')!r} checkpoint; expected a "
            "Qwen3-VL one (model_type 'qwen3_vl'), such as Qwen/Qwen3-VL-Embedding-2B."
        )
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
    return LoadedModel(
        model, tokenizer, config, vision, resolved_device, resolved_dtype, source, located
    )


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


def locate(source: str, hub: HubOptions) -> HubOptions:
    """Decide how a checkpoint's files are found, failing fast with the reason when they are not.

    A local path is used as it is. A Hub id is looked up in the cache when offline mode is on,
    else with one request to the Hub; when the Hub cannot be reached the cached copy is used
    (and the rest of the loading stays off the network), so no retries are ever waited for.

    Returns:
        The options to load with (``local_files_only`` set when only the cache is to be used).

    Raises:
        ModelLoadError: Saying which case it is and what to do.
    """
    if Path(source).exists():
        return hub
    import huggingface_hub

    if not _HUB_ID.fullmatch(source) or "--" in source or ".." in source:
        raise ModelLoadError(
            f"could not load a Qwen3-VL checkpoint from {source!r}: no such directory (and not "
            "a Hub id such as 'Qwen/Qwen3-VL-Embedding-2B')."
        )
    cached = _in_cache(source, hub)
    if hub.local_files_only or huggingface_hub.is_offline_mode():
        if not cached:
            raise ModelLoadError(_not_cached(source, hub))
        return replace(hub, local_files_only=True)
    failure = _ask_hub(source, hub)
    if failure is None:
        return hub
    unreachable, reason = failure
    if unreachable and cached:
        logger.warning("%s; using the cached copy of %r", reason, source)
        return replace(hub, local_files_only=True)
    if unreachable:
        reason += (
            f", and {source!r} is not in the local cache. Check the connection, or use a copy "
            "that is here: pass a local directory, or set HF_HUB_OFFLINE=1 with a model already "
            "in the cache"
        )
    raise ModelLoadError(f"could not load a Qwen3-VL checkpoint from {source!r}: {reason}.")


def _in_cache(source: str, hub: HubOptions) -> bool:
    from huggingface_hub import try_to_load_from_cache

    cache_dir = None if hub.cache_dir is None else os.fspath(hub.cache_dir)
    found = try_to_load_from_cache(
        source, "config.json", cache_dir=cache_dir, revision=hub.revision
    )
    return isinstance(found, str)


def _not_cached(source: str, hub: HubOptions) -> str:
    why = "local_files_only=True" if hub.local_files_only else "HF_HUB_OFFLINE=1 is set"
    revision = f" at revision {hub.revision!r}" if hub.revision else ""
    return (
        f"could not load a Qwen3-VL checkpoint from {source!r}: it is not in the local Hugging "
        f"Face cache{revision}, and {why}, so the Hub is not asked. Download it where there is "
        f"network access (`hf download {source}`, then copy the cache folder over), pass a local "
        "directory, or allow network access"
        + ("." if hub.local_files_only else " (unset HF_HUB_OFFLINE).")
    )


def _ask_hub(source: str, hub: HubOptions) -> tuple[bool, str] | None:
    """One request for the model's info: ``None`` when it is there, else (unreachable, why)."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = constants.ENDPOINT
    try:
        HfApi(endpoint=endpoint).model_info(
            source, revision=hub.revision, token=hub.token, timeout=constants.HF_HUB_ETAG_TIMEOUT
        )
    except GatedRepoError:
        return False, "the model is gated: accept its terms on the Hub and pass token="
    except RepositoryNotFoundError:
        return False, (
            f"no such local directory, and no model {source!r} on the Hub ({endpoint}); check "
            "the id (e.g. 'Qwen/Qwen3-VL-Embedding-2B'), or pass token= for a private one"
        )
    except RevisionNotFoundError:
        return False, f"the model has no revision {hub.revision!r} on the Hub"
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "no"
        return True, f"the Hugging Face Hub ({endpoint}) answered with HTTP status {status}"
    except Exception as exc:  # the HTTP client's connection errors and timeouts
        return True, (
            f"the Hugging Face Hub ({endpoint}) cannot be reached ({type(exc).__name__}: {exc})"
        )
    return None


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
