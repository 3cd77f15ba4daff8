"""What the LangChain and LlamaIndex adapters share; imports neither framework.

:class:`EngineSettings` is the pydantic base of the four adapter classes: the loading settings,
one spelling for the checkpoint's keyword (unknown keywords raise), a Hub token held as a secret,
and a model that loads on first use and never travels in a pickle. :func:`ranked` orders the
reranker's scores for both rerankers; :class:`MediaScan` is the file and folder scan behind the
image and video loaders and readers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)

from qwen3_vl_rag.errors import ConfigurationError
from qwen3_vl_rag.media.references import (
    ImageRoots,
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

__all__ = ["EngineSettings", "EngineSlot", "MediaScan", "ranked"]

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
    """

    model_config = ConfigDict(
        extra="forbid",
        protected_namespaces=(),
        arbitrary_types_allowed=True,
        hide_input_in_errors=True,  # a validation error must not print a Hub token
    )

    model_keyword: ClassVar[str] = "model"

    device: str = Field(default="auto", description='"auto" (CUDA if present), "cpu", "cuda:0"...')
    dtype: str = Field(default="auto", description='"auto" (bfloat16 on CUDA, float32 on CPU).')
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

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name == "model_kwargs" and isinstance(value, dict):
                value = _masked(value)  # also a token put in the dict after validation
            yield name, value

    def __getstate__(self) -> dict[Any, Any]:
        """Pickle the settings only: a given ``engine`` stays behind like a loaded one."""
        state: dict[Any, Any] = super().__getstate__()
        fields = state.get("__dict__") or {}
        if fields.get("engine") is not None:
            state = {**state, "__dict__": {**fields, "engine": None}}
        return state

    # -- the engine ------------------------------------------------------------------------------

    def _given(self, engine: object, kind: type[Any]) -> None:
        """Keep a loaded engine passed to ``__init__`` (LlamaIndex classes), checked for kind."""
        if engine is not None and not isinstance(engine, kind):
            raise ConfigurationError(
                f"{type(self).__name__} needs an engine with the methods of {kind.__name__}, "
                f"got {type(engine).__name__}."
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

    def _checkpoint(self) -> str:
        return str(getattr(self, self.model_keyword))

    def _shared_embedder(self) -> EmbeddingEngine:
        """The engine given, or the process's model for these settings (loaded now if needed)."""
        if self._engine.loaded is None:
            from qwen3_vl_rag import engine as eng

            self._engine.loaded = eng.shared_embedder(self._checkpoint(), **self._load_options())
        engine: EmbeddingEngine = self._engine.loaded
        return engine

    def _shared_reranker(self) -> RerankingEngine:
        """The engine given, or the process's model for these settings (loaded now if needed)."""
        if self._engine.loaded is None:
            from qwen3_vl_rag import engine as eng

            self._engine.loaded = eng.shared_reranker(self._checkpoint(), **self._load_options())
        engine: RerankingEngine = self._engine.loaded
        return engine


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
    from qwen3_vl_rag.engine import model_lock

    with model_lock(engine):
        scores = score_with_text_fallback(
            engine, query, documents, texts, instruction=instruction, batch_tokens=batch_tokens
        )
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
