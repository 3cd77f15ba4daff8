"""What the client checks when it connects to a vLLM server, before trusting its numbers.

1. ``/v1/models``: the server runs the model asked for (by name or by checkpoint path), and its
   ``--max-model-len``.
2. A forward pass on a short text sent as token ids: the server computes embeddings of the
   checkpoint's width (embedder), or one yes/no logit per pair (reranker: the
   ``Qwen3VLForSequenceClassification`` override).
3. ``/tokenize`` on a text probe, then on one with a small image: the server renders our
   messages to exactly our token ids (embedder: the checkpoint's chat template; reranker: our
   judge template given with ``--chat-template``), and expands the image to our number of vision
   tokens, which it only does when it keeps our pre-resized image (``do_resize: false``).
4. The image probe sent the way an item with images is sent (a chat or ``/score`` request with
   ``mm_processor_kwargs``), which a server refuses without ``--trust-request-mm-kwargs``.

Each failure is a :class:`~qwen3_vl_rag.errors.ServerConfigurationError` naming the flag to fix.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from PIL import Image

from qwen3_vl_rag.engine import _prompts as prompts
from qwen3_vl_rag.engine._encoding import ItemPlan
from qwen3_vl_rag.engine._vision import plan_image
from qwen3_vl_rag.errors import ServerConfigurationError, ServerResponseError

if TYPE_CHECKING:
    from qwen3_vl_rag.engine._http import ServerClient
    from qwen3_vl_rag.engine._remote import RemoteBackbone, ServedModel

__all__ = ["check", "served_model"]

_LAUNCH = "`qwen3-vl-rag serve` starts vLLM with every flag parity needs"
_EMBEDDING_FLAGS = "--runner pooling --trust-request-mm-kwargs"
_RERANKER_OVERRIDES = (
    """--hf-overrides '{"architectures": ["Qwen3VLForSequenceClassification"], """
    """"classifier_from_token": ["no", "yes"], "is_original_qwen3_reranker": true}'"""
)


def served_model(
    client: ServerClient, model: str | os.PathLike[str] | None, served: str | None
) -> ServedModel:
    """The model to call: ``served`` by name, the one started from ``model``, or the only one.

    Raises:
        ServerConfigurationError: The server runs another model, or several and none was named.
    """
    from qwen3_vl_rag.engine._remote import ServedModel

    listing = client.get("/v1/models")
    entries = [e for e in (listing or {}).get("data", []) if isinstance(e, dict) and "id" in e]
    if not entries:
        raise ServerConfigurationError(
            f"the server at {client.url} lists no model at /v1/models; is it a vLLM server?",
            url=client.url,
        )
    found = [
        ServedModel(e["id"], str(e.get("root") or e["id"]), int(e.get("max_model_len") or 0))
        for e in entries
    ]
    described = ", ".join(f"{m.name!r} (from {m.root!r})" for m in found)
    if served is not None:
        chosen = [m for m in found if m.name == served]
        if not chosen:
            raise ServerConfigurationError(
                f"the server at {client.url} serves {described}, not {served!r}.",
                url=client.url,
            )
        return chosen[0]
    if model is not None:
        wanted = os.fspath(model)
        chosen = [m for m in found if wanted in (m.name, m.root) or _same_path(wanted, m.root)]
        if not chosen:
            raise ServerConfigurationError(
                f"the server at {client.url} serves {described}, not {wanted!r}. Start it with "
                f"--model {wanted} ({_LAUNCH}), or, when it is the same checkpoint under another "
                "name or path, pass served_model= the name it serves.",
                url=client.url,
            )
        return chosen[0]
    if len(found) > 1:
        raise ServerConfigurationError(
            f"the server at {client.url} serves several models ({described}); pass "
            "served_model= the one to use.",
            url=client.url,
        )
    return found[0]


def check(backbone: RemoteBackbone) -> None:
    """Run the forward and rendering probes for the backbone's kind.

    Raises:
        ServerConfigurationError: Naming what is wrong and the flag that fixes it.
    """
    with _untrusted_kwargs_named(backbone.client.url):
        if backbone.kind == "embedding":
            _check_embedding(backbone)
        else:
            _check_reranker(backbone)


@contextlib.contextmanager
def _untrusted_kwargs_named(url: str) -> Iterator[None]:
    """A server that refuses our ``do_resize: false`` is a configuration error naming the flag."""
    try:
        yield
    except ServerResponseError as err:
        text = str(err)
        if "mm_processor_kwargs" not in text and "trust-request-mm-kwargs" not in text:
            raise
        raise ServerConfigurationError(
            f"the server at {url} refuses per-request image settings, so it would resize our "
            "images itself (cosine 0.82 from the official vectors). Start it with "
            f"--trust-request-mm-kwargs ({_LAUNCH}).",
            url=url,
        ) from err


def _probe_plan(backbone: RemoteBackbone, text: str) -> ItemPlan:
    """A small image (the fewest vision tokens) and a text: the probe item."""
    vision = backbone.loaded.vision
    side = vision.factor * 2
    image = Image.new("RGB", (side + 6, side), (40, 90, 160))
    return ItemPlan((), (plan_image(image, vision),), text)


