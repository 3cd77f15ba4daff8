"""Every exception qwen3-vl-rag raises on purpose.

The hierarchy::

    Qwen3VLRagError                      base of everything below
    ├── InputError (ValueError)          one input item cannot be used; names it, the stage, a fix
    │   ├── UnsupportedInputError        a type or format we do not accept
    │   ├── RemoteInputError             a URL, while remote fetching is not enabled
    │   │   ├── BlockedURLError          a URL refused by the fetch policy (scheme, address...)
    │   │   └── FetchError               a URL that could not be fetched (timeout, HTTP error)
    │   ├── ImageDecodeError             image bytes that cannot be decoded
    │   ├── VideoDecodeError             a video with no decodable frames, or a corrupt container
    │   ├── PdfError                     a PDF that cannot be opened or read
    │   │   └── EncryptedPdfError        a PDF that needs a (different) password
    │   ├── InputTooLargeError           over a budget: pixels, pages, frames or bytes
    │   ├── DecodeTimeoutError           decoding ran past its time budget (the worker was stopped)
    │   ├── DecoderCrashedError          the decoding worker process died (a crash in C code)
    │   ├── SourceChangedError           a file changed between being hashed and read again
    │   └── InputTooLongError            vision tokens (plus the prompt) do not fit in max_length
    ├── ConfigurationError (ValueError)  an argument value that cannot work (dim, precision...)
    │   ├── IndexMismatchError           an index built with another model or settings
    │   └── DatasetError                 a training or evaluation file with bad rows; lists
    │                                    every problem with its file and line
    ├── IndexLockedError (RuntimeError)  another process is writing the index
    ├── IndexCorruptedError (RuntimeError)
    │                                    the store or manifest is damaged; names `rebuild`/`recover`
    ├── IndexStorageError (RuntimeError) the index's disk is full, read-only, or its files vanished
    │   └── StoreUnavailableError        the Chroma server of the index did not answer within
    │                                    the retry time; names the URL and the setting
    ├── ModelLoadError (OSError)         a checkpoint missing, not Qwen3-VL, or not safetensors
    ├── MissingDependencyError (ImportError)
    │                                    an optional extra is missing; names the pip command
    ├── ResourceExhaustedError (RuntimeError)
    │                                    out of memory even for a single item
    ├── ClusterError (RuntimeError)      a Ray cluster unreachable, misconfigured, or failing a
    │                                    run; names the setting to fix
    └── ServerError (RuntimeError)       a model server (vLLM) failed a request; has url, status
        ├── ServerUnreachableError (ConnectionError)
        │                                no connection (or it broke) after the retries; the URL
        ├── ServerTimeoutError (TimeoutError)
        │                                no answer within ``timeout=``, after the retries
        ├── ServerResponseError          an HTTP error or a non-JSON body; the server's text
        └── ServerConfigurationError (ConfigurationError)
                                         the server runs, but not with the flags parity needs

    PrecisionMismatchWarning (UserWarning)
                                         an index searched with queries computed in another dtype
                                         than its vectors (float32 vectors, a bfloat16 query)

Subclassing the builtins keeps framework-level ``except ValueError`` clauses working.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BlockedURLError",
    "ClusterError",
    "ConfigurationError",
    "DatasetError",
    "DecodeTimeoutError",
    "DecoderCrashedError",
    "EncryptedPdfError",
    "FetchError",
    "ImageDecodeError",
    "IndexCorruptedError",
    "IndexLockedError",
    "IndexMismatchError",
    "IndexStorageError",
    "InputError",
    "InputTooLargeError",
    "InputTooLongError",
    "MissingDependencyError",
    "ModelLoadError",
    "PdfError",
    "PrecisionMismatchWarning",
    "Qwen3VLRagError",
    "RemoteInputError",
    "ResourceExhaustedError",
    "ServerConfigurationError",
    "ServerError",
    "ServerResponseError",
    "ServerTimeoutError",
    "ServerUnreachableError",
    "SourceChangedError",
    "StoreUnavailableError",
    "UnsupportedInputError",
    "VideoDecodeError",
]


class Qwen3VLRagError(Exception):
    """Base class of every error raised by qwen3-vl-rag."""


class InputError(Qwen3VLRagError, ValueError):
    """An input item cannot be embedded or scored.

    The message is rendered from the fields whenever it is shown, so a caller may move
    ``item_index`` (a chunked call adds its offset) and ``str(err)`` still agrees.

    Attributes:
        reason: What is wrong, without the item's position, source or hint.
        item_index: Position of the offending item in the call's input list, when known.
        source: A short description of where the item came from (a path, ``"<PIL image>"``...).
        hint: What the caller can do about it.
        stage: What was being done: ``"open"``, ``"render"``, ``"probe"``, ``"decode"``,
            ``"fetch"``... (``None`` when it does not matter).
    """

    def __init__(
        self,
        message: str,
        *,
        item_index: int | None = None,
        source: str | None = None,
        hint: str | None = None,
        stage: str | None = None,
    ) -> None:
        self.reason = message
        self.item_index = item_index
        self.source = source
        self.hint = hint
        self.stage = stage
        super().__init__(message)

    def __str__(self) -> str:
        # Rendered from the fields when shown: a caller that moves ``item_index`` (chunked calls
        # add their offset) or rewrites the reason still gets a message that agrees with them.
        return self._render()

    def _render(self) -> str:
        where = []
        if self.item_index is not None:
            where.append(f"item {self.item_index}")
        if self.source:
            where.append(self.source)
        text = f"{', '.join(where)}: {self.reason}" if where else self.reason
        if self.hint:
            text += f" {self.hint}"
        return text

    def __reduce__(self) -> tuple[object, ...]:
        # keep every field across pickling (errors come back from decoding worker processes)
        return (
            _rebuild_input_error,
            (type(self), self.reason, self.item_index, self.source, self.hint, self.stage),
        )

    def with_item(self, item_index: int) -> InputError:
        """Return the same error, now naming the item's position in the caller's list."""
        if self.item_index is not None:
            return self
        return self.replace(item_index=item_index)

    def replace(self, **changes: Any) -> InputError:
        """A copy of this error (same class, fields and cause) with ``changes`` to its fields.

        Args:
            **changes: New values for ``reason``, ``item_index``, ``source``, ``hint`` or
                ``stage``.

        Example:
            >>> err = ImageDecodeError("not an image.", item_index=1, stage="open")
            >>> str(err.replace(reason="the query: not an image.", item_index=None))
            'the query: not an image.'
            >>> err.replace(item_index=5).stage
            'open'
        """
        fields: dict[str, Any] = {
            "reason": self.reason,
            "item_index": self.item_index,
            "source": self.source,
            "hint": self.hint,
            "stage": self.stage,
        }
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"InputError has no field(s) {sorted(unknown)}")
        fields.update(changes)
        reason = fields.pop("reason")
        err = type(self)(reason, **fields)
        err.__cause__ = self.__cause__
        return err


def _rebuild_input_error(
    cls: type[InputError],
    reason: str,
    item_index: int | None,
    source: str | None,
    hint: str | None,
    stage: str | None,
) -> InputError:
    return cls(reason, item_index=item_index, source=source, hint=hint, stage=stage)


class UnsupportedInputError(InputError):
    """The item's type or format is not one we accept."""


