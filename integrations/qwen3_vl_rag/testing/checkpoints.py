"""Offline, deterministic random-weight Qwen3-VL checkpoints for tests, demos and benchmarks.

The directory written here has the same layout as a released Qwen3-VL checkpoint
(``config.json``, ``model.safetensors``, ``tokenizer.json`` + ``tokenizer_config.json``,
``vocab.json``, ``merges.txt``, ``preprocessor_config.json``, ``video_preprocessor_config.json``,
``chat_template.json``), so both transformers 5.x and the official reference's locked
transformers 4.57.3 load it.

* The tokenizer is a byte-level BPE trained with ``tokenizers`` on a built-in corpus, with the Qwen
  pre-tokenizer regex and Qwen's 26 added tokens in Qwen's order; ``yes``, ``no`` and ``assistant``
  are single tokens, as in the real vocabulary.
* Weights come from a per-tensor seeded NumPy generator (``RandomState``, whose stream NumPy keeps
  stable), not from transformers' initialisers, so the bytes do not change with library versions.

Same arguments, same bytes: tests rely on it for the parity golden files.

The weights file says what it is: its safetensors metadata carries :data:`RANDOM_WEIGHTS_MARKER`,
which :func:`is_random_test_checkpoint` reads, so the CLI and the gallery can warn that rankings
made with these models mean nothing. The marker lives in the weights (not ``config.json``): it goes
wherever the weights go, leaves :func:`checkpoint_fingerprint` (and so the parity goldens) as they
are, and disappears when a model is trained and saved again, its weights no longer random.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "PRESETS",
    "RANDOM_WEIGHTS_MARKER",
    "CheckpointPreset",
    "build_tiny_checkpoint",
    "checkpoint_fingerprint",
    "is_random_test_checkpoint",
]

Kind = Literal["embedding", "reranker"]

RANDOM_WEIGHTS_MARKER = "qwen3_vl_rag_random_test_checkpoint"
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # the format's own limit

QWEN_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Qwen2.5/Qwen3 added tokens, in Qwen's order (their ids follow the BPE vocabulary).
QWEN_ADDED_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)
QWEN_SPECIAL_TOKENS = QWEN_ADDED_TOKENS[:14]  # flagged special=True in Qwen's tokenizer_config

# Qwen3-VL chat semantics: system/user/assistant turns, content lists with image/video placeholders,
# optional "Picture n:" ids, generation prompt. No default system prompt.
CHAT_TEMPLATE = (
    "{%- set image_count = namespace(value=0) -%}"
    "{%- set video_count = namespace(value=0) -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'image' or 'image' in content or 'image_url' in content -%}"
    "{%- set image_count.value = image_count.value + 1 -%}"
    "{%- if add_vision_id -%}Picture {{ image_count.value }}: {% endif -%}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif content['type'] == 'video' or 'video' in content -%}"
    "{%- set video_count.value = video_count.value + 1 -%}"
    "{%- if add_vision_id -%}Video {{ video_count.value }}: {% endif -%}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif 'text' in content -%}{{- content['text'] -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

_WORDS = (
    "the a an of to in and or is are was were be been it this that these those for on with "
    "as by at "
    "from not no yes query document instruct instruction represent user input system assistant "
    "retrieve relevant candidates answer judge whether meets requirements based provided note can "
    "only given search picture video image page chart table figure text cat dog car red blue green "
    "what where when who how why which report revenue year quarter sales growth model embedding "
    "reranker score vector store index retrieval multimodal vision language pdf file page number "
    "hello world test example sample data random tiny fixture qwen photo astronaut coffee chelsea "
    "people bank atm street night day screenshot slide invoice total amount bar line pie plot "
    "seconds minute hour clip scene moment find documents images relevant rocket launch sky"
).split()

_FIXED_LINES = (
    "Represent the user's input.",
    "Retrieve images or text relevant to the user's query.",
    "Given a search query, retrieve relevant candidates that answer the query.",
    "Judge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".',
    "<Instruct>: <Query>:",
    "\n<Document>:",
    "NULL",
)


@dataclass(frozen=True)
class CheckpointPreset:
    """Sizes of a random-weight Qwen3-VL architecture.

    Example:
        >>> import json
        >>> from qwen3_vl_rag.testing import PRESETS, build_tiny_checkpoint
        >>> sorted(PRESETS), PRESETS["tiny"].hidden_size
        (['2b', 'bench', 'tiny', 'vllm'], 64)
        >>> folder = build_tiny_checkpoint("tiny-embedding", preset="tiny")
        >>> json.loads((folder / "config.json").read_text())["text_config"]["hidden_size"]
        64
    """

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    mrope_section: tuple[int, int, int]
    vision_depth: int
    vision_hidden_size: int
    vision_intermediate_size: int
    vision_num_heads: int
    vision_num_position_embeddings: int
    deepstack_visual_indexes: tuple[int, ...]
    dtype: Literal["float32", "bfloat16"] = "float32"


#: ``tiny`` for tests (~0.6M parameters), ``bench`` for CPU benchmarks (compute dominates Python),
#: ``2b`` with the Qwen3-VL-2B sizes (random weights, small vocabulary) for GPU speed checks.
PRESETS: dict[str, CheckpointPreset] = {
    "tiny": CheckpointPreset(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        mrope_section=(4, 2, 2),
        vision_depth=2,
        vision_hidden_size=64,
        vision_intermediate_size=128,
        vision_num_heads=4,
        vision_num_position_embeddings=64,
        deepstack_visual_indexes=(0, 1),
    ),
    # the tiny model with head_dim 32, the smallest vLLM's CPU attention kernel accepts
    "vllm": CheckpointPreset(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        mrope_section=(8, 4, 4),
        vision_depth=2,
        vision_hidden_size=64,
        vision_intermediate_size=128,
        vision_num_heads=4,
        vision_num_position_embeddings=64,
        deepstack_visual_indexes=(0, 1),
    ),
    "bench": CheckpointPreset(
        hidden_size=512,
        intermediate_size=1536,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=64,
        mrope_section=(12, 10, 10),
        vision_depth=4,
        vision_hidden_size=256,
        vision_intermediate_size=1024,
        vision_num_heads=4,
        vision_num_position_embeddings=576,
        deepstack_visual_indexes=(1, 2, 3),
    ),
    "2b": CheckpointPreset(
        hidden_size=2048,
        intermediate_size=6144,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        mrope_section=(24, 20, 20),
        vision_depth=24,
        vision_hidden_size=1024,
        vision_intermediate_size=4096,
        vision_num_heads=16,
        vision_num_position_embeddings=2304,
        deepstack_visual_indexes=(5, 11, 17),
        dtype="bfloat16",
    ),
}

_BPE_VOCAB_SIZE = 800


def build_tiny_checkpoint(
    path: str | Path,
    *,
    kind: Kind = "embedding",
    preset: str = "tiny",
    seed: int | None = None,
    tie_word_embeddings: bool = False,
) -> Path:
    """Write a random-weight Qwen3-VL checkpoint (model, tokenizer, processor files) to ``path``.

    No network is used; the same arguments always produce the same bytes.

    Args:
        path: Directory to write (created if needed; existing files are overwritten).
        kind: ``"embedding"`` writes no ``lm_head`` (like an embedding model); ``"reranker"`` keeps
            the language-model head, whose ``yes``/``no`` rows make the score.
        preset: Architecture sizes, a key of :data:`PRESETS`.
        seed: Weight seed. Defaults to 0 for embedding and 1 for reranker checkpoints.
        tie_word_embeddings: Tie the LM head to the input embeddings (then no ``lm_head.weight``
            is stored, as in checkpoints that tie them).

    Returns:
        The checkpoint directory.

    Example:
        >>> from qwen3_vl_rag.testing import build_tiny_checkpoint
        >>> ckpt = build_tiny_checkpoint("/tmp/tiny-embed")  # a few seconds, offline
        >>> from qwen3_vl_rag import Qwen3VLEmbedder
        >>> embedder = Qwen3VLEmbedder.from_pretrained(ckpt)
    """
    if kind not in ("embedding", "reranker"):
        msg = f"kind must be 'embedding' or 'reranker', got {kind!r}"
        raise ValueError(msg)
    if preset not in PRESETS:
        msg = f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}"
        raise ValueError(msg)
    spec = PRESETS[preset]
    seed = (0 if kind == "embedding" else 1) if seed is None else seed
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)

    token_ids = _write_tokenizer(out)
    config = _model_config(spec, token_ids, tie_word_embeddings)
    _write_json(out / "config.json", config)
    _write_json(
        out / "generation_config.json",
        {
            "bos_token_id": token_ids["<|endoftext|>"],
            "eos_token_id": [token_ids["<|im_end|>"], token_ids["<|endoftext|>"]],
            "pad_token_id": token_ids["<|endoftext|>"],
        },
    )
    _write_processor_files(out)
    _write_weights(
        out, config, spec, seed, keep_lm_head=kind == "reranker" and not tie_word_embeddings
    )
    return out


def checkpoint_fingerprint(path: str | Path) -> str:
    """SHA-256 of a checkpoint directory's content, for determinism checks.

    Every file counts by name and bytes, except safetensors files, which count by tensor names,
    dtypes, shapes and values (their header layout belongs to the safetensors version).
    """
    import torch
    from safetensors import safe_open

    digest = hashlib.sha256()
    root = Path(path)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(file.relative_to(root).as_posix().encode())
        if file.suffix != ".safetensors":
            digest.update(file.read_bytes())
            continue
        with safe_open(str(file), framework="pt") as handle:
            for key in sorted(handle.keys()):
                tensor = handle.get_tensor(key).contiguous()
                digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
                digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def is_random_test_checkpoint(model: str | os.PathLike[str]) -> bool:
    """Whether ``model`` is a checkpoint written by :func:`build_tiny_checkpoint`.

    Reads only safetensors headers: those in a local directory, or for a Hub id the
    ``model.safetensors`` already in the local Hub cache (nothing is downloaded). A model that is
    not there, or an unreadable file, answers ``False``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     print(is_random_test_checkpoint(build_tiny_checkpoint(folder)))
        True
        >>> is_random_test_checkpoint("nobody/no-such-model")  # neither a folder nor cached
        False
    """
    try:
        weights = sorted(Path(model).glob("*.safetensors"))
    except (OSError, ValueError):
        return False
    if not weights:
        weights = _cached_hub_weights(str(model))
    return any(_safetensors_metadata(file).get(RANDOM_WEIGHTS_MARKER) == "true" for file in weights)


def _cached_hub_weights(repo_id: str) -> list[Path]:
    """The Hub model's ``model.safetensors`` if the local cache holds it (no network)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(repo_id, "model.safetensors")
    except (OSError, ValueError):  # not a Hub id (HFValidationError is a ValueError)
        return []
    return [Path(cached)] if isinstance(cached, str) else []


