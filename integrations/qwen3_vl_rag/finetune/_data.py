"""Fine-tuning data: a JSONL file read, checked whole, and turned into model inputs.

One example per line (blank lines are skipped)::

    {"query": ITEM, "positives": ITEM | [ITEM, ...], "negatives": [ITEM, ...], "instruction": "..."}

An ITEM is a text (a JSON string) or an object with ``"text"``, ``"image"`` (a path) and/or
``"pdf"`` with a 1-based ``"page"``; paths are relative to the file's folder (absolute ones are
accepted). Every row, key, type and referenced file is checked before anything is returned, and
every problem is reported at once with its line (:class:`~qwen3_vl_rag.errors.DatasetError`),
so a bad file never starts a run that fails hours later.

Documents (positives, negatives) become the inputs the index embeds for the same files: a PDF
page rendered by the media layer at the budget's size, an image decoded by the media layer
(oriented, 16-bit scaled, transparency on white). A query image stays a path, decoded by the
engine as a search query's image is. So training sees the pixels inference sees.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from qwen3_vl_rag.checked_files import FileIdentity, display_path, open_checked
from qwen3_vl_rag.errors import ConfigurationError, DatasetError, InputError
from qwen3_vl_rag.inputs import ImageSource, MultimodalInput
from qwen3_vl_rag.media.budget import MediaBudget
from qwen3_vl_rag.media.isolation import IN_PROCESS_RUNNER, DecodeRunner, WorkerPool

__all__ = [
    "MAX_LINE_BYTES",
    "MAX_TRAINING_FILE_BYTES",
    "TrainingExample",
    "read_training_file",
    "split_held_out",
]

#: Longest line read: a row is a few paths and texts; a longer line is refused, not parsed.
MAX_LINE_BYTES = 1024 * 1024

#: Largest training or query file read.
MAX_TRAINING_FILE_BYTES = 2 * 1024**3

_ROW_KEYS = ("query", "positives", "negatives", "instruction")
_ITEM_KEYS = ("text", "image", "pdf", "page")
_REMOTE = ("http://", "https://", "ftp://", "ftps://", "s3://", "gs://", "data:")

Problem = tuple[str, int, str]
T = TypeVar("T")


@dataclass(frozen=True)
class TrainingExample:
    """One training example: a query, what it should find, and what it should not.

    Attributes:
        query: The query as the engine embeds it.
        positives: Documents the query must find (at least one).
        negatives: Hard negatives: documents it must not find.
        instruction: The task instruction for the query (``None``: the model's default).
        source: Where it came from: ``"train.jsonl:12"``, or ``"index"`` for mined examples.

    Example:
        >>> from qwen3_vl_rag import MultimodalInput
        >>> from qwen3_vl_rag.finetune import TrainingExample
        >>> example = TrainingExample(
        ...     MultimodalInput(text="red bar chart"), (MultimodalInput(text="a bar chart"),)
        ... )
        >>> len(example.positives), example.negatives, example.source
        (1, (), '')
    """

    query: MultimodalInput
    positives: tuple[MultimodalInput, ...]
    negatives: tuple[MultimodalInput, ...] = ()
    instruction: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "positives", tuple(self.positives))
        object.__setattr__(self, "negatives", tuple(self.negatives))
        if not self.positives:
            raise ConfigurationError(
                f"a training example needs at least one positive ({self.source or 'no source'})."
            )


# -- reading lines -----------------------------------------------------------------------------


def _lines(handle: Any, problems: list[Problem], name: str) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each non-blank line; overlong or non-UTF-8 lines are problems."""
    number = 0
    while True:
        raw = handle.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            size = len(raw)
            while raw and not raw.endswith(b"\n"):  # skip the rest of it, a piece at a time
                raw = handle.readline(MAX_LINE_BYTES)
                size += len(raw)
            problems.append(
                (name, number, f"the line is {size} bytes, over the limit of {MAX_LINE_BYTES}.")
            )
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            problems.append((name, number, "not UTF-8 text (is this a binary file?)."))
            continue
        if text.strip():
            yield number, text


def _parse(text: str) -> tuple[Any, str | None]:
    try:
        return json.loads(text), None
    except RecursionError:
        return None, "the JSON is nested too deeply."
    except ValueError as exc:  # JSONDecodeError, and numbers with too many digits
        return None, f"not valid JSON ({exc})."


def unknown_keys(keys: Sequence[str], allowed: Sequence[str]) -> list[str]:
    """A reason for each key not in ``allowed``, naming the closest allowed key if any."""
    reasons = []
    for key in keys:
        if key in allowed:
            continue
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        reasons.append(f"unknown key {key[:60]!r}{hint}; the keys are {', '.join(allowed)}.")
    return reasons


# -- items ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemSpec:
    """An item as written in a file, checked for shape (not yet for its file)."""

    text: str | None = None
    image: Path | None = None
    pdf: Path | None = None
    page: int | None = None  # 1-based


def _path(value: object, folder: Path, key: str) -> tuple[Path | None, str | None]:
    if not isinstance(value, str):
        return None, f"{key!r} must be a path (a string), not {kind_of(value)}."
    if not value.strip():
        return None, f"{key!r} is an empty path."
    if value.lower().startswith(_REMOTE):
        return None, f"{key!r} is a URL ({value[:60]!r}); download the file and name its path."
    if "\x00" in value:
        return None, f"{key!r} holds a NUL character."
    return folder / value, None  # an absolute path stays absolute


def parse_item(value: object, folder: Path) -> tuple[ItemSpec | None, list[str]]:
    """The item an ITEM value describes, or why it is not one (paths relative to ``folder``)."""
    if isinstance(value, str):
        if not value.strip():
            return None, ["an empty text."]
        if not _is_unicode(value):
            return None, [f"the text {_SURROGATE}"]
        return ItemSpec(text=value), []
    if not isinstance(value, dict):
        return None, [f"an item is a text or an object, not {kind_of(value)}."]
    reasons = unknown_keys(list(value), _ITEM_KEYS)
    if not any(key in value for key in _ITEM_KEYS) and not reasons:
        reasons.append('an empty item: give "text", "image", or "pdf" and "page".')
    text = value.get("text")
    if "text" in value and not (isinstance(text, str) and text.strip()):
        reasons.append(f'"text" must be a non-empty string, not {kind_of(text)}.')
        text = None
    elif text is not None and not _is_unicode(text):
        reasons.append(f'"text" {_SURROGATE}')
    image = pdf = None
    if "image" in value:
        image, reason = _path(value["image"], folder, "image")
        reasons += [reason] if reason else []
    if "pdf" in value:
        pdf, reason = _path(value["pdf"], folder, "pdf")
        reasons += [reason] if reason else []
    if "image" in value and "pdf" in value:
        reasons.append('"image" and "pdf" exclude each other: one picture per item.')
    page = value.get("page")
    if "page" in value:
        if "pdf" not in value:
            reasons.append('"page" needs "pdf".')
        if isinstance(page, bool) or not isinstance(page, int) or page < 1:
            reasons.append(f'"page" must be a page number from 1, not {kind_of(page)}.')
            page = None
    elif "pdf" in value:
        reasons.append('"pdf" needs "page" (1-based).')
    if reasons:
        return None, reasons
    return ItemSpec(text=text, image=image, pdf=pdf, page=page), []


_SURROGATE = "holds an unpaired surrogate (a \\ud800-style escape that is not a character)."


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def kind_of(value: object) -> str:
    """What a JSON value is, for messages: ``"the number 3"``, ``"a list"``, ``"null"``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value!r}"[:60]
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return {"list": "a list", "dict": "an object"}.get(type(value).__name__, type(value).__name__)


# -- files -------------------------------------------------------------------------------------


@dataclass
class FileChecker:
    """Checks the files items name (once each) and makes their inputs.

    Each file is opened once, checked on its handle (a regular file within the byte budget),
    its header read (an image within the pixel budget and of an allowed format; a PDF that
    opens, with the page) by ``check_runner``, a worker process for untrusted files. The inputs
    decode later through ``runner``, only from the very file that was checked.
    """

    budget: MediaBudget
    check_runner: DecodeRunner
    runner: DecodeRunner
    _identities: dict[Path, FileIdentity | str] = field(default_factory=dict)
    _pages: dict[Path, int | str] = field(default_factory=dict)
    _pictures_made: dict[tuple[Path, int | None], ImageSource] = field(default_factory=dict)

    def image_problem(self, path: Path) -> str | None:
        """Why the image cannot be used, or ``None``."""
        from qwen3_vl_rag.media.images import load_image

        known = self._identities.get(path)
        if known is None:
            label = display_path(path)
            try:
                # the header read (in the worker) is the header of the file opened here
                with open_checked(path, max_bytes=self.budget.max_bytes, label=label) as opened:
                    identity = opened.identity
                load_image(
                    path,
                    budget=self.budget,
                    source=label,
                    runner=self.check_runner,
                    identity=identity,
                )
                known = identity
            except InputError as err:
                known = _reason(err)
            self._identities[path] = known
        return known if isinstance(known, str) else None

    def page_problem(self, path: Path, page: int) -> str | None:
        """Why the 1-based ``page`` of the PDF cannot be used, or ``None``."""
        from qwen3_vl_rag.media.pdf import load_pdf

        known = self._pages.get(path)
        if known is None:
            try:
                document = load_pdf(path, pages=[0], budget=self.budget, runner=self.check_runner)
                known = document.total_pages
                assert document.identity is not None
                self._identities[path] = document.identity
            except InputError as err:
                known = _reason(err)
            self._pages[path] = known
        if isinstance(known, str):
            return known
        if page > known:
            return f"the PDF has {known} page{'s' if known != 1 else ''}, no page {page}."
        try:  # the page itself: its size and text can be read
            list(load_pdf(path, pages=[page - 1], budget=self.budget, runner=self.check_runner))
        except InputError as err:
            return _reason(err)
        return None

    def document(self, spec: ItemSpec) -> MultimodalInput:
        """The item as the index embeds it (a rendered page, a media-decoded image)."""
        return MultimodalInput(text=spec.text, images=self._pictures(spec, as_query=False))

    def query(self, spec: ItemSpec) -> MultimodalInput:
        """The item as a search embeds a query (an image stays a path for the engine)."""
        return MultimodalInput(text=spec.text, images=self._pictures(spec, as_query=True))

    def _pictures(self, spec: ItemSpec, *, as_query: bool) -> tuple[ImageSource, ...]:
        from qwen3_vl_rag.media.images import load_image
        from qwen3_vl_rag.media.pdf import load_pdf

        if spec.image is not None and as_query:
            return (spec.image,)
        path, page = (spec.image, None) if spec.image is not None else (spec.pdf, spec.page)
        if path is None:
            return ()
        key = (path, page)
        if key not in self._pictures_made:  # a file named by many rows is one (lazy) picture
            identity = self._identity(path)
            if page is None:
                item = load_image(path, budget=self.budget, runner=self.runner, identity=identity)
            else:
                document = load_pdf(
                    path,
                    pages=[page - 1],
                    budget=self.budget,
                    runner=self.runner,
                    identity=identity,
                )
                (item,) = list(document)
            (self._pictures_made[key],) = item.to_input(with_text=False).images
        return (self._pictures_made[key],)

    def _identity(self, path: Path) -> FileIdentity:
        identity = self._identities[path]
        assert isinstance(identity, FileIdentity)
        return identity


def _reason(err: InputError) -> str:
    """The error's reason and hint, without its source (the problem names the field)."""
    text = err.reason.rstrip()
    return f"{text} {err.hint}" if err.hint else text


# -- rows --------------------------------------------------------------------------------------


@dataclass
class RowReader:
    """Reads the items of a row: their shape, then their files (paths relative to ``folder``)."""

    folder: Path
    checker: FileChecker

    def item(self, value: object, where: str, reasons: list[str]) -> ItemSpec | None:
        spec, problems = parse_item(value, self.folder)
        reasons += [f"{where}: {problem}" for problem in problems]
        if spec is None:
            return None
        problem = None
        if spec.image is not None:
            problem = self.checker.image_problem(spec.image)
            shown = display_path(spec.image)
        elif spec.pdf is not None and spec.page is not None:
            problem = self.checker.page_problem(spec.pdf, spec.page)
            shown = f"{display_path(spec.pdf)}, page {spec.page}"
        if problem is not None:
            reasons.append(f"{where}: {shown}: {problem}")
            return None
        return spec

    def items(self, value: object, key: str, reasons: list[str], *, single: bool) -> list[Any]:
        if isinstance(value, list):
            if not value:
                reasons.append(f"{key}: an empty list.")
            return [
                self.item(entry, f"{key}[{number}]", reasons) for number, entry in enumerate(value)
            ]
        if single:
            return [self.item(value, key, reasons)]
        reasons.append(f"{key}: must be a list of items, not {kind_of(value)}.")
        return []


def read_training_file(
    path: str | os.PathLike[str],
    *,
    budget: MediaBudget | None = None,
    runner: DecodeRunner | None = None,
    max_problems: int = 100,
) -> list[TrainingExample]:
    r"""Read and check a fine-tuning JSONL file; every problem is reported at once.

    Everything is checked before anything is returned: each line is JSON (at most
    :data:`MAX_LINE_BYTES`), each row an object with only the known keys (``"positve"`` is a
    problem, not a row without positives), each value of the right type and not empty, each
    file a regular file whose header reads within ``budget`` (an image of an allowed format
    and size; a PDF that opens, with the page named). Headers are read in a worker process
    (a hostile file that hangs or crashes its decoder is a problem, not a hang).

    Args:
        path: The JSONL file.
        budget: Pixel, byte and time limits, and the size pages are rendered at: pass
            ``MediaBudget.matching(embedder)`` so pages are the ones the embedder sees.
        runner: Where the returned items are decoded during training (default: this process;
            they decode only from the very files that were checked).
        max_problems: Stop reading after this many problems (a binary file would have one a
            line).

    Returns:
        The examples, in file order, each with its ``source`` (``"train.jsonl:12"``).

    Raises:
        DatasetError: Every problem found, as ``(file, line, reason)``.

    Example:
        >>> import json
        >>> from qwen3_vl_rag.finetune import read_training_file
        >>> row = {"query": "red bar chart", "positives": {"pdf": "report.pdf", "page": 1}}
        >>> _ = Path("train.jsonl").write_text(json.dumps(row) + "\n")
        >>> (example,) = read_training_file("train.jsonl")
        >>> example.query.text, example.positives[0].images[0].size, example.source
        ('red bar chart', (1152, 1600), 'train.jsonl:1')
        >>> _ = Path("bad.jsonl").write_text('{"query": "x", "positve": "y"}\n')
        >>> read_training_file("bad.jsonl")
        Traceback (most recent call last):
        ...
        qwen3_vl_rag.errors.DatasetError: 2 problems in the data:
          bad.jsonl:1: unknown key 'positve' (did you mean 'positives'?); ...
          bad.jsonl:1: no "positives": give at least one.
    """
    budget = budget or MediaBudget()
    with checking_pool(budget) as check_runner:
        checker = FileChecker(budget, check_runner, runner or IN_PROCESS_RUNNER)
        reader = RowReader(Path(path).parent, checker)
        return read_rows(
            Path(path),
            lambda row, reasons, source: _example(row, reader, reasons, source),
            max_problems,
        )


@contextlib.contextmanager
def checking_pool(budget: MediaBudget) -> Iterator[WorkerPool]:
    """A worker process for the checks, stopped afterwards (the returned items do not use it)."""
    with WorkerPool(1, timeout=budget.timeout, memory_limit=budget.worker_memory) as pool:
        yield pool


def read_rows(
    path: Path, row: Callable[[dict[str, Any], list[str], str], T | None], max_problems: int
) -> list[T]:
    """Each JSON object row of a JSONL file, made by ``row``; every problem raised at once.

    ``row(obj, reasons, source)`` appends what is wrong with a row to ``reasons`` and returns
    ``None``, or returns what the row makes.

    Raises:
        DatasetError: Every problem, as ``(file, line, reason)``.
    """
    name = display_path(path)
    try:
        opened = open_checked(path, max_bytes=MAX_TRAINING_FILE_BYTES, label=name)
    except InputError as err:
        raise DatasetError([(name, 0, _reason(err))]) from err
    except ValueError as exc:  # a NUL in the name
        raise DatasetError([(name, 0, f"cannot be opened ({exc}).")]) from exc
    problems: list[Problem] = []
    made: list[T] = []
    with opened, open(opened.fd, "rb", closefd=False) as handle:
        for number, text in _lines(handle, problems, name):
            if len(problems) >= max_problems:
                break
            reasons: list[str] = []
            value, error = _parse(text)
            if error is not None:
                reasons.append(error)
            elif not isinstance(value, dict):
                reasons.append(f"a row is a JSON object, not {kind_of(value)}.")
            else:
                result = row(value, reasons, f"{name}:{number}")
                if result is not None and not reasons:
                    made.append(result)
            problems += [(name, number, reason) for reason in reasons]
    if len(problems) >= max_problems:
        problems = problems[:max_problems]
        problems.append((name, 0, f"stopped reading after {max_problems} problems."))
    if not problems and not made:
        problems.append((name, 0, "the file holds no row."))
    if problems:
        raise DatasetError(problems)
    return made


def _example(
    row: dict[str, Any], reader: RowReader, reasons: list[str], source: str
) -> TrainingExample | None:
    reasons += unknown_keys(list(row), _ROW_KEYS)
    query = positives = None
    if "query" in row:
        query = reader.item(row["query"], "query", reasons)
    else:
        reasons.append('no "query".')
    if "positives" in row:
        positives = reader.items(row["positives"], "positives", reasons, single=True)
    else:
        reasons.append('no "positives": give at least one.')
    negatives = []
    if row.get("negatives", []) != []:  # no hard negatives at all is fine
        negatives = reader.items(row["negatives"], "negatives", reasons, single=False)
    instruction = instruction_of(row, reasons)
    if reasons or query is None or not positives:
        return None
    checker = reader.checker
    return TrainingExample(
        query=checker.query(query),
        positives=tuple(checker.document(spec) for spec in positives),
        negatives=tuple(checker.document(spec) for spec in negatives),
        instruction=instruction,
        source=source,
    )


def instruction_of(row: Mapping[str, Any], reasons: list[str]) -> str | None:
    """The row's ``"instruction"`` (``None`` when absent), or a reason it is not one."""
    instruction = row.get("instruction")
    if "instruction" in row and not (isinstance(instruction, str) and instruction.strip()):
        reasons.append(f'"instruction" must be a non-empty string, not {kind_of(instruction)}.')
        return None
    return instruction


# -- held-out split ----------------------------------------------------------------------------


def split_held_out(
    examples: Sequence[TrainingExample], fraction: float = 0.1, seed: int = 0
) -> tuple[list[TrainingExample], list[TrainingExample]]:
    """Split examples into training and held-out sets, the same way for the same seed.

    Examples that share a query stay together, so no held-out query is seen in training.
    Both parts keep the input order.

    Args:
        examples: The examples.
        fraction: Share of the distinct queries held out (at least one when there are two or
            more queries and ``fraction > 0``; at least one query always stays for training).
        seed: Seed of the shuffle that picks them.

    Returns:
        ``(train, held_out)``.

    Example:
        >>> from qwen3_vl_rag import MultimodalInput
        >>> from qwen3_vl_rag.finetune import TrainingExample, split_held_out
        >>> examples = [
        ...     TrainingExample(MultimodalInput(text=f"q{i}"), (MultimodalInput(text="d"),))
        ...     for i in range(10)
        ... ]
        >>> train, held_out = split_held_out(examples, fraction=0.2, seed=0)
        >>> len(train), len(held_out)
        (8, 2)
    """
    if not 0 <= fraction < 1:
        raise ConfigurationError(f"fraction must be in [0, 1), got {fraction!r}.")
    groups: dict[tuple[Any, ...], list[int]] = {}
    for position, example in enumerate(examples):
        groups.setdefault(_query_key(example), []).append(position)
    keys = list(groups)
    held = round(len(keys) * fraction)
    if fraction > 0 and len(keys) >= 2:
        held = min(max(held, 1), len(keys) - 1)
    chosen = set(random.Random(seed).sample(range(len(keys)), held))
    held_positions = {p for number in chosen for p in groups[keys[number]]}
    train = [e for p, e in enumerate(examples) if p not in held_positions]
    held_out = [e for p, e in enumerate(examples) if p in held_positions]
    return train, held_out


def _query_key(example: TrainingExample) -> tuple[Any, ...]:
    query = example.query
    pictures = tuple(
        image.description if hasattr(image, "description") else os.fspath(image)  # type: ignore[arg-type]
        for image in query.images
    )
    return (query.text, pictures, example.instruction)
