"""The forward pass on a vLLM server; prompts, tokens, pixels and arithmetic stay in the client.

:class:`RemoteBackbone` stands where :class:`~._backbone.Backbone` stands in
:class:`~qwen3_vl_rag.Qwen3VLEmbedder` and :class:`~qwen3_vl_rag.Qwen3VLReranker`: the engines plan,
render, tokenize and cut exactly as in process, and only the forward pass is a request. What the
server returns is the raw model output (``use_activation: false``: the pooled hidden state of
the embedder, the yes-minus-no logit of the reranker), so normalising, Matryoshka truncation,
quantization and the sigmoid run in the same client code as in process.

Requests (measured to match the in-process engine in float32 to about 1e-6):

* a sequence without images: its token ids (``/v1/embeddings`` or ``/classify`` ``input``);
* an embedding with images: a chat conversation (system instruction, images, text) with
  ``add_generation_prompt`` and the images pre-resized here and sent losslessly (BMP or PNG) with
  ``mm_processor_kwargs: {"do_resize": false}`` (:mod:`._served_prompts` makes sure the server's
  tokens will be ours);
* a pair with images: ``/score`` with our judge template on the server.

Connecting runs a handshake (:mod:`._handshake`) that refuses a server set up in a way that
would give other numbers, naming the flag that fixes it.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast

import numpy as np

from qwen3_vl_rag.engine._encoding import EncodedSequence, SequenceEncoder
from qwen3_vl_rag.engine._http import ServerClient
from qwen3_vl_rag.engine._loading import LoadedModel, PretrainedOptions, load_client_side
from qwen3_vl_rag.engine._served_prompts import (
    prompt_text,
    refuse_video,
    split_embedding_prompt,
    split_pair_prompt,
)
from qwen3_vl_rag.engine._vision import ImagePlan, resized_image
from qwen3_vl_rag.errors import (
    ConfigurationError,
    InputError,
    ServerConfigurationError,
    ServerResponseError,
)
from qwen3_vl_rag.serving import ServedKind

if TYPE_CHECKING:
    import torch

__all__ = [
    "ImageFormat",
    "RemoteBackbone",
    "ServedKind",
    "ServedModel",
    "ServerOptions",
    "image_data_url",
]

#: How resized images travel: both lossless. BMP costs no CPU (the bytes go to the network
#: instead); PNG level 1 took 20 ms per megapixel for a flat screenshot and 180 for a noisy
#: picture on this project's CPU, to send a flat screenshot at a few percent of its size.
ImageFormat = Literal["bmp", "png"]

#: Tokens per request (the client's packing; the server batches across requests on its own).
DEFAULT_REQUEST_TOKENS = 16384
_MAX_ITEMS_PER_REQUEST = 64
# Items with images are few per request: each worker decodes, resizes and encodes its own
# while others wait on the server, so the client's work overlaps the server's.
_MAX_IMAGE_ITEMS_PER_REQUEST = 4


class ServerOptions(TypedDict, total=False):
    """How the client reads the checkpoint and talks to the server: ``from_server`` keywords.

    Attributes:
        min_pixels: Lower bound on an image's pixels after resizing (default 4096).
        max_pixels: Upper bound on an image's pixels after resizing (default 1843200).
        total_pixels: Upper bound on a video's frames together (default 7864320).
        fps: Frames per second sampled from video files (default 1.0).
        max_frames: Upper bound on frames per video (default 64).
        batch_tokens: Tokens packed into one request (default 16384).
        timeout: Seconds to wait for one response (default 120).
        max_retries: Retries of a request on 429/502/503/504, resets and timeouts (default 4).
        max_concurrency: Requests in flight at once (default 8).
        image_format: How resized images are sent, both lossless: ``"bmp"`` (the default: no
            encoding work, for a server on the same host or a fast network) or ``"png"``
            (smaller, for a slow link; encoding costs client CPU).
        revision: Hub revision of the checkpoint the client reads its tokenizer from.
        cache_dir: Hugging Face cache directory.
        local_files_only: Never touch the network for the tokenizer files.
        token: Hugging Face token (for gated checkpoints; not the server's API key).
    """

    min_pixels: int | None
    max_pixels: int | None
    total_pixels: int | None
    fps: float | None
    max_frames: int | None
    batch_tokens: int | None
    timeout: float
    max_retries: int
    max_concurrency: int
    image_format: ImageFormat
    revision: str | None
    cache_dir: str | os.PathLike[str] | None
    local_files_only: bool
    token: str | bool | None


_CLIENT_KEYS = ("timeout", "max_retries", "max_concurrency")
_REQUEST_KEYS = ("batch_tokens", "image_format")


@dataclass(frozen=True)
class ServedModel:
    """What the server says it runs (``/v1/models``)."""

    name: str  # the id requests name
    root: str  # the checkpoint it was started with
    max_model_len: int


@dataclass(frozen=True)
class _Request:
    """Sequences sent together, and how."""

    positions: list[int]
    route: Literal["tokens", "chat", "score"]


class RemoteBackbone:
    """A model a vLLM server runs, with the client-side pieces the engines use.

    Use ``Qwen3VLEmbedder.from_server`` or ``Qwen3VLReranker.from_server``; they connect with
    :meth:`connect`.

    Example:
        >>> from qwen3_vl_rag import Qwen3VLEmbedder
        >>> embedder = Qwen3VLEmbedder.from_server("http://127.0.0.1:8000")  # doctest: +SKIP
        >>> embedder.backbone.served.max_model_len >= embedder.max_length  # doctest: +SKIP
        True
    """

    def __init__(
        self,
        loaded: LoadedModel,
        client: ServerClient,
        served: ServedModel,
        kind: ServedKind,
        *,
        batch_tokens: int | None = None,
        image_format: ImageFormat = "bmp",
    ) -> None:
        if image_format not in ("bmp", "png"):
            raise ConfigurationError(f"image_format must be 'bmp' or 'png', got {image_format!r}.")
        self.image_format = image_format
        self.loaded = loaded
        self.client = client
        self.served = served
        self.kind = kind
        self.encoder = SequenceEncoder(loaded.tokenizer)
        self.batch_tokens = int(batch_tokens or DEFAULT_REQUEST_TOKENS)
        if self.batch_tokens < 1:
            raise ConfigurationError(f"batch_tokens must be positive, got {self.batch_tokens}.")

    @classmethod
    def connect(
        cls,
        url: str,
        kind: ServedKind,
        *,
        model: str | os.PathLike[str] | None,
        served_model: str | None,
        api_key: str | None,
        options: ServerOptions,
    ) -> RemoteBackbone:
        """Connect, read the checkpoint's tokenizer and geometry, and run the handshake.

        Raises:
            ServerUnreachableError: Nothing answers at ``url``.
            ServerConfigurationError: The server runs another model, or not with the flags
                parity needs (the message names the flag).
            ModelLoadError: The checkpoint's tokenizer files cannot be read.
        """
        from qwen3_vl_rag.engine import _handshake

        client_options: dict[str, Any] = {k: options[k] for k in _CLIENT_KEYS if k in options}  # type: ignore[literal-required]
        # an OpenAI-style base URL ends in /v1; our routes include it (and /tokenize has none)
        url = url.rstrip("/").removesuffix("/v1")
        client = ServerClient(url, api_key=api_key, **client_options)
        try:
            served = _handshake.served_model(client, model, served_model)
            loading = cast(
                "PretrainedOptions",
                {k: v for k, v in options.items() if k not in (*_CLIENT_KEYS, *_REQUEST_KEYS)},
            )
            source = os.fspath(model) if model is not None else served.root
            loaded = load_client_side(source, loading, server=client.url)
            backbone = cls(
                loaded,
                client,
                served,
                kind,
                batch_tokens=options.get("batch_tokens"),
                image_format=options.get("image_format", "bmp"),
            )
            _handshake.check(backbone)
        except BaseException:
            client.close()
            raise
        return backbone

    @property
    def hidden_size(self) -> int:
        """Width of the model's hidden states (the embedding size)."""
        return int(self.loaded.config.text_config.hidden_size)

    def close(self) -> None:
        """Close the connection pool (the engine also closes it when collected)."""
        self.client.close()

    def max_length_within(self, requested: int | None, default: int, *, suffix: int = 0) -> int:
        """``max_length`` for this server: ``requested``, else ``default`` within its limit.

        ``suffix`` is what a sequence may hold beyond ``max_length`` (the reranker's answer
        suffix).

        Raises:
            ServerConfigurationError: ``requested`` is more than the server's
                ``--max-model-len`` allows (the connection is closed).
        """
        served = self.served.max_model_len
        limit = served - suffix if served else 0
        if requested is None:
            return min(default, limit) if limit > 0 else default
        if 0 < limit < requested:
            self.close()
            raise ServerConfigurationError(
                f"max_length={requested} is more than the server at {self.client.url} takes "
                f"(--max-model-len {served}). Start it with --max-model-len "
                f"{requested + suffix}, or pass a smaller max_length.",
                url=self.client.url,
            )
        return requested

    # -- the embedder's forward --------------------------------------------------------------------

    def last_hidden_states(
        self,
        sequences: Sequence[EncodedSequence],
        *,
        batch_tokens: int | None = None,
        progress: object | None = None,
    ) -> torch.Tensor:
        """Pooled hidden state of each sequence, ``(len(sequences), hidden)`` float32.

        Raises:
            InputError: For an item the server cannot be given unchanged (video, special-token
                strings next to images); nothing is sent then.
            ServerError: When the server cannot be reached or answers with an error.
        """
        import torch

        values = self._run(sequences, batch_tokens, progress, self._embed_request)
        return torch.from_numpy(values.reshape(len(sequences), self.hidden_size))

    async def alast_hidden_states(
        self,
        sequences: Sequence[EncodedSequence],
        *,
        batch_tokens: int | None = None,
        progress: object | None = None,
    ) -> torch.Tensor:
        """:meth:`last_hidden_states` without blocking the event loop."""
        import torch

        values = await self._arun(sequences, batch_tokens, progress, self._embed_request)
        return torch.from_numpy(values.reshape(len(sequences), self.hidden_size))

    # -- the reranker's forward --------------------------------------------------------------------

    def pair_logits(
        self,
        sequences: Sequence[EncodedSequence],
        *,
        batch_tokens: int | None = None,
        progress: object | None = None,
    ) -> np.ndarray:
        """The yes-minus-no logit of each judge prompt, float32 (the score is its sigmoid)."""
        return self._run(sequences, batch_tokens, progress, self._pair_request)

    async def apair_logits(
        self,
        sequences: Sequence[EncodedSequence],
        *,
        batch_tokens: int | None = None,
        progress: object | None = None,
    ) -> np.ndarray:
        """:meth:`pair_logits` without blocking the event loop."""
        return await self._arun(sequences, batch_tokens, progress, self._pair_request)

    # -- requests ----------------------------------------------------------------------------------

    def _plan(
        self, sequences: Sequence[EncodedSequence], batch_tokens: int | None
    ) -> list[_Request]:
        """Check every sequence, then pack them into requests by route and token budget."""
        refuse_video(sequences)
        limit = self.served.max_model_len
        for position, sequence in enumerate(sequences):
            if len(sequence) > limit:  # the engines cut to max_length <= limit: a bug if reached
                raise ConfigurationError(
                    f"item {position} has {len(sequence)} tokens, over the server's "
                    f"--max-model-len {limit}."
                )
        budget = int(batch_tokens or self.batch_tokens)
        text_only = [p for p, s in enumerate(sequences) if not s.parts]
        with_images = [p for p, s in enumerate(sequences) if s.parts]
        requests = [_Request(batch, "tokens") for batch in _packed(text_only, sequences, budget)]
        if self.kind == "reranker":  # one pair per /score request: its query may differ
            requests.extend(_Request([p], "score") for p in with_images)
        else:
            requests.extend(
                _Request(batch, "chat")
                for batch in _packed(with_images, sequences, budget, _MAX_IMAGE_ITEMS_PER_REQUEST)
            )
        return requests

    def _embed_request(
        self, request: _Request, sequences: Sequence[EncodedSequence]
    ) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": self.served.name,
            "use_activation": False,  # the raw pooled state: we normalise as in process
            "encoding_format": "base64",
            "embed_dtype": "float32",
            "endianness": "little",
        }
        if request.route == "tokens":
            body["input"] = [sequences[p].input_ids.tolist() for p in request.positions]
            return "/v1/embeddings", body
        conversations = []
        for position in request.positions:
            served = prompt_text(
                sequences[position],
                self.loaded.tokenizer,
                self.encoder.image_pad_id,
                item_index=position,
            )
            instruction, text = split_embedding_prompt(served.prompt, images=len(served.images))
            content: list[dict[str, Any]] = [self._image_part(plan) for plan in served.images]
            if text:
                content.append({"type": "text", "text": text})
            conversations.append(
                [
                    {"role": "system", "content": instruction},
                    {"role": "user", "content": content},
                ]
            )
        body.update(
            messages=conversations,
            add_generation_prompt=True,
            mm_processor_kwargs={"do_resize": False},  # the images are resized here already
        )
        return "/v1/embeddings", body

    def _pair_request(
        self, request: _Request, sequences: Sequence[EncodedSequence]
    ) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.served.name, "use_activation": False}
        if request.route == "tokens":
            body["input"] = [sequences[p].input_ids.tolist() for p in request.positions]
            return "/classify", body
        (position,) = request.positions  # a pair with images goes alone: its query may differ
        served = prompt_text(
            sequences[position],
            self.loaded.tokenizer,
            self.encoder.image_pad_id,
            item_index=position,
        )
        pair = split_pair_prompt(served)
        body.update(
            queries=[self._side(pair.query_images, pair.query)],
            documents=[self._side(pair.document_images, pair.document)],
            instruction=pair.instruction,
            mm_processor_kwargs={"do_resize": False},
        )
        return "/score", body

    def _image_part(self, plan: ImagePlan) -> dict[str, Any]:
        return {"type": "image_url", "image_url": {"url": image_data_url(plan, self.image_format)}}

    def _side(self, images: Sequence[ImagePlan], text: str) -> str | dict[str, Any]:
        """One side of a pair for ``/score``: its text holds its images' placeholders already."""
        if not images:
            return text
        parts = [self._image_part(plan) for plan in images]
        return {"content": [*parts, {"type": "text", "text": text}]}

    def _run(
        self,
        sequences: Sequence[EncodedSequence],
        batch_tokens: int | None,
        progress: object | None,
        build: Callable[[_Request, Sequence[EncodedSequence]], tuple[str, dict[str, Any]]],
    ) -> np.ndarray:
        out = np.empty((len(sequences), self._width()), dtype=np.float32)
        requests = self._plan(sequences, batch_tokens)

        def send(request: _Request) -> None:
            path, body = build(request, sequences)  # images decode in this worker thread
            self._record(out, request, self.client.post(path, body), progress)

        with ThreadPoolExecutor(max_workers=self.client.max_concurrency) as pool:
            futures = [pool.submit(send, request) for request in requests]
            _, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()  # after a failure, send nothing more
        error = _first_error(futures)
        if error is not None:
            raise error
        return self._shaped(out)

    async def _arun(
        self,
        sequences: Sequence[EncodedSequence],
        batch_tokens: int | None,
        progress: object | None,
        build: Callable[[_Request, Sequence[EncodedSequence]], tuple[str, dict[str, Any]]],
    ) -> np.ndarray:
        out = np.empty((len(sequences), self._width()), dtype=np.float32)
        requests = self._plan(sequences, batch_tokens)
        gate = asyncio.Semaphore(self.client.max_concurrency)

        async def send(request: _Request) -> None:
            async with gate:
                path, body = await asyncio.to_thread(build, request, sequences)
                response = await self.client.apost(path, body)
            self._record(out, request, response, progress)

        tasks = [asyncio.ensure_future(send(request)) for request in requests]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return self._shaped(out)

    def _width(self) -> int:
        return self.hidden_size if self.kind == "embedding" else 1

    def _record(
        self, out: np.ndarray, request: _Request, response: Any, progress: object | None
    ) -> None:
        """A response's rows into their places in ``out``; the progress bar moves on."""
        out[request.positions] = _values(response, len(request.positions), self.client.url)
        if progress is not None:
            progress.update(len(request.positions))  # type: ignore[attr-defined]

    def _shaped(self, out: np.ndarray) -> np.ndarray:
        """Vectors for the embedder, one logit per pair for the reranker."""
        return out if self.kind == "embedding" else out[:, 0]