def _safetensors_metadata(file: Path) -> dict[str, Any]:
    """The ``__metadata__`` of a safetensors file's JSON header; empty when it cannot be read."""
    try:
        with file.open("rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 0 < size <= _MAX_SAFETENSORS_HEADER:
                return {}
            header = json.loads(handle.read(size))
    except (OSError, ValueError):
        return {}
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else {}


# --------------------------------------------------------------------------------------------------
# tokenizer


def _training_corpus() -> list[str]:
    rng = random.Random(1234)
    lines = []
    for _ in range(4000):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 14))]
        line = " ".join(words)
        if rng.random() < 0.5:
            line = line.capitalize()
        lines.append(line + rng.choice([".", "?", "!", ",", ":", ""]))
    lines += ["yes", "no", "Yes", "No", "assistant", "user", "system"] * 200
    lines += list(_FIXED_LINES) * 100
    lines += [f"<{i / 2:.1f} seconds>" for i in range(400)]
    lines += [str(i) for i in range(1000)]
    return lines


def _pretokenizer() -> Any:
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )


def train_bpe(
    corpus: Sequence[str], vocab_size: int, min_frequency: int = 2
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level BPE on ``corpus``, with Qwen's pre-tokenizer: the same result everywhere.

    At each step the most frequent adjacent pair is merged, ties going to the smallest pair, so
    the vocabulary does not depend on a library's trainer (whose tie-breaking has changed
    between ``tokenizers`` releases).
    """
    from tokenizers import normalizers, pre_tokenizers

    normalizer, pre_tokenizer = normalizers.NFC(), _pretokenizer()
    words: Counter[str] = Counter()
    for line in corpus:
        for piece, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line)):
            words[piece] += 1
    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    splits = {word: list(word) for word in words}
    merges: list[tuple[str, str]] = []
    while len(vocab) < vocab_size:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in words.items():
            symbols = splits[word]
            for pair in itertools.pairwise(symbols):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        if pairs[best] < min_frequency:
            break
        merges.append(best)
        joined = best[0] + best[1]
        vocab.setdefault(joined, len(vocab))
        for word, symbols in splits.items():
            i, merged = 0, []
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(joined)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            splits[word] = merged
    return vocab, merges


def _write_tokenizer(out: Path) -> dict[str, int]:
    vocab, merges = train_bpe(_training_corpus(), _BPE_VOCAB_SIZE)
    for word in ("yes", "no", "assistant", "user", "system"):
        if word not in vocab:  # pragma: no cover - guards the corpus above
            msg = f"tiny tokenizer: {word!r} is not a single token"
            raise RuntimeError(msg)
    ids = {token: len(vocab) + i for i, token in enumerate(QWEN_ADDED_TOKENS)}
    byte_level = {"add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    # the layout of a released Qwen tokenizer.json, written out so its bytes are ours
    state = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": ids[t],
                "content": t,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": t in QWEN_SPECIAL_TOKENS,
            }
            for t in QWEN_ADDED_TOKENS
        ],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": QWEN_PRETOKENIZE_REGEX},
                    "behavior": "Isolated",
                    "invert": False,
                },
                {"type": "ByteLevel", **byte_level},
            ],
        },
        "post_processor": {"type": "ByteLevel", **byte_level},
        "decoder": {"type": "ByteLevel", **byte_level},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [list(m) for m in merges],
        },
    }
    _write_json(out / "tokenizer.json", state, indent=2, sort_keys=False)
    _write_json(out / "vocab.json", vocab, indent=None, sort_keys=False)
    text = "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n"
    (out / "merges.txt").write_text(text, encoding="utf-8")
    added_decoder = {
        str(ids[t]): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": t in QWEN_SPECIAL_TOKENS,
        }
        for t in QWEN_ADDED_TOKENS
    }
    _write_json(
        out / "tokenizer_config.json",
        {
            "add_bos_token": False,
            "add_prefix_space": False,
            "added_tokens_decoder": added_decoder,
            "additional_special_tokens": [t for t in QWEN_SPECIAL_TOKENS if t != "<|endoftext|>"],
            "bos_token": None,
            "chat_template": CHAT_TEMPLATE,
            "clean_up_tokenization_spaces": False,
            "eos_token": "<|im_end|>",
            "errors": "replace",
            "model_max_length": 262144,
            "pad_token": "<|endoftext|>",
            "split_special_tokens": False,
            "tokenizer_class": "Qwen2Tokenizer",
            "unk_token": None,
        },
        sort_keys=False,
    )
    _write_json(out / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    ids["yes"] = vocab["yes"]
    ids["no"] = vocab["no"]
    ids["__len__"] = len(vocab) + len(QWEN_ADDED_TOKENS)
    return ids


# --------------------------------------------------------------------------------------------------
# config and processor files


def _model_config(spec: CheckpointPreset, ids: dict[str, int], tie: bool) -> dict[str, Any]:
    vocab_size = (ids["__len__"] + 63) // 64 * 64  # padded, like the real 151936 > len(tokenizer)
    if sum(spec.mrope_section) != spec.head_dim // 2:  # pragma: no cover - preset sanity
        msg = "mrope_section must sum to head_dim // 2"
        raise ValueError(msg)
    rope = {
        "mrope_interleaved": True,
        "mrope_section": list(spec.mrope_section),
        "rope_type": "default",
    }
    return {
        "architectures": ["Qwen3VLForConditionalGeneration"],
        "image_token_id": ids["<|image_pad|>"],
        "model_type": "qwen3_vl",
        "text_config": {
            "attention_bias": False,
            "attention_dropout": 0.0,
            "bos_token_id": ids["<|endoftext|>"],
            "dtype": spec.dtype,
            "eos_token_id": ids["<|im_end|>"],
            "head_dim": spec.head_dim,
            "hidden_act": "silu",
            "hidden_size": spec.hidden_size,
            "initializer_range": 0.02,
            "intermediate_size": spec.intermediate_size,
            "max_position_embeddings": 262144,
            "model_type": "qwen3_vl_text",
            "num_attention_heads": spec.num_attention_heads,
            "num_hidden_layers": spec.num_hidden_layers,
            "num_key_value_heads": spec.num_key_value_heads,
            "rms_norm_eps": 1e-06,
            "rope_scaling": rope,
            "rope_theta": 5000000,
            "tie_word_embeddings": tie,
            "use_cache": True,
            "vocab_size": vocab_size,
        },
        "tie_word_embeddings": tie,
        "video_token_id": ids["<|video_pad|>"],
        "vision_config": {
            "deepstack_visual_indexes": list(spec.deepstack_visual_indexes),
            "depth": spec.vision_depth,
            "hidden_act": "gelu_pytorch_tanh",
            "hidden_size": spec.vision_hidden_size,
            "in_channels": 3,
            "initializer_range": 0.02,
            "intermediate_size": spec.vision_intermediate_size,
            "model_type": "qwen3_vl",
            "num_heads": spec.vision_num_heads,
            "num_position_embeddings": spec.vision_num_position_embeddings,
            "out_hidden_size": spec.hidden_size,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
    }


def _write_processor_files(out: Path) -> None:
    common = {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "merge_size": 2,
        "patch_size": 16,
        "processor_class": "Qwen3VLProcessor",
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "temporal_patch_size": 2,
    }
    _write_json(
        out / "preprocessor_config.json",
        {
            **common,
            "image_processor_type": "Qwen2VLImageProcessorFast",
            "size": {"longest_edge": 16777216, "shortest_edge": 65536},
        },
    )
    _write_json(
        out / "video_preprocessor_config.json",
        {
            **common,
            "do_sample_frames": True,
            "fps": 2,
            "max_frames": 768,
            "min_frames": 4,
            "return_metadata": False,
            "video_processor_type": "Qwen3VLVideoProcessor",
            "size": {"longest_edge": 25165824, "shortest_edge": 4096},
        },
    )


# --------------------------------------------------------------------------------------------------
# weights


def _write_weights(
    out: Path, config: dict[str, Any], spec: CheckpointPreset, seed: int, keep_lm_head: bool
) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen3VLForConditionalGeneration(Qwen3VLConfig(**config))
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    if not keep_lm_head:
        shapes.pop("lm_head.weight", None)
    dtype = torch.bfloat16 if spec.dtype == "bfloat16" else torch.float32
    tensors = {
        name: _init_tensor(name, shape, seed).to(dtype) for name, shape in sorted(shapes.items())
    }
    (out / "model.safetensors").unlink(missing_ok=True)
    metadata = {"format": "pt", RANDOM_WEIGHTS_MARKER: "true"}
    save_file(tensors, str(out / "model.safetensors"), metadata=metadata)


def _init_tensor(name: str, shape: tuple[int, ...], seed: int) -> Any:
    """Deterministic values per tensor: norms near 1, small biases, matrices ~1/sqrt(fan_in).

    Computed in float64 and rounded once, so NumPy's type-promotion rules (which changed in 2.0)
    cannot change a bit.
    """
    import torch

    rng = np.random.RandomState((zlib.crc32(name.encode()) + 7919 * seed) % (2**32))
    values = rng.standard_normal(shape)  # float64
    if "norm" in name and name.endswith(".weight"):
        values = 1.0 + 0.1 * values
    elif name.endswith(".bias"):
        values = 0.02 * values
    elif "embed_tokens" in name or "pos_embed" in name:
        values = 0.5 * values
    elif len(shape) >= 2:
        values = values / np.sqrt(float(np.prod(shape[1:])))
    else:  # pragma: no cover - no other 1-D parameters in Qwen3-VL
        values = 0.02 * values
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


def _write_json(path: Path, data: Any, *, indent: int | None = 2, sort_keys: bool = True) -> None:
    path.write_text(
        json.dumps(data, indent=indent, sort_keys=sort_keys, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