def _check_embedding(backbone: RemoteBackbone) -> None:
    client = backbone.client
    encoder = backbone.encoder
    name = backbone.served.name
    instruction = prompts.DEFAULT_DOCUMENT_INSTRUCTION
    text_only = ItemPlan((), (), "probe")
    (sequence,) = encoder.encode_embeddings([text_only], [instruction], 64)
    try:
        response = client.post(
            "/v1/embeddings",
            {"model": name, "input": [sequence.input_ids.tolist()], "use_activation": False},
        )
    except ServerResponseError as err:
        raise ServerConfigurationError(
            f"the server at {client.url} does not compute embeddings for {name!r} "
            f"({err}). Start the embedding model with {_EMBEDDING_FLAGS} "
            f"({_LAUNCH}).",
            url=client.url,
        ) from err
    width = len(response["data"][0]["embedding"])
    if width != backbone.hidden_size:
        raise ServerConfigurationError(
            f"the server at {client.url} returns {width}-dimensional vectors, but "
            f"{backbone.loaded.source!r} has {backbone.hidden_size}: it runs another model.",
            url=client.url,
        )
    text_messages = [
        {"role": "system", "content": instruction},
        {"role": "user", "content": "probe"},
    ]
    tokens = _tokenize(
        client, {"model": name, "messages": text_messages, "add_generation_prompt": True}
    )
    _compare(backbone, tokens, sequence.input_ids.tolist(), with_image=False)
    probe = _probe_plan(backbone, "probe")
    (expected,) = encoder.encode_embeddings([probe], [instruction], 256)
    from qwen3_vl_rag.engine._remote import image_data_url

    messages = [
        {"role": "system", "content": instruction},
        {
            "role": "user",
            "content": [
                {
                    "type": "image_url",
                    "image_url": {"url": image_data_url(probe.images[0], backbone.image_format)},
                },
                {"type": "text", "text": "probe"},
            ],
        },
    ]
    tokens = _tokenize(
        client,
        {"model": name, "messages": messages, "add_generation_prompt": True},
    )
    _compare(backbone, tokens, expected.input_ids.tolist(), with_image=True)
    backbone.last_hidden_states([expected])  # the request an item with images makes


def _check_reranker(backbone: RemoteBackbone) -> None:
    client = backbone.client
    encoder = backbone.encoder
    name = backbone.served.name
    instruction = prompts.DEFAULT_RERANK_INSTRUCTION
    query, document = ItemPlan((), (), "probe query"), ItemPlan((), (), "probe document")
    (pair,) = encoder.encode_pairs([(query, document)], instruction, 256)
    try:
        response = client.post(
            "/classify",
            {"model": name, "input": [pair.input_ids.tolist()], "use_activation": False},
        )
        classes = len(response["data"][0]["probs"])
    except (ServerResponseError, KeyError, IndexError, TypeError) as err:
        classes = -1
        cause: BaseException | None = err
    else:
        cause = None
    if classes != 1:
        raise ServerConfigurationError(
            f"the server at {client.url} does not score yes/no pairs with {name!r}. Start the "
            f"reranker with --runner pooling {_RERANKER_OVERRIDES} ({_LAUNCH}).",
            url=client.url,
        ) from cause
    text_pair = {
        "model": name,
        "messages": [
            {"role": "query", "content": "probe query"},
            {"role": "document", "content": "probe document"},
        ],
        "chat_template_kwargs": {"instruction": instruction},
    }
    _compare(backbone, _tokenize(client, text_pair), pair.input_ids.tolist(), with_image=False)
    probe = _probe_plan(backbone, "probe document")
    (expected,) = encoder.encode_pairs([(query, probe)], instruction, 256)
    document_content = prompts.IMAGE_PLACEHOLDER + "probe document"
    tokens = _tokenize(
        client,
        {
            "model": name,
            "messages": [
                {"role": "query", "content": "probe query"},
                {"role": "document", "content": document_content},
            ],
            "chat_template_kwargs": {"instruction": instruction},
        },
        image=probe,
    )
    _compare(backbone, tokens, expected.input_ids.tolist(), with_image=True)
    backbone.pair_logits([expected])  # the /score request a pair with images makes


def _tokenize(
    client: ServerClient, body: dict[str, Any], *, image: ItemPlan | None = None
) -> list[int]:
    """The server's token ids for a chat request (images expanded as it would expand them)."""
    body = {**body, "mm_processor_kwargs": {"do_resize": False}}
    if image is not None:
        from qwen3_vl_rag.engine._remote import image_data_url

        last = body["messages"][-1]
        last["content"] = [
            {"type": "image_url", "image_url": {"url": image_data_url(image.images[0])}},
            {"type": "text", "text": last["content"]},
        ]
    response = client.post("/tokenize", body)
    return list(response.get("tokens", []))


def _compare(
    backbone: RemoteBackbone, got: list[int], expected: list[int], *, with_image: bool
) -> None:
    """Refuse a server whose tokens for a probe differ from ours, saying which flag fixes it.

    The text-only probe is compared first: a difference there is the template (or tokenizer);
    one that appears only with the image is the server resizing it.
    """
    if got == expected:
        return
    url = backbone.client.url
    pad = backbone.encoder.image_pad_id
    if with_image and got.count(pad) != expected.count(pad):
        raise ServerConfigurationError(
            f"the server at {url} turned a {expected.count(pad)}-token probe image into "
            f"{got.count(pad)} tokens: it resizes images itself. Start it with "
            "--trust-request-mm-kwargs, so that our pre-resized images are kept as they are "
            f"({_LAUNCH}).",
            url=url,
        )
    if backbone.kind == "reranker":
        raise ServerConfigurationError(
            f"the server at {url} does not render the Qwen3-VL-Reranker judge prompt (its "
            "scores would sit near 0.5): start it with --chat-template pointing at our template "
            "(its path: python -c 'from qwen3_vl_rag.serving import reranker_template; "
            f"print(reranker_template())'); {_LAUNCH}.",
            url=url,
        )
    raise ServerConfigurationError(
        f"the server at {url} renders our prompt to other tokens than the checkpoint's chat "
        "template gives here: it runs another tokenizer, or was started with a --chat-template; "
        f"start it without one, on the same checkpoint ({_LAUNCH}).",
        url=url,
    )


def _same_path(first: str, second: str) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False
