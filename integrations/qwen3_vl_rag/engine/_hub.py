"""Finding a checkpoint on the Hugging Face Hub, fast, and saying why when it cannot be found.

transformers retries an unreachable Hub for 25 s or more before a message about connecting that
is wrong when offline mode is on. Here a Hub id is located before anything loads:

* offline mode (``HF_HUB_OFFLINE=1``, or ``local_files_only=True``): from the local cache only;
  not there is "not in the local cache", with how to get it there;
* otherwise one request to the Hub (``HF_HUB_ETAG_TIMEOUT`` seconds at most, 10 by default):
  the model is there, or the Hub has no such model (or revision, or it is gated), or the Hub
  cannot be reached; then the cached copy is used when there is one (with a warning, and the
  rest of the loading stays off the network), else the error says so and what to do.

A local path is used as it is; a path that does not exist and cannot be a Hub id is "no such
directory" without asking the Hub.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from qwen3_vl_rag.errors import ModelLoadError

__all__ = ["HubOptions", "locate"]

logger = logging.getLogger(__name__)

# A Hub repository id: a name, or a namespace and a name (the Hub's own rules, as a shape).
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(?:/[A-Za-z0-9][\w.-]{0,95})?")


@dataclass(frozen=True)
class HubOptions:
    """Where to find a checkpoint's files: a Hub revision, the cache, the network, a token.

    Example:
        >>> HubOptions(revision="v1.0", token="hf_not_shown")  # the token stays out of reprs
        HubOptions(revision='v1.0', cache_dir=None, local_files_only=False)
    """

    revision: str | None = None
    cache_dir: str | os.PathLike[str] | None = None
    local_files_only: bool = False
    token: str | bool | None = field(default=None, repr=False)  # a secret

    def hub_kwargs(self) -> dict[str, Any]:
        """Keyword arguments understood by every transformers ``from_pretrained``."""
        return {
            "revision": self.revision,
            "cache_dir": self.cache_dir,
            "local_files_only": self.local_files_only,
            "token": self.token,
        }


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
