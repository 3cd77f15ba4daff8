"""``qwen3-vl-rag``: index a folder, search it, see the results.

Commands::

    qwen3-vl-rag index PATH... [--index DIR] [--model ID] [--reranker ID] [--dim N]
                               [--max-pixels N] [--segment-seconds S] [--device D] [--report FILE]
                               [--dtype auto|float32|bfloat16] [--server URL]
    qwen3-vl-rag search "QUERY" [--image IMG] [-k 20] [--top-n 5] [--no-rerank] [--kind page]
                               [--json] [--html out.html] [--quiet] [--dtype auto|float32|...]
                               [--server URL] [--reranker-server URL]
    qwen3-vl-rag status [--json]
    qwen3-vl-rag evaluate DATA_DIR | --index DIR --queries Q.jsonl --qrels QRELS.tsv
                               [--model ID] [--reranker ID] [--k 1,5,10] [--rerank-top 20]
                               [--run-file PATH] [--per-query PATH] [--json] (see its --help)
    qwen3-vl-rag prune
    qwen3-vl-rag rebuild
    qwen3-vl-rag recover [--model ID] [--dim N] [--segment-seconds S]
    qwen3-vl-rag serve [--model ID] [--reranker ID] [--host H] [--port 8000] [--reranker-port P]
                       [--max-model-len N] [--reranker-max-model-len N] [--vllm-python PATH]
                       [--print] [-- VLLM_ARG...]
    qwen3-vl-rag finetune DATA.jsonl --output DIR [--kind embedding|reranker] [--model ID]
                          [--index DIR] [--held-out FILE | --held-out-fraction 0.1] [--steps N]
                          [--batch-size 8] [--learning-rate 1e-4] [--full] [--json] ...
    qwen3-vl-rag --version

Every index command takes ``--chroma-server URL [--collection NAME]`` to keep the vectors on a
Chroma server; ``search`` and ``status`` then need no index directory.

Exit codes: 0 done (every file indexed or unchanged), 1 done in part (files skipped or failed,
listed), 2 nothing done (a usage error, a locked or damaged index, a full disk or read-only
index directory, a model that cannot load, a server that cannot be reached or is set up wrong);
the one-line message says what to do. ``serve`` exits when its vLLM servers have: with the first
non-zero status among them, else 0 (2: vLLM is not installed for the Python that would run it).
Output closed early (``| head``) changes none of this: the work and ``--report`` are complete.
Human output shows control characters in names as escapes and drops them from snippets of page
text (see :mod:`.terminal`). Progress bars are drawn on a terminal only (never into a pipe or a
log file). ``search`` loads the reranker only once the first stage has found something to rerank.

``--server`` / ``--reranker-server`` run the models on vLLM servers (``qwen3-vl-rag serve``) with
the same numbers: an index built either way is searched either way. The servers' API key comes
from the environment (:data:`~qwen3_vl_rag.defaults.API_KEY_ENV`), never from a flag, which
would show in ``ps`` and the shell's history.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import textwrap
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from qwen3_vl_rag import __version__
from qwen3_vl_rag.cli.evaluate import add_evaluate_command, evaluate_command
from qwen3_vl_rag.cli.finetune import add_finetune_command, finetune
from qwen3_vl_rag.cli.models import RerankerOnDemand, random_weights_note
from qwen3_vl_rag.cli.ray_options import RAY_EPILOG, add_ray_options, ray_cluster
from qwen3_vl_rag.cli.serve import add_serve_command, serve
from qwen3_vl_rag.cli.terminal import emit, emit_raw, finish_output, printable, readable
from qwen3_vl_rag.defaults import API_KEY_ENV
from qwen3_vl_rag.defaults import DEFAULT_EMBEDDING_MODEL as DEFAULT_MODEL
from qwen3_vl_rag.defaults import DEFAULT_RERANKER_MODEL as DEFAULT_RERANKER
from qwen3_vl_rag.errors import PrecisionMismatchWarning, Qwen3VLRagError

if TYPE_CHECKING:
    from qwen3_vl_rag.engine import Qwen3VLEmbedder, Qwen3VLReranker

__all__ = ["main"]

DEFAULT_INDEX = ".qwen3vl-index"

EXIT_OK, EXIT_PARTIAL, EXIT_FATAL = 0, 1, 2


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each option's default, unless it has none or its help already says."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qwen3-vl-rag",
        description="Index PDFs, screenshots, images and videos; search them by text or image.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"qwen3-vl-rag {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str, epilog: str | None = None) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, help=text, description=text, epilog=epilog, formatter_class=_HelpFormatter
        )
        sub.add_argument("--index", type=Path, default=Path(DEFAULT_INDEX), help="index directory")
        sub.add_argument(
            "--chroma-server",
            metavar="URL",
            help="keep the vectors on this Chroma server (`chroma run`), e.g. "
            "http://127.0.0.1:8000, instead of in the index directory; searching needs no "
            "index directory then",
        )
        sub.add_argument(
            "--collection",
            help="the collection on --chroma-server (default: qwen3-vl-rag)",
        )
        return sub

    def model_options(sub: argparse.ArgumentParser, *, reranker_server: bool) -> None:
        sub.add_argument(
            "--model",
            default=None,
            help=f"embedding model: a Hub id or a local directory (default: the index's, else "
            f"{DEFAULT_MODEL}); with --server, the checkpoint its tokenizer is read from "
            "(there, default: the server's)",
        )
        sub.add_argument(
            "--reranker",
            default=None,
            help=f"reranker: a Hub id or a local directory (default: the index's, else "
            f"{DEFAULT_RERANKER}"
            + ("; with --reranker-server, default: the server's)" if reranker_server else ")"),
        )
        sub.add_argument(
            "--device", default="auto", help="cuda, cpu or auto (default); not for a server's model"
        )
        sub.add_argument(
            "--dtype",
            default="auto",
            choices=["auto", "float32", "bfloat16", "float16"],
            help="what the models compute in: auto (default: bfloat16 on CUDA and on CPUs with "
            "AMX or AVX512-BF16, else float32), or float32 for the official code's exact "
            "numbers; not for a server's model",
        )
        sub.add_argument(
            "--server",
            metavar="URL",
            help="run the embedding model on this vLLM server (started with `qwen3-vl-rag "
            "serve`), e.g. http://127.0.0.1:8000: the same vectors as in process",
        )
        if reranker_server:
            sub.add_argument(
                "--reranker-server",
                metavar="URL",
                help="run the reranker on this vLLM server (connected when there is something "
                "to rerank)",
            )

    server_key = (
        f"A server's API key (its --api-key), if it has one, is read from the environment "
        f"variable {API_KEY_ENV}; there is no flag for it, since a flag shows in `ps` and "
        "the shell's history."
    )

    index = command(
        "index",
        "index files and folders (unchanged files are skipped)",
        f"{server_key} {RAY_EPILOG}",
    )
    index.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    model_options(index, reranker_server=False)
    index.add_argument(
        "--dim",
        type=int,
        help="store the first N dimensions (Matryoshka; default: all of the model's)",
    )
    index.add_argument(
        "--max-pixels",
        type=int,
        help="pixel budget per page or image "
        "(default: the index's, else 1843200, about 1800 visual tokens)",
    )
    index.add_argument(
        "--segment-seconds",
        type=float,
        help="cut videos into clips this long (default: one item per video)",
    )
    index.add_argument("--report", type=Path, help="write a JSON report of the run here")
    index.add_argument("--quiet", action="store_true", help="no progress bars")
    add_ray_options(index)

    search = command("search", "search the index by text, image or both", server_key)
    search.add_argument("query", nargs="?", default=None, help="what to look for")
    search.add_argument("--image", type=Path, help="an image to look for")
    model_options(search, reranker_server=True)
    search.add_argument("-k", type=int, default=20, help="items recalled (default 20)")
    search.add_argument("--top-n", type=int, default=5, help="results shown (default 5)")
    search.add_argument("--no-rerank", action="store_true", help="vector similarity only")
    search.add_argument("--kind", choices=["page", "image", "video", "clip"], help="only these")
    search.add_argument("--json", action="store_true", help="print JSON")
    search.add_argument("--html", type=Path, help="write an HTML result gallery here")
    search.add_argument(
        "--quiet", action="store_true", help="only the results: no notes, no progress bars"
    )

    status = command("status", "what the index holds")
    status.add_argument("--json", action="store_true", help="print JSON")
    command("prune", "remove files that no longer exist from the index")
    command("rebuild", "write the vector store again from the manifest (after damage)")
    recover = command(
        "recover", "write the manifest again from the vector store (after it was damaged or lost)"
    )
    recover.add_argument(
        "--model",
        help="only for stores that do not record their settings: the model the index was "
        "built with (a Hub id or a local directory)",
    )
    recover.add_argument("--dim", type=int, help="with --model: the index's dimension")
    recover.add_argument(
        "--segment-seconds", type=float, help="with --model: the index's clip length"
    )
    recover.add_argument("--device", default="auto", help="with --model: cuda, cpu or auto")
    add_serve_command(commands, _HelpFormatter)
    add_evaluate_command(commands, _HelpFormatter)
    add_finetune_command(commands, _HelpFormatter)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        handler = {
            "index": _index,
            "search": _search,
            "status": _status,
            "prune": _prune,
            "rebuild": _rebuild,
            "recover": _recover,
            "serve": serve,
            "evaluate": evaluate_command,
            "finetune": finetune,
        }[args.command]
        with _loading_bars(shown=not getattr(args, "quiet", False)):
            code = handler(args)
        finish_output()
        return code
    except Qwen3VLRagError as err:
        message = " ".join(str(err).split())  # one line, whatever a library below wrote
        print(printable(f"error: {type(err).__name__}: {message}"), file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        print(
            "interrupted: what was written is kept; run the command again to finish.",
            file=sys.stderr,
        )
        return EXIT_FATAL


# -- commands ------------------------------------------------------------------------------------


def _index(args: argparse.Namespace) -> int:
    from qwen3_vl_rag.engine import Qwen3VLEmbedder
    from qwen3_vl_rag.index import MultimodalIndex

    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        print(printable(f"error: no such file or folder: {', '.join(missing)}"), file=sys.stderr)
        return EXIT_FATAL
    model, reranker, max_pixels = args.model, args.reranker, args.max_pixels
    if MultimodalIndex.exists(args.index):  # what is not given is the index's own
        with MultimodalIndex(args.index, mode="read", **_store(args)) as built:
            model = model or built.embedding_model()
            reranker = reranker or built.reranker_model()
            max_pixels = max_pixels or built.signature.get("max_pixels")
    model, reranker = model or DEFAULT_MODEL, reranker or DEFAULT_RERANKER
    if args.server:
        _say(args, f"connecting to {args.server} ...")
        embedder = _served_embedder(args.server, args.model, max_pixels)
    else:
        options: dict[str, Any] = {"device": args.device, "dtype": args.dtype}
        if max_pixels:
            options["max_pixels"] = max_pixels
        _say(args, f"loading {model} ...")
        embedder = Qwen3VLEmbedder.from_pretrained(model, **options)
    cluster = ray_cluster(args, embedder)
    with MultimodalIndex(
        args.index, embedder, dim=args.dim, segment_seconds=args.segment_seconds, **_store(args)
    ) as index:
        index.record_reranker(reranker)
        if cluster is not None:
            _say(args, f"embedding on Ray ({cluster.address or 'RAY_ADDRESS, else local'}) ...")
        report = index.index(args.paths, show_progress=_progress_shown(args), cluster=cluster)
    # The report first: whatever then happens to stdout (`| head`), it is written.
    unwritten = _write_report(args.report, report) if args.report else None
    _print_index_report(report, args.index)
    if unwritten:
        print(printable(f"error: {unwritten}"), file=sys.stderr)
        return EXIT_FATAL
    return EXIT_OK if report.complete else EXIT_PARTIAL


def _search(args: argparse.Namespace) -> int:
    from qwen3_vl_rag.engine import Qwen3VLEmbedder
    from qwen3_vl_rag.index import MultimodalIndex

    if not args.query and args.image is None:
        print("error: give a QUERY, an --image, or both.", file=sys.stderr)
        return EXIT_FATAL
    with MultimodalIndex(args.index, mode="read", **_store(args)) as probe:
        max_pixels = probe.signature.get("max_pixels")
        model = args.model or probe.embedding_model() or DEFAULT_MODEL
        recorded_reranker = None if args.reranker or args.no_rerank else probe.reranker_model()
    if args.server:
        embedder = _served_embedder(args.server, args.model, max_pixels)
        model = embedder.model_id
    else:
        embedder = Qwen3VLEmbedder.from_pretrained(
            model, device=args.device, dtype=args.dtype, max_pixels=max_pixels
        )
    models = [model]
    on_demand = None
    if not args.no_rerank:
        if args.reranker_server:  # the checkpoint the server runs, unless named
            on_demand = RerankerOnDemand(
                args.reranker, server=args.reranker_server, api_key=_api_key()
            )
        else:
            name = args.reranker or recorded_reranker or DEFAULT_RERANKER
            on_demand = RerankerOnDemand(name, device=args.device, dtype=args.dtype)
        if on_demand.model is not None:
            models.append(on_demand.model)
    # loaded by the index at its first score() call: only once there are hits to rerank
    reranker = cast("Qwen3VLReranker | None", on_demand)
    note = random_weights_note(models)
    if note and not args.quiet:
        print(printable(f"note: {note}"), file=sys.stderr)
    with MultimodalIndex(args.index, embedder, reranker, mode="read", **_store(args)) as index:
        mismatch = index.precision_mismatch()
        if mismatch and not args.quiet:
            print(printable(f"note: {mismatch}"), file=sys.stderr)
        with warnings.catch_warnings():  # said once, above, as a note
            warnings.simplefilter("ignore", PrecisionMismatchWarning)
            results = index.search(
                args.query,
                args.image,
                k=args.k,
                rerank=not args.no_rerank,
                top_n=args.top_n,
                filters={"kind": args.kind} if args.kind else None,
            )
    if on_demand is not None and on_demand.model is None and on_demand.loaded:
        models.append(on_demand.model_id)  # the reranker server's own checkpoint
    if args.html:
        from qwen3_vl_rag.cli.gallery import write_gallery

        write_gallery(args.html, results, query=args.query, query_image=args.image, models=models)
    if args.json:
        emit_raw(json.dumps([_result_dict(result) for result in results], indent=2))
    else:
        _print_results(args.query, args.image, results)
        if not args.quiet:
            emit(_computed_in(embedder, on_demand))
        if args.html and not args.quiet:
            emit(f"gallery: {args.html}")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from qwen3_vl_rag.index import MultimodalIndex

    with MultimodalIndex(args.index, mode="read", **_store(args)) as index:
        status = index.status()
    if args.json:
        emit_raw(json.dumps(asdict(status), indent=2))
        return EXIT_OK
    size = status.bytes_on_disk / 1024**2
    emit(f"index:     {status.directory}")
    emit(f"model:     {status.model}")
    emit(f"dimension: {status.dimension}")
    emit(f"sources:   {status.sources} ({status.indexed} indexed, {status.failed} failed)")
    emit(f"items:     {status.items} ({status.vectors} vectors)")
    emit(f"vectors:   in {status.vector_store}")
    unknown = "not recorded (an index made before dtypes were)"
    dtypes = " and ".join(status.compute_dtypes) or unknown
    emit(f"computed:  {dtypes}")
    emit(f"size:      {size:.1f} MiB")
    return EXIT_OK


def _prune(args: argparse.Namespace) -> int:
    from qwen3_vl_rag.index import MultimodalIndex

    _require_index(args.index)
    with MultimodalIndex(args.index, **_store(args)) as index:
        report = index.prune()
    emit(f"removed {len(report.sources)} missing file(s), {report.vectors} vector(s)")
    for source in report.sources:
        emit(f"  {source}")
    return EXIT_OK


def _rebuild(args: argparse.Namespace) -> int:
    from qwen3_vl_rag.index import MultimodalIndex

    _require_index(args.index)
    with MultimodalIndex(args.index, **_store(args)) as index:
        written = index.rebuild()
    emit(f"rebuilt the vector store from the manifest: {written} vector(s)")
    return EXIT_OK


def _recover(args: argparse.Namespace) -> int:
    from qwen3_vl_rag.index import MultimodalIndex

    embedder = None
    if args.model:
        from qwen3_vl_rag.engine import Qwen3VLEmbedder

        embedder = Qwen3VLEmbedder.from_pretrained(args.model, device=args.device)
    recovered = MultimodalIndex.recover(
        args.index, embedder, dim=args.dim, segment_seconds=args.segment_seconds, **_store(args)
    )
    print(
        f"recovered the manifest from the vector store: {recovered} item(s); the next `index` "
        "run checks every file once"
    )
    return EXIT_OK


# -- servers -------------------------------------------------------------------------------------


def _store(args: argparse.Namespace) -> dict[str, Any]:
    """Where the index's vectors live: ``--chroma-server`` and ``--collection``."""
    return {"server": args.chroma_server, "collection": args.collection}


