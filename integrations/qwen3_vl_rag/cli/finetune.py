"""``qwen3-vl-rag finetune``: LoRA fine-tuning of the embedder or the reranker from a JSONL file.

The data file is read and checked whole before any model loads (a bad row is reported with its
line number, and nothing runs). With ``--index``, the file holds queries and the index items
that answer them, and hard negatives are mined from the index by the technical report's filter.
A run resumes from its last checkpoint when started again with the same output folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from typing import Any

from qwen3_vl_rag.cli.terminal import emit, emit_raw, printable

__all__ = ["add_finetune_command", "finetune"]


def add_finetune_command(commands: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Register ``finetune`` on the command line's sub-parsers."""
    from qwen3_vl_rag.defaults import DEFAULT_EMBEDDING_MODEL, DEFAULT_RERANKER_MODEL

    parser = commands.add_parser(
        "finetune",
        help="fine-tune the embedder or the reranker on your own query/document pairs",
        description=__doc__,
        formatter_class=formatter,
    )
    parser.add_argument("data", type=Path, help="training rows (JSONL; see README)")
    parser.add_argument("--output", type=Path, required=True, help="folder for the run")
    parser.add_argument(
        "--kind", choices=["embedding", "reranker"], default="embedding", help="model to train"
    )
    parser.add_argument(
        "--model",
        help=f"checkpoint to start from (default: {DEFAULT_EMBEDDING_MODEL} or "
        f"{DEFAULT_RERANKER_MODEL})",
    )
    parser.add_argument(
        "--index",
        type=Path,
        help="mine hard negatives from this index; DATA then names each query's positives",
    )
    held = parser.add_mutually_exclusive_group()
    held.add_argument("--held-out", type=Path, help="rows to evaluate on (JSONL, same format)")
    held.add_argument(
        "--held-out-fraction",
        type=float,
        default=0.1,
        help="share of DATA kept out of training to evaluate on (0: none)",
    )
    parser.add_argument("--steps", type=int, help="updates (default: one pass over the data)")
    parser.add_argument(
        "--epochs", type=float, default=1.0, help="passes when --steps is not given"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="examples per forward pass")
    parser.add_argument(
        "--gradient-accumulation", type=int, default=1, help="forward passes per update"
    )
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="peak learning rate")
    parser.add_argument("--lora-r", type=int, default=32, help="LoRA rank")
    parser.add_argument("--lora-alpha", type=int, default=32, help="LoRA alpha")
    parser.add_argument(
        "--full", action="store_true", help="train every weight instead of a LoRA adapter"
    )
    parser.add_argument("--temperature", type=float, default=0.05, help="InfoNCE temperature")
    parser.add_argument(
        "--matryoshka-dims",
        help="comma-separated sizes to train (default: the full size and its halvings to 32)",
    )
    parser.add_argument(
        "--hard-negatives", type=int, default=3, help="hard negatives per example and step"
    )
    parser.add_argument(
        "--precision",
        choices=["auto", "float32", "bfloat16"],
        default="auto",
        help="compute precision; auto: bfloat16 where the hardware has it",
    )
    parser.add_argument(
        "--gradient-checkpointing", action="store_true", help="less memory, more compute"
    )
    parser.add_argument("--eval-every", type=int, default=50, help="held-out evaluation interval")
    parser.add_argument("--save-every", type=int, default=50, help="checkpoint interval")
    parser.add_argument("--seed", type=int, default=0, help="data order and adapter seed")
    parser.add_argument("--max-pixels", type=int, help="pixel budget per image")
    parser.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', ...")
    parser.add_argument(
        "--no-resume", action="store_true", help="refuse to continue a run in --output"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def finetune(args: argparse.Namespace) -> int:
    """Run ``finetune``; returns the exit code (0 trained, 2 nothing done)."""
    from qwen3_vl_rag.defaults import DEFAULT_EMBEDDING_MODEL, DEFAULT_RERANKER_MODEL
    from qwen3_vl_rag.finetune import (
        LoraSettings,
        TrainingSettings,
        finetune_embedder,
        finetune_reranker,
    )

    settings = TrainingSettings(
        steps=args.steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        gradient_accumulation=args.gradient_accumulation,
        learning_rate=args.learning_rate,
        lora=None if args.full else LoraSettings(r=args.lora_r, alpha=args.lora_alpha),
        temperature=args.temperature,
        matryoshka_dims=_dims(args.matryoshka_dims),
        hard_negatives=args.hard_negatives,
        precision=args.precision,
        gradient_checkpointing=args.gradient_checkpointing,
        eval_every=args.eval_every,
        save_every=args.save_every,
        seed=args.seed,
    )
    options: dict[str, Any] = {"device": args.device}
    if args.max_pixels:
        options["max_pixels"] = args.max_pixels
    embedding = args.kind == "embedding"
    model = args.model or (DEFAULT_EMBEDDING_MODEL if embedding else DEFAULT_RERANKER_MODEL)
    run = finetune_embedder if embedding else finetune_reranker
    with contextlib.ExitStack() as resources:  # mined items decode while the run lasts
        train, held_out, mined = _examples(args, resources)
        result = run(
            model,
            train,
            args.output,
            settings=settings,
            held_out=held_out,
            resume=not args.no_resume,
            show_progress=not args.quiet,
            **options,
        )
    summary = {
        "model_dir": str(result.model_dir),
        "adapter_dir": None if result.adapter_dir is None else str(result.adapter_dir),
        "steps": result.steps,
        "resumed_from": result.resumed_from,
        "training_examples": len(train),
        "held_out_examples": len(held_out),
        "first_loss": result.losses[0][1] if result.losses else None,
        "last_loss": result.losses[-1][1] if result.losses else None,
        "held_out": [{"step": step, **measures} for step, measures in result.evaluations],
        "mined": mined,
        "seconds": round(result.seconds, 1),
    }
    if args.json:
        emit_raw(json.dumps(summary, indent=2))
        return 0
    emit(printable(f"trained the {args.kind} for {result.steps} steps in {result.seconds:.0f}s"))
    if result.resumed_from is not None:
        emit(f"  (resumed from step {result.resumed_from})")
    if result.losses:
        emit(f"  loss {result.losses[0][1]:.4f} -> {result.losses[-1][1]:.4f}")
    if result.evaluations:
        emit(f"  held-out ({len(held_out)} queries)     step  nDCG@10  R@1    R@5    MRR@10")
        for step, m in result.evaluations:
            emit(
                f"  {'':31}{step:>5}  {m['nDCG@10']:.4f}   {m['R@1']:.4f} {m['R@5']:.4f} "
                f"{m['RR@10']:.4f}"
            )
    emit(printable(f"model:   {result.model_dir}"))
    if result.adapter_dir is not None:
        emit(printable(f"adapter: {result.adapter_dir}"))
    flag = "--model" if embedding else "--reranker"
    emit(printable(f"use it:  qwen3-vl-rag index DOCS {flag} {result.model_dir}"))
    return 0


def _examples(
    args: argparse.Namespace, resources: contextlib.ExitStack
) -> tuple[list[Any], list[Any], dict[str, Any] | None]:
    """Training and held-out examples, read and checked before the model to train loads.

    Pages are rendered at the pixel budget the model will read them at.
    """
    from qwen3_vl_rag.finetune import read_training_file, split_held_out
    from qwen3_vl_rag.media import MediaBudget

    budget = MediaBudget(max_pixels=args.max_pixels) if args.max_pixels else MediaBudget()
    held_out = read_training_file(args.held_out, budget=budget) if args.held_out else None
    mined: dict[str, Any] | None = None
    if args.index is not None:
        examples, mined = _mined(args, resources)
    else:
        examples = read_training_file(args.data, budget=budget)
    if held_out is not None:
        return examples, held_out, mined
    if args.held_out_fraction <= 0:
        return examples, [], mined
    train, held_out = split_held_out(examples, args.held_out_fraction, seed=args.seed)
    return train, held_out, mined


def _mined(
    args: argparse.Namespace, resources: contextlib.ExitStack
) -> tuple[list[Any], dict[str, Any]]:
    """Examples mined from ``--index`` with its own embedder; usable until ``resources`` close."""
    from qwen3_vl_rag.engine import Qwen3VLEmbedder
    from qwen3_vl_rag.finetune import mine_hard_negatives, read_mining_queries
    from qwen3_vl_rag.index import MultimodalIndex

    queries = read_mining_queries(args.data)
    with MultimodalIndex(args.index, mode="read") as probe:
        model, max_pixels = probe.embedding_model(), probe.signature.get("max_pixels")
    embedder = Qwen3VLEmbedder.from_pretrained(
        model or "", device=args.device, max_pixels=max_pixels
    )
    with MultimodalIndex(args.index, embedder, mode="read") as index:
        result = resources.enter_context(
            mine_hard_negatives(
                index, queries, negatives=args.hard_negatives, show_progress=not args.quiet
            )
        )
    summary: dict[str, Any] = dict(result.counts())
    summary["dropped_queries"] = [list(pair) for pair in result.dropped_queries]
    if not args.quiet and not args.json:
        emit(printable(f"mined from {args.index}: {json.dumps(result.counts())}"))
    return list(result.examples), summary


def _dims(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        from qwen3_vl_rag.errors import ConfigurationError

        raise ConfigurationError(
            f"--matryoshka-dims takes comma-separated sizes such as 1024,512,256; got {text!r}."
        ) from None
