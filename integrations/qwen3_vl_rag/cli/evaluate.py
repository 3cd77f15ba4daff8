"""``qwen3-vl-rag evaluate``: measure retrieval on a BEIR folder, or on an index built already.

Prints nDCG@k, R@k (recall) and RR@10 (MRR@10) for the first stage and, with a reranker, after
reranking; writes the TREC run (``--run-file``) and per-query values (``--per-query``) on
request. A bad data folder is reported whole (every problem with its file and line) before any
model loads; the exit code is then 2, as for any usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwen3_vl_rag.cli.models import random_weights_note
from qwen3_vl_rag.cli.terminal import emit, emit_raw, printable
from qwen3_vl_rag.defaults import API_KEY_ENV, DEFAULT_EMBEDDING_MODEL
from qwen3_vl_rag.errors import DatasetError

if TYPE_CHECKING:
    from qwen3_vl_rag.engine import Qwen3VLEmbedder, Qwen3VLReranker
    from qwen3_vl_rag.evaluate import EvaluationReport

__all__ = ["add_evaluate_command", "evaluate_command"]

_EXIT_OK, _EXIT_USAGE = 0, 2


def add_evaluate_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    formatter_class: type[argparse.HelpFormatter],
) -> None:
    """Register ``evaluate`` among the command's subcommands."""
    text = "measure retrieval (nDCG@k, recall@k, MRR@10) on a BEIR folder or an index"
    sub = commands.add_parser(
        "evaluate",
        help=text,
        description=f"{text}. Give DATA_DIR (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv), or "
        "--index with --queries and --qrels. With --reranker (or --reranker-server), each "
        "query's top --rerank-top are reranked and both stages are reported.",
        epilog="nDCG uses trec_eval's gain (linear in the grade), as ViDoRe and mteb. In qrels "
        "for an index, a corpus-id is an item id, or a file path (relative to the qrels file) "
        "with #page=N for a PDF page. The servers' API key is read from "
        f"{API_KEY_ENV}.",
        formatter_class=formatter_class,
    )
    sub.add_argument("data", nargs="?", type=Path, metavar="DATA_DIR", help="a BEIR folder")
    sub.add_argument("--split", default="test", help="the qrels split: qrels/SPLIT.tsv")
    sub.add_argument("--index", type=Path, help="evaluate this index instead of a BEIR folder")
    sub.add_argument("--queries", type=Path, help="with --index: a queries JSONL file")
    sub.add_argument("--qrels", type=Path, help="with --index: a qrels TSV file")
    sub.add_argument(
        "--model",
        help=f"embedding model: a Hub id or a local directory (default: the index's, else "
        f"{DEFAULT_EMBEDDING_MODEL}); with --server, the checkpoint its tokenizer is read from",
    )
    sub.add_argument("--reranker", help="reranker: a Hub id or a local directory (default: none)")
    sub.add_argument("--server", metavar="URL", help="run the embedding model on this vLLM server")
    sub.add_argument(
        "--reranker-server", metavar="URL", help="run the reranker on this vLLM server"
    )
    sub.add_argument("--device", default="auto", help="cuda, cpu or auto; not for a server's model")
    sub.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="what the models compute in (default auto: bfloat16 where the hardware has it; "
        "float32: the official code's numbers); not for a server's model",
    )
    sub.add_argument("--k", default="1,5,10", help="cut-offs of nDCG and recall, comma-separated")
    sub.add_argument("--rerank-top", type=int, default=20, help="documents reranked per query")
    sub.add_argument("--dim", type=int, help="Matryoshka dimension (not with --index)")
    sub.add_argument(
        "--max-pixels",
        type=int,
        help="pixel budget per page or image (default: the index's, else the models' default, "
        "1843200)",
    )
    sub.add_argument("--run-file", type=Path, help="write the final stage's TREC run here")
    sub.add_argument("--per-query", type=Path, help="write per-query values here (JSON)")
    sub.add_argument("--json", action="store_true", help="print the report as JSON")
    sub.add_argument("--quiet", action="store_true", help="only the results: no notes, no bars")


def evaluate_command(args: argparse.Namespace) -> int:
    """Run ``evaluate``; returns the exit code."""
    usage = _usage_problem(args)
    if usage:
        _stderr(f"error: {usage}")
        return _EXIT_USAGE
    try:
        k_values = [int(part) for part in args.k.split(",") if part.strip()]
    except ValueError:
        _stderr(f"error: --k takes comma-separated integers, got {args.k!r}.")
        return _EXIT_USAGE
    try:
        report = _run_index(args, k_values) if args.index else _run_beir(args, k_values)
    except DatasetError as err:
        for line in str(err).splitlines():
            _stderr(line)
        return _EXIT_USAGE
    _write_outputs(args, report)
    if args.json:
        emit_raw(report.to_json(per_query=False))
    else:
        for line in report.table().splitlines():
            emit(line)
    return _EXIT_OK