def _api_key() -> str | None:
    """The servers' API key, from the environment only (a flag would show in ``ps``)."""
    return os.environ.get(API_KEY_ENV) or None


def _served_embedder(url: str, model: str | None, max_pixels: int | None) -> Qwen3VLEmbedder:
    """The embedding model a vLLM server runs; ``model`` names the checkpoint for the tokenizer.

    Raises:
        ServerError: The server cannot be reached, or runs another model or without the flags
            parity needs (the message names the URL or the flag).
    """
    from qwen3_vl_rag.engine import Qwen3VLEmbedder

    return Qwen3VLEmbedder.from_server(url, model=model, api_key=_api_key(), max_pixels=max_pixels)


# -- output --------------------------------------------------------------------------------------


def _require_index(directory: Path) -> None:
    from qwen3_vl_rag.errors import ConfigurationError
    from qwen3_vl_rag.index import MultimodalIndex

    if not MultimodalIndex.exists(directory):
        raise ConfigurationError(f"{directory} is not an index (no manifest).")


def _progress_shown(args: argparse.Namespace) -> bool:
    """Progress bars only on a terminal: in a pipe or a log file they are lines of noise."""
    return not args.quiet and sys.stderr.isatty()


@contextlib.contextmanager
def _loading_bars(*, shown: bool) -> Iterator[None]:
    """Without ``shown`` (``--quiet``), no download or weight-loading bars from the libraries below.

    They are restored afterwards: ``main`` may run inside a bigger program.
    """
    if shown:
        yield
        return
    from transformers.utils import logging as transformers_logging

    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call] # and the Hub's
    try:
        yield
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def _say(args: argparse.Namespace, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(printable(text), file=sys.stderr)


def _write_report(path: Path, report: Any) -> str | None:
    """Write the JSON report of an ``index`` run; returns why it could not be written, if so."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    except OSError as exc:
        return f"the report could not be written to {path} ({exc.strerror or exc})."
    return None


def _print_index_report(report: Any, index: Path) -> None:
    """The summary of an ``index`` run, then one line per file skipped or failed."""
    counts = report.counts()
    rate = report.embedded / report.seconds if report.seconds else 0.0
    emit(
        f"indexed {counts['indexed']} file(s) ({counts['items']} items), "
        f"unchanged {counts['unchanged']}, skipped {counts['skipped']}, "
        f"failed {counts['failed']}; {report.embedded} embedded, {report.reused} reused, "
        f"{report.deleted} replaced, in {report.seconds:.1f} s ({rate:.1f} items/s) "
        f"-> {index}"
    )
    for outcome in report.files:
        if outcome.status in ("skipped", "failed"):
            where = f" [{outcome.stage}]" if outcome.stage else ""
            error = f"{outcome.error}: " if outcome.error else ""
            emit(f"  {outcome.status}{where} {outcome.path}: {error}{outcome.reason}")


def _result_dict(result: Any) -> dict[str, Any]:
    return {
        "rank": result.rank,
        "score": result.score,
        "vector_score": result.vector_score,
        "rerank_score": result.rerank_score,
        "kind": result.kind,
        "source": result.source,
        "locator": result.locator,
        "id": result.id,
        "thumbnail": str(result.thumbnail) if result.thumbnail else None,
        "stale": result.stale,
        "text": result.text,
        "metadata": dict(result.metadata),
    }


def _computed_in(embedder: Any, reranker: RerankerOnDemand | None) -> str:
    """One line: where and in what dtype the query was embedded (and the hits reranked)."""
    parts = [f"query embedded {_runs_in(embedder)}"]
    if reranker is not None and reranker.loaded:
        parts.append(f"reranked {_runs_in(reranker.load())}")
    return "; ".join(parts)


def _runs_in(engine: Any) -> str:
    if engine.server:
        return f"on {engine.server}"
    return f"in {str(engine.dtype).removeprefix('torch.')} on {engine.device}"


def _print_results(query: str | None, image: Path | None, results: Sequence[Any]) -> None:
    asked = " + ".join(part for part in (f'"{query}"' if query else "", str(image or "")) if part)
    emit(f"{len(results)} result(s) for {asked}")
    if not results:
        return
    emit(f"{'#':>2}  {'score':>6}  {'vector':>6}  {'rerank':>6}  {'kind':5}  source / where")
    for result in results:
        rerank = f"{result.rerank_score:6.3f}" if result.rerank_score is not None else "     -"
        where = f"{result.source}" + (f"  ({result.locator})" if result.locator else "")
        emit(
            f"{result.rank:>2}  {result.score:6.3f}  {result.vector_score:6.3f}  {rerank}  "
            f"{result.kind:5}  {where}"
        )
        if result.stale:
            emit(f"{'':34}stale: {result.stale} (not read)")
        if result.text:
            snippet = readable(result.text)[:110]
            emit(textwrap.indent(snippet, " " * 34))


if __name__ == "__main__":
    sys.exit(main())