def _first_error(futures: Sequence[Future[None]]) -> BaseException | None:
    """The error to raise: an input error first (the caller's item, not a symptom of it)."""
    errors = [f.exception() for f in futures if f.done() and not f.cancelled()]
    found = [error for error in errors if error is not None]
    for error in found:
        if isinstance(error, InputError):
            return error
    return found[0] if found else None


def _packed(
    positions: list[int],
    sequences: Sequence[EncodedSequence],
    budget: int,
    most: int = _MAX_ITEMS_PER_REQUEST,
) -> Iterator[list[int]]:
    """Consecutive runs of at most ``most`` positions whose tokens fit in ``budget``."""
    batch: list[int] = []
    tokens = 0
    for position in positions:
        length = len(sequences[position])
        if batch and (len(batch) >= most or tokens + length > budget):
            yield batch
            batch, tokens = [], 0
        batch.append(position)
        tokens += length
    if batch:
        yield batch


def _values(response: Any, count: int, url: str) -> np.ndarray:
    """The float32 rows of an embeddings, classify or score response, in request order."""
    data = response.get("data") if isinstance(response, dict) else None
    if not isinstance(data, list) or len(data) != count:
        raise ServerResponseError(
            f"the server returned {len(data) if isinstance(data, list) else 'no'} results for "
            f"{count} inputs; is it a vLLM server?",
            url=url,
        )
    rows = sorted(data, key=lambda row: int(row.get("index", 0)))
    values = []
    for row in rows:
        if "embedding" in row:
            embedding = row["embedding"]
            if isinstance(embedding, str):
                values.append(np.frombuffer(base64.b64decode(embedding), dtype="<f4"))
            else:
                values.append(np.asarray(embedding, dtype=np.float32))
        elif "probs" in row:
            values.append(np.asarray(row["probs"], dtype=np.float32)[:1])
        else:
            values.append(np.asarray([row["score"]], dtype=np.float32))
    return np.stack(values)


def image_data_url(plan: ImagePlan, image_format: ImageFormat = "bmp") -> str:
    """The planned image, decoded and resized here, as a lossless ``data:`` URL."""
    buffer = io.BytesIO()
    image = resized_image(plan)
    if image_format == "png":
        image.save(buffer, format="PNG", compress_level=1)
    else:
        image.save(buffer, format="BMP")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:image/{image_format};base64,{encoded}"