def _usage_problem(args: argparse.Namespace) -> str | None:
    if args.index is not None:
        if args.data is not None:
            return "give a DATA_DIR or --index, not both."
        if args.queries is None or args.qrels is None:
            return "--index needs --queries and --qrels."
        if args.dim is not None:
            return "--dim is the index's own: it cannot be changed with --index."
    elif args.data is None:
        return "give a DATA_DIR (a BEIR folder), or --index with --queries and --qrels."
    elif args.queries is not None or args.qrels is not None:
        return "--queries and --qrels go with --index (a BEIR folder holds its own)."
    return None


def _show_progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


def _stderr(text: str) -> None:
    """One line of messages, made terminal-safe (names in it come from the data)."""
    sys.stderr.write(printable(text) + "\n")


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        _stderr(text)


def _api_key() -> str | None:
    return os.environ.get(API_KEY_ENV) or None


def _embedder(args: argparse.Namespace, model: str, max_pixels: int | None) -> Qwen3VLEmbedder:
    from qwen3_vl_rag.engine import Qwen3VLEmbedder

    options: dict[str, Any] = {"max_pixels": max_pixels} if max_pixels else {}
    if args.server:
        _say(args, f"connecting to {args.server} ...")
        return Qwen3VLEmbedder.from_server(
            args.server, model=args.model, api_key=_api_key(), **options
        )
    _say(args, f"loading {model} ...")
    return Qwen3VLEmbedder.from_pretrained(model, device=args.device, dtype=args.dtype, **options)


def _reranker(args: argparse.Namespace, max_pixels: int | None) -> Qwen3VLReranker | None:
    from qwen3_vl_rag.engine import Qwen3VLReranker

    options: dict[str, Any] = {"max_pixels": max_pixels} if max_pixels else {}
    if args.reranker_server:
        return Qwen3VLReranker.from_server(
            args.reranker_server, model=args.reranker, api_key=_api_key(), **options
        )
    if args.reranker:
        _say(args, f"loading {args.reranker} ...")
        return Qwen3VLReranker.from_pretrained(
            args.reranker, device=args.device, dtype=args.dtype, **options
        )
    return None


def _note_random_weights(args: argparse.Namespace, models: list[str | None]) -> None:
    note = random_weights_note([model for model in models if model])
    if note:
        _say(args, f"note: {note}")


def _run_beir(args: argparse.Namespace, k_values: list[int]) -> EvaluationReport:
    from qwen3_vl_rag.evaluate import evaluate, load_beir, standard_measures

    standard_measures(k_values)  # a bad --k or a missing extra: said before anything loads
    with load_beir(args.data, split=args.split) as dataset:  # checked before any model loads
        model = args.model or DEFAULT_EMBEDDING_MODEL
        embedder = _embedder(args, model, args.max_pixels)
        reranker = _reranker(args, args.max_pixels)
        _note_random_weights(args, [None if args.server else model, args.reranker])
        return evaluate(
            embedder,
            dataset,
            reranker=reranker,
            k_values=k_values,
            rerank_top=args.rerank_top,
            dim=args.dim,
            show_progress=_show_progress(args),
        )


def _run_index(args: argparse.Namespace, k_values: list[int]) -> EvaluationReport:
    from qwen3_vl_rag.evaluate import evaluate_index, standard_measures
    from qwen3_vl_rag.index import MultimodalIndex

    standard_measures(k_values)
    with MultimodalIndex(args.index, mode="read") as probe:
        max_pixels = args.max_pixels or probe.signature.get("max_pixels")
        model = args.model or probe.embedding_model() or DEFAULT_EMBEDDING_MODEL
    embedder = _embedder(args, model, max_pixels)
    reranker = _reranker(args, max_pixels)
    _note_random_weights(args, [None if args.server else model, args.reranker])
    with MultimodalIndex(args.index, embedder, reranker, mode="read") as index:
        return evaluate_index(
            index,
            args.queries,
            args.qrels,
            rerank=reranker is not None,
            k_values=k_values,
            rerank_top=args.rerank_top,
            show_progress=_show_progress(args),
        )


def _write_outputs(args: argparse.Namespace, report: EvaluationReport) -> None:
    """The run files and the per-query values, when asked for."""
    if args.run_file:
        args.run_file.parent.mkdir(parents=True, exist_ok=True)
        report.write_trec_run(args.run_file)
        _say(args, f"run ({report.final.name}): {args.run_file}")
        if len(report.stages) > 1:  # the first stage beside it: run.trec -> run.retrieval.trec
            first = report.stages[0].name
            path = args.run_file.with_name(f"{args.run_file.stem}.{first}{args.run_file.suffix}")
            report.write_trec_run(path, first)
            _say(args, f"run ({first}): {path}")
    if args.per_query:
        args.per_query.parent.mkdir(parents=True, exist_ok=True)
        args.per_query.write_text(json.dumps(report.per_query, indent=2) + "\n")
        _say(args, f"per-query values: {args.per_query}")