class RemoteInputError(InputError):
    """A remote URL was given but remote fetching is not enabled."""


class BlockedURLError(RemoteInputError):
    """The fetch policy refused a URL: its scheme, its address, or its redirects."""


class FetchError(RemoteInputError):
    """A URL could not be fetched: connection failure, time limit, or an HTTP error status."""


class ImageDecodeError(InputError):
    """The image could not be opened or decoded."""


class VideoDecodeError(InputError):
    """The video could not be opened, or has no decodable frames."""


class PdfError(InputError):
    """The PDF could not be opened or read (or the file is not a PDF)."""


class EncryptedPdfError(PdfError):
    """The PDF is encrypted and no (or a wrong) password was given."""


class InputTooLargeError(InputError):
    """The input exceeds a budget: pixels, pages, frames or bytes."""


class DecodeTimeoutError(InputError):
    """Decoding ran past its time budget; the worker process doing it was stopped."""


class DecoderCrashedError(InputError):
    """The worker process decoding the input died (a crash or out-of-memory in C code)."""


class SourceChangedError(InputError):
    """A file changed between being hashed and being read again (by a worker of a cluster run).

    Its vectors would be recorded under the old content's ids, so the item is not embedded;
    the file is reported and keeps its previous vectors. Index it again once it is stable.
    """


class InputTooLongError(InputError):
    """The item's vision tokens and fixed prompt alone exceed ``max_length``."""


class ConfigurationError(Qwen3VLRagError, ValueError):
    """An argument value that cannot work."""


class IndexMismatchError(ConfigurationError):
    """The index was built with another model, dimension or settings than the ones given."""


