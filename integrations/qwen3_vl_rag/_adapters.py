"""What the LangChain and LlamaIndex adapters share; imports neither framework.

:class:`EngineSettings` is the pydantic base of the four adapter classes: the loading settings,
one spelling for the checkpoint's keyword (unknown keywords raise), a Hub token held as a secret,
and a model that loads on first use and never travels in a pickle. :func:`ranked` orders the
reranker's scores for both rerankers; :class:`MediaScan` is the file and folder scan behind the
image and video loaders and readers.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    SerializerFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from qwen3_vl_rag.defaults import API_KEY_ENV
from qwen3_vl_rag.errors import ConfigurationError
from qwen3_vl_rag.media.references import (
    ImageRoots,
    ascore_with_text_fallback,
    register_image_root,
    score_with_text_fallback,
)

if TYPE_CHECKING:
    from qwen3_vl_rag.inputs import InputItem
    from qwen3_vl_rag.media.budget import MediaBudget
    from qwen3_vl_rag.media.folders import ScanReport
    from qwen3_vl_rag.media.items import MediaItem
    from qwen3_vl_rag.media.sniff import MediaKind
    from qwen3_vl_rag.protocols import EmbeddingEngine, RerankingEngine

__all__ = ["EngineSettings", "EngineSlot", "MediaScan", "aranked", "ranked"]

#: ``from_pretrained`` options that are credentials: held as ``SecretStr``, never shown or dumped.
SECRET_OPTIONS = frozenset({"token"})


class EngineSlot:
    """Holds an adapter's engine, loaded or given.

    A pickle leaves the engine behind (the copy loads its own on first use); a deep copy shares
    it (a loaded model is never copied).
    """

    __slots__ = ("loaded",)

    def __init__(self, loaded: Any = None) -> None:
        self.loaded = loaded

    def __reduce__(self) -> tuple[type[EngineSlot], tuple[()]]:
        return (EngineSlot, ())

    def __deepcopy__(self, memo: dict[int, Any]) -> EngineSlot:
        return EngineSlot(self.loaded)


class EngineSettings(BaseModel):
    """Settings every adapter class has, and how it gets its engine.

    Subclasses name their checkpoint field in ``model_keyword`` (``"model"``, or ``"model_name"``
    for LlamaIndex embeddings); the other framework's spelling is refused with a hint.

    With ``base_url`` the engine is ``from_server``: the checkpoint field is passed as its
    ``model`` only when set explicitly (else the server's own model is used); ``device`` and
    ``dtype`` are ignored (the server runs the model as it was started), and ``model_kwargs``
    are ``from_server`` options. The API key, like a Hub token, is never shown in ``repr`` or
    written in a dump (``model_dump``, ``to_dict``, ``to_json``); a pickle keeps both, so that a
    copy in a worker process can load or connect again.
    """

    model_config = ConfigDict(
        extra="forbid",
        protected_namespaces=(),
        arbitrary_types_allowed=True,
        hide_input_in_errors=True,  # a validation error must not print a Hub token
    )

    model_keyword: ClassVar[str] = "model"

    base_url: str | None = Field(
        default=None,
        description="A vLLM server that runs the model (started with `qwen3-vl-rag serve`), e.g. "
        '"http://127.0.0.1:8000": the forward pass runs there, prompts, pictures and arithmetic '
        "here, so the numbers are the in-process ones. The checkpoint field then names the "
        "checkpoint the client reads its tokenizer from (default: the server's).",
    )
    api_key: SecretStr | None = Field(
        default=None,
        exclude=True,
        description="The server's API key (vLLM --api-key), sent as a bearer token; default: "
        f"the {API_KEY_ENV} environment variable. Never shown in repr nor written in dumps "
        "(a pickle keeps it, so a copy can connect).",
    )
    device: str = Field(
        default="auto",
        description='"auto" (CUDA if present), "cpu", "cuda:0"... (ignored with base_url).',
    )
    dtype: str = Field(
        default="auto",
        description='"auto" (bfloat16 on CUDA and on CPUs with AMX or AVX512-BF16, else '
        'float32), "float32" (the official numbers), "bfloat16"; ignored with base_url (the '
        "server's --dtype decides).",
    )
    batch_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Padded tokens per forward pass (default 16384 on GPU, 2048 on CPU).",
    )
    max_pixels: int | None = Field(
        default=None, ge=1, description="Pixel budget per image (default about 1800 tokens)."
    )
    image_roots: list[Path] = Field(
        default_factory=list,
        description="Folders (or files) whose images and videos documents or nodes may name, "
        "besides those our loaders and readers wrote to or read from in this process. Checked "
        "on the real path (no .. or symlink escapes); any other path in a text is text.",
    )
    allow_remote: bool = Field(
        default=False,
        description="Fetch http(s) image URLs (guarded: private and metadata addresses are "
        "refused, with size and time limits).",
    )
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="More from_pretrained options (revision, cache_dir, token...); a token is "
        "held as a secret: never shown in repr or dumps.",
    )

    _engine: EngineSlot = PrivateAttr(default_factory=EngineSlot)

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        other = "model_name" if cls.model_keyword == "model" else "model"
        if isinstance(data, dict) and other in data and other not in cls.model_fields:
            raise ValueError(
                f"{cls.__name__} takes the checkpoint as `{cls.model_keyword}=`, not `{other}=`."
            )
        return data

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # the URL itself is not repeated: it may hold credentials
            raise ValueError(
                "base_url must be the http:// or https:// address of a vLLM server, e.g. "
                '"http://127.0.0.1:8000".'
            )
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _one_engine(self) -> EngineSettings:
        if self.base_url is not None and getattr(self, "engine", None) is not None:
            raise ValueError(
                f"{type(self).__name__} takes an `engine` or a `base_url`, not both: a server "
                "engine (from_server) is an engine already."
            )
        if self.api_key is not None and self.base_url is None:
            raise ValueError(
                "api_key is sent to the server named by base_url: set base_url too (an engine "
                "from from_server(..., api_key=...) brings its own)."
            )
        return self

    @field_validator("model_kwargs")
    @classmethod
    def _hide_secrets(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _masked(value)

    @field_serializer("model_kwargs")
    def _without_secrets(self, value: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in value.items() if k not in SECRET_OPTIONS}  # never in a dump

    @field_serializer("image_roots")
    def _roots_as_text(self, value: list[Path]) -> list[str]:
        return [str(root) for root in value]  # to_json / from_json round-trip

    @model_serializer(mode="wrap")
    def _server_model_stays_unnamed(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if (
            isinstance(data, dict)
            and self.base_url is not None
            and self.model_keyword not in self.model_fields_set
        ):
            # the server's own model: a copy made from the dump must not name the default one
            data.pop(self.model_keyword, None)
        return data

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name == "model_kwargs" and isinstance(value, dict):
                value = _masked(value)  # also a token put in the dict after validation
            elif name == "api_key" and isinstance(value, str):
                value = SecretStr(value)  # also a key assigned after validation
            yield name, value

    def __getstate__(self) -> dict[Any, Any]:
        """Pickle the settings only: a given ``engine`` stays behind like a loaded one."""
        state: dict[Any, Any] = super().__getstate__()
        fields = state.get("__dict__") or {}
        if fields.get("engine") is not None:
            state = {**state, "__dict__": {**fields, "engine": None}}
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        """Unpickle; the fields the user set stay the ones set (LlamaIndex sets them all)."""
        super().__setstate__(state)
        if "__pydantic_fields_set__" in state:  # with base_url, an unset model is the server's
            object.__setattr__(
                self, "__pydantic_fields_set__", set(state["__pydantic_fields_set__"])
            )

    # -- the engine ------------------------------------------------------------------------------

    def _given(self, engine: object, kind: type[Any]) -> None:
        """Keep a loaded engine passed to ``__init__`` (LlamaIndex classes), checked for kind."""
        if engine is not None and not isinstance(engine, kind):
            raise ConfigurationError(
                f"{type(self).__name__} needs an engine with the methods of {kind.__name__}, "
                f"got {type(engine).__name__}."
            )
        if engine is not None and self.base_url is not None:
            raise ConfigurationError(
                f"{type(self).__name__} takes an `engine` or a `base_url`, not both: a server "
                "engine (from_server) is an engine already."
            )
        self._engine = EngineSlot(engine)

    def _roots(self) -> ImageRoots:
        return ImageRoots.trusting(self.image_roots)

    def _load_options(self) -> dict[str, Any]:
        from qwen3_vl_rag.engine import loading_options

        extra = {
            k: v.get_secret_value() if isinstance(v, SecretStr) else v
            for k, v in self.model_kwargs.items()
        }
        return loading_options(self.device, self.dtype, self.max_pixels, extra)

    def _server_options(self) -> dict[str, Any]:
        """``from_server`` keywords from the fields (the URL aside).

        The checkpoint goes as ``model`` only when the user named one: the default would point
        the client at a model the server may not run, while ``None`` means the server's.
        """
        options: dict[str, Any] = {
            k: v.get_secret_value() if isinstance(v, SecretStr) else v
            for k, v in self.model_kwargs.items()
        }
        if self.max_pixels is not None:
            options["max_pixels"] = self.max_pixels
        named = self.model_keyword in self.model_fields_set
        options["model"] = self._checkpoint() if named else None
        options["api_key"] = _secret(self.api_key) or os.environ.get(API_KEY_ENV) or None
        return options

    def _checkpoint(self) -> str:
        return str(getattr(self, self.model_keyword))

    def _shared_embedder(self) -> EmbeddingEngine:
        """The engine given, or the process's model (or server engine) for these settings."""
        engine: EmbeddingEngine = self._shared_engine("embedder")
        return engine

    def _shared_reranker(self) -> RerankingEngine:
        """The engine given, or the process's model (or server engine) for these settings."""
        engine: RerankingEngine = self._shared_engine("reranker")
        return engine

    def _shared_engine(self, kind: Literal["embedder", "reranker"]) -> Any:
        if self._engine.loaded is None:
            from qwen3_vl_rag import engine as eng

            embedder = kind == "embedder"
            if self.base_url is not None:
                connect = eng.server_embedder if embedder else eng.server_reranker
                self._engine.loaded = connect(self.base_url, **self._server_options())
            else:
                load = eng.shared_embedder if embedder else eng.shared_reranker
                self._engine.loaded = load(self._checkpoint(), **self._load_options())
        return self._engine.loaded

    async def _awaited(self, attribute: str, method: str) -> Any | None:
        """The engine behind ``attribute`` when its ``method`` is to be awaited, else ``None``.

        The engine is loaded or connected in a worker thread (that blocks) the first time.
        ``None``: an in-process model or an engine without async methods; the caller then runs
        the synchronous method in a worker thread, as before.
        """
        from qwen3_vl_rag.engine import awaitable

        engine = await asyncio.to_thread(getattr, self, attribute)
        return engine if awaitable(engine, method) is not None else None


def _secret(value: SecretStr | str | None) -> str | None:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _masked(options: dict[str, Any]) -> dict[str, Any]:
    return {
        k: SecretStr(v) if k in SECRET_OPTIONS and isinstance(v, str) else v
        for k, v in options.items()
    }


def ranked(
    engine: RerankingEngine,
    query: InputItem,
    documents: Sequence[InputItem],
    texts: Sequence[str],
    *,
    instruction: str | None,
    batch_tokens: int | None,
) -> list[tuple[int, float]]:
    """``(index, score)`` of every document, best first (ties keep input order).

    One locked call into the engine; a document whose visual fails there is scored on
    ``texts[index]`` instead, with a warning.
    """
    from qwen3_vl_rag.engine import serialized_calls

    with serialized_calls(engine):
        scores = score_with_text_fallback(
            engine, query, documents, texts, instruction=instruction, batch_tokens=batch_tokens
        )
    return _best_first(scores)


async def aranked(
    engine: RerankingEngine,
    query: InputItem,
    documents: Sequence[InputItem],
    texts: Sequence[str],
    *,
    instruction: str | None,
    batch_tokens: int | None,
) -> list[tuple[int, float]]:
    """:func:`ranked` through the engine's ``ascore`` (an engine that ``awaitable`` accepts)."""
    scores = await ascore_with_text_fallback(
        engine, query, documents, texts, instruction=instruction, batch_tokens=batch_tokens
    )
    return _best_first(scores)


def _best_first(scores: Sequence[float]) -> list[tuple[int, float]]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return [(i, float(scores[i])) for i in order]


class MediaScan:
    """A loader's or reader's scan of a file or folder: its options and its report."""

    def __init__(
        self,
        *,
        recursive: bool = True,
        include_hidden: bool = False,
        budget: MediaBudget | None = None,
    ) -> None:
        """Configure the scan.

        Args:
            recursive: Look in subfolders of a folder.
            include_hidden: Take hidden files (they are reported as skipped otherwise).
            budget: Pixel, frame, byte and time limits.
        """
        self.recursive = recursive
        self.include_hidden = include_hidden
        self.budget = budget
        self.report: ScanReport | None = None

    def _items(
        self,
        root: str | os.PathLike[str],
        kind: MediaKind,
        segment_seconds: float | None = None,
        fps: float | None = None,
    ) -> Iterator[MediaItem]:
        """The items of ``kind`` under ``root``, by absolute path; :attr:`report` fills in.

        ``root`` becomes an image root: the user pointed us there, so its files may be read
        back from documents and nodes in this process.
        """
        from qwen3_vl_rag.media.budget import MediaBudget
        from qwen3_vl_rag.media.folders import stream_items
        from qwen3_vl_rag.media.loaders import MediaOptions

        options = MediaOptions(
            budget=self.budget or MediaBudget(), segment_seconds=segment_seconds, fps=fps
        )
        absolute = Path(root).resolve()
        register_image_root(absolute)
        self.report, items = stream_items(
            absolute,
            options,
            kinds={kind},
            recursive=self.recursive,
            include_hidden=self.include_hidden,
        )
        return items