class DatasetError(ConfigurationError):
    """A training or evaluation file that cannot be used, with every problem found in it.

    Raised before any model work starts, so that a bad row never stops a run hours later.

    Attributes:
        problems: ``(file, line, reason)`` for each problem; ``line`` is 1-based, 0 when the
            problem is the file itself.

    Example:
        >>> from qwen3_vl_rag.errors import DatasetError
        >>> err = DatasetError([("train.jsonl", 3, "no 'query'"), ("train.jsonl", 9, "bad JSON")])
        >>> print(err)
        2 problems in the data:
          train.jsonl:3: no 'query'
          train.jsonl:9: bad JSON
    """

    _SHOWN = 20

    def __init__(self, problems: list[tuple[str, int, str]]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        lines = [
            f"  {file}:{line}: {reason}" if line else f"  {file}: {reason}"
            for file, line, reason in self.problems[: self._SHOWN]
        ]
        if count > self._SHOWN:
            lines.append(f"  ... and {count - self._SHOWN} more")
        noun = "problem" if count == 1 else "problems"
        super().__init__("\n".join([f"{count} {noun} in the data:", *lines]))


class IndexLockedError(Qwen3VLRagError, RuntimeError):
    """Another process holds the index directory's lock (one writer at a time)."""


class IndexCorruptedError(Qwen3VLRagError, RuntimeError):
    """The index's vector store or manifest is damaged; the message names the fix.

    ``rebuild`` writes the store again from the manifest, ``recover`` the manifest from the store.
    """


class IndexStorageError(Qwen3VLRagError, RuntimeError):
    """The index's files cannot be written or read for a reason outside them.

    The disk is full, the directory is read-only, or files were deleted while the index was
    open. Nothing is damaged by it; the message says what to free, fix or run. (Not an
    ``OSError``: the per-file ``except OSError`` of indexing must not take it for one
    unreadable file and carry on.)
    """


class StoreUnavailableError(IndexStorageError):
    """The Chroma server holding the index's vectors did not answer within the retry time.

    Calls are retried with backoff first; nothing the server acknowledged is lost, and the
    next run completes once it is back. The message names the URL and the setting.
    """


class ModelLoadError(Qwen3VLRagError, OSError):
    """The checkpoint could not be loaded."""


class MissingDependencyError(Qwen3VLRagError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{purpose} needs the optional dependency {package!r}. "
            f'Install it with: pip install "qwen3-vl-rag[{extra}]"'
        )


class ResourceExhaustedError(Qwen3VLRagError, RuntimeError):
    """Out of memory even with a batch of one item.

    Attributes:
        reason: What happened, without the item's position.
        item_index: Position of the item that could not be processed alone.
    """

    def __init__(self, message: str, *, item_index: int | None = None) -> None:
        self.reason = message
        self.item_index = item_index
        super().__init__(message)

    def __str__(self) -> str:
        # from the fields, like InputError: a chunked call moves item_index by its offset
        if self.item_index is None:
            return self.reason
        return f"item {self.item_index}: {self.reason}"

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_resource_error, (type(self), self.reason, self.item_index))


def _rebuild_resource_error(
    cls: type[ResourceExhaustedError], reason: str, item_index: int | None
) -> ResourceExhaustedError:
    return cls(reason, item_index=item_index)


class ClusterError(Qwen3VLRagError, RuntimeError):
    """A Ray cluster could not be reached, or could not run an indexing job.

    The message names the setting to fix (``--ray ADDRESS``, actors, CPUs or GPUs per actor, the
    model's path on the workers). What the run wrote before stays: run it again once fixed.
    """


class ServerError(Qwen3VLRagError, RuntimeError):
    """A model server (vLLM) could not serve a request; the message says why and what to do.

    Messages never hold the API key, nor the request's body.

    Attributes:
        url: The server's base URL (``"http://127.0.0.1:8000"``).
        status: The HTTP status of the answer that failed, or ``None`` when there was none.
    """

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        self.url = url
        self.status = status
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_server_error, (type(self), str(self), self.url, self.status))


def _rebuild_server_error(
    cls: type[ServerError], message: str, url: str, status: int | None
) -> ServerError:
    return cls(message, url=url, status=status)


class ServerUnreachableError(ServerError, ConnectionError):
    """No connection to the server, or the connection broke, on every attempt.

    The server is not running, the URL or port is wrong, or it crashed mid-request.
    """


class ServerTimeoutError(ServerError, TimeoutError):
    """The server did not answer within ``timeout=`` on every attempt."""


class ServerResponseError(ServerError):
    """The server answered with an HTTP error, or with a body that is not JSON.

    A client error (4xx), a server error (500), or still 429/503 after the retries; the message
    holds the status, the path and the server's own error text.
    """


class ServerConfigurationError(ServerError, ConfigurationError):
    """The server runs, but not with the flags parity needs; the message names the flag."""


class PrecisionMismatchWarning(UserWarning):
    """An index searched in another compute dtype than its vectors were made in.

    The search works: the vectors of one model in bfloat16 and float32 are close (README
    "Precision"), but scores move by about 0.001, so a score near a threshold may cross it.
    Load the embedder in the index's dtype for its exact numbers.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", PrecisionMismatchWarning)  # when it is expected
        ...     issubclass(PrecisionMismatchWarning, UserWarning)
        True
    """
