r"""A search's results as one self-contained HTML page: a grid of cards to look at in a browser.

The page needs nothing but itself: the styles are inline, the thumbnails are embedded as
``data:`` URIs, and a Content-Security-Policy forbids scripts and every outside resource. All
text from the results (paths, page text, locators, metadata) and the query is escaped; control
characters are shown as escapes in names (``\x1b``) and dropped from snippets of page text.
When a model is a random-weight test checkpoint, a banner says that the ranking means nothing.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import stat
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from qwen3_vl_rag.cli.models import random_test_checkpoints, synthetic_trained
from qwen3_vl_rag.cli.terminal import printable, readable
from qwen3_vl_rag.index import SearchResult

__all__ = ["write_gallery"]

_MAX_THUMBNAIL_BYTES = 2 * 1024 * 1024
_QUERY_IMAGE_SIZE = 256
_SNIPPET_CHARS = 300
_KINDS = frozenset({"page", "image", "video", "clip"})

_CSS = """
:root { color-scheme: light dark; --bg: #f4f5f7; --card: #fff; --ink: #1d2330; --muted: #667085;
  --line: #e3e6ec; --well: #eceef2; --accent: #2f6fed; --page: #2f6fed; --image: #0f9d76;
  --video: #b4530a; --clip: #8a3ffc; }
@media (prefers-color-scheme: dark) { :root { --bg: #14171c; --card: #1d2128; --ink: #e7e9ee;
  --muted: #9aa3b2; --line: #2c323c; --well: #262b33; --accent: #7aa5ff; } }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); line-height: 1.45;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif; }
header { display: flex; gap: 20px; align-items: center; padding: 24px 32px;
  background: var(--card); border-bottom: 1px solid var(--line); }
header img { width: 96px; height: 96px; object-fit: contain; border-radius: 10px;
  background: var(--well); border: 1px solid var(--line); flex: none; }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 650; overflow-wrap: anywhere; }
.meta { margin: 0; color: var(--muted); font-size: 13px; }
main { padding: 24px 32px 40px; }
.grid { display: grid; gap: 20px; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); }
.card { display: flex; flex-direction: column; background: var(--card); color: inherit;
  text-decoration: none; border: 1px solid var(--line); border-radius: 12px; overflow: hidden;
  box-shadow: 0 1px 2px rgba(16, 24, 40, .06); transition: box-shadow .15s, transform .15s; }
a.card:hover { box-shadow: 0 8px 24px rgba(16, 24, 40, .14); transform: translateY(-2px); }
.preview { position: relative; aspect-ratio: 4 / 3; background: var(--well);
  display: flex; align-items: center; justify-content: center; }
.preview img { position: absolute; inset: 0; width: 100%; height: 100%; object-fit: contain; }
.none { color: var(--muted); font-size: 13px; letter-spacing: .04em; text-transform: uppercase;
  border: 2px dashed var(--line); border-radius: 8px; padding: 10px 16px; }
.rank, .kind { position: absolute; top: 10px; padding: 2px 9px; border-radius: 999px;
  font-size: 12px; font-weight: 650; color: #fff; }
.rank { left: 10px; background: rgba(16, 24, 40, .78); }
.kind { right: 10px; background: #667085; text-transform: uppercase; letter-spacing: .05em; }
.kind-page { background: var(--page); } .kind-image { background: var(--image); }
.kind-video { background: var(--video); } .kind-clip { background: var(--clip); }
.body { padding: 12px 14px 14px; display: flex; flex-direction: column; gap: 6px; min-width: 0; }
.name { font-weight: 600; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
a.card .name { color: var(--accent); }
.locator { color: var(--muted); font-size: 13px; min-height: 1.45em; }
.scores { display: flex; align-items: baseline; gap: 8px; flex-wrap: wrap; }
.score { font-size: 20px; font-weight: 700; font-variant-numeric: tabular-nums; }
.stages { color: var(--muted); font-size: 12px; font-variant-numeric: tabular-nums; }
.bar { height: 4px; border-radius: 2px; background: var(--well); overflow: hidden; }
.bar span { display: block; height: 100%; background: var(--accent); }
.snippet { margin: 2px 0 0; font-size: 13px; color: var(--ink); opacity: .85;
  overflow-wrap: anywhere; display: -webkit-box; -webkit-line-clamp: 5;
  -webkit-box-orient: vertical; overflow: hidden; }
.stale { margin: 0; font-size: 12px; color: #b42318; }
.empty { text-align: center; color: var(--muted); padding: 80px 20px; font-size: 18px; }
.warning { margin: 0; padding: 12px 32px; background: #fef0c7; color: #7a2e0e;
  border-bottom: 1px solid #f5d68a; font-size: 14px; }
@media (max-width: 560px) { header { padding: 16px; gap: 14px; } main { padding: 16px; }
  header img { width: 64px; height: 64px; } header h1 { font-size: 18px; } }
"""


def write_gallery(
    path: str | os.PathLike[str],
    results: Sequence[SearchResult],
    *,
    query: str | None = None,
    query_image: str | os.PathLike[str] | None = None,
    title: str | None = None,
    models: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Write a search's results as one self-contained HTML page of cards, best first.

    Each card shows the result's rank, final score and both stage scores, kind, file name,
    locator, a snippet of its text and its thumbnail, and links to the source (``#page=N`` for
    PDF pages, ``#t=SECONDS`` for clips). The page embeds everything it shows and loads nothing:
    it opens offline, and mailing it around leaks nothing but what it shows.

    Args:
        path: The HTML file to write; parent folders are created, an existing file is replaced
            atomically.
        results: The hits of :meth:`MultimodalIndex.search`, in rank order.
        query: The query's text, shown in the header.
        query_image: The query's image, shown in the header (downscaled to 256 px); skipped when
            it cannot be read.
        title: The page's title; by default derived from the query.
        models: The models that made the ranking (Hub ids or local directories), named in the
            header; a banner warns when one is a random-weight test checkpoint.

    Returns:
        The path of the written file.

    Example:
        ``results`` usually come from ``index.search("quarterly revenue chart", top_n=12)``;
        here one is made by hand:

        >>> import tempfile
        >>> from pathlib import Path
        >>> from qwen3_vl_rag import SearchResult
        >>> from qwen3_vl_rag.cli.gallery import write_gallery
        >>> hit = SearchResult(rank=1, id="p1", kind="page", source="report.pdf",
        ...                    locator="page 1", vector_score=0.71, rerank_score=0.93,
        ...                    text="Revenue grew 12% in Q4.")
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     page = write_gallery(Path(folder, "results.html"), [hit], query="revenue chart")
        ...     print(page.name, "Revenue grew 12% in Q4." in page.read_text())
        results.html True
    """
    target = Path(path)
    if title is None:
        title = f"Results for \u201c{query}\u201d" if query else "Search results"
    document = _page(results, query=query, query_image=query_image, title=title, models=models)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(document)
        temporary.chmod(0o644)  # mkstemp's 0600 would hide the page from a web server
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


def _page(
    results: Sequence[SearchResult],
    *,
    query: str | None,
    query_image: str | os.PathLike[str] | None,
    title: str,
    models: Sequence[str | os.PathLike[str]],
) -> str:
    esc = _escape
    picture = _query_picture(query_image) if query_image is not None else None
    header_image = f'<img class="thumb" src="{picture}" alt="query image">' if picture else ""
    count = f"{len(results)} result{'' if len(results) == 1 else 's'}"
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    heading = esc(query) if query else esc(title)
    named = "".join(f" &middot; {esc(str(model))}" for model in models)
    untrained = random_test_checkpoints(models)
    warning = ""
    if untrained:
        warning = (
            '<p class="warning" role="note"><strong>Random-weight test checkpoints:</strong> '
            f"{esc(', '.join(untrained))} "
            f"{'is a tiny model' if len(untrained) == 1 else 'are tiny models'} with random "
            "weights (qwen3_vl_rag.testing), so this ranking means nothing. Every step is the real "
            "pipeline; use the Qwen3-VL-Embedding and Qwen3-VL-Reranker checkpoints for "
            "meaningful results.</p>\n"
        )
    elif toys := synthetic_trained(models):
        warning = (
            '<p class="warning" role="note"><strong>Tiny demo models:</strong> '
            f"{esc(', '.join(toys))} "
            f"{'was' if len(toys) == 1 else 'were'} trained here on synthetic pages "
            f"(qwen3_vl_rag.testing): {'it knows' if len(toys) == 1 else 'they know'} six kinds "
            "of page in six colours and nothing else.</p>\n"
        )
    if results:
        content = '<div class="grid">\n' + "\n".join(_card(r) for r in results) + "\n</div>"
    else:
        content = '<p class="empty">No results</p>'
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" \
content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>{header_image}<div><h1>{heading}</h1>
<p class="meta">{count} &middot; generated {esc(generated)}{named}</p></div></header>
{warning}<main>
{content}
</main>
</body>
</html>
"""


def _card(result: SearchResult) -> str:
    esc = _escape
    kind_class = f" kind-{result.kind}" if result.kind in _KINDS else ""
    thumbnail = _thumbnail(result.thumbnail)
    if thumbnail is None:
        preview = '<span class="none">no preview</span>'
    else:
        preview = f'<img class="thumb" src="{thumbnail}" alt="">'
    stages = f"vector {result.vector_score:.3f}"
    if result.rerank_score is not None:
        stages += f" \u00b7 rerank {result.rerank_score:.3f}"
    score = result.score
    fill = 100 * min(1.0, max(0.0, score)) if math.isfinite(score) else 0.0
    snippet = ""
    if result.text:
        text = readable(result.text)
        if len(text) > _SNIPPET_CHARS:
            text = text[:_SNIPPET_CHARS].rsplit(" ", 1)[0] + "\u2026"
        snippet = f'<p class="snippet">{esc(text)}</p>'
    stale = f'<p class="stale">stale: {esc(result.stale)}</p>' if result.stale else ""
    body = f"""<div class="preview">{preview}<span class="rank">#{esc(str(result.rank))}</span>\
<span class="kind{kind_class}">{esc(result.kind)}</span></div>
<div class="body"><div class="name" title="{esc(result.source)}">{esc(_file_name(result.source))}\
</div><div class="locator">{esc(result.locator)}</div>
<div class="scores"><span class="score">{score:.3f}</span><span class="stages">{stages}</span></div>
<div class="bar"><span style="width: {fill:.1f}%"></span></div>{stale}{snippet}</div>"""
    link = _link(result)
    if link is None:
        return f'<div class="card">{body}</div>'
    return (
        f'<a class="card" href="{esc(link)}" target="_blank" rel="noopener noreferrer">{body}</a>'
    )


def _link(result: SearchResult) -> str | None:
    """The source's URL, pointing at the page or the clip's start where there is one."""
    source = result.source
    if "://" not in source:
        try:
            url = result.path.resolve().as_uri()  # the file's exact bytes, %-encoded
        except (OSError, ValueError):
            return None
    elif source.lower().startswith(("http://", "https://")):
        url = source
    else:
        return None
    if "#" in url:
        return url
    value = result.metadata.get("page" if result.kind == "page" else "start_seconds")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return url
    if result.kind == "page" and isinstance(value, int) and value >= 0:
        return f"{url}#page={value + 1}"
    if result.kind == "clip" and value >= 0:
        return f"{url}#t={f'{value:.3f}'.rstrip('0').rstrip('.')}"
    return url


def _file_name(source: str) -> str:
    if "://" in source:
        return source.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1] or source
    return Path(source).name or source


def _thumbnail(path: Path | None) -> str | None:
    """The JPEG at ``path`` as a ``data:`` URI, or ``None`` when it is missing, big or no JPEG.

    Only a regular file is read, and not through a symbolic link: a thumbnail path that leads
    elsewhere (a link planted in an index's thumbnails) never pulls another file into the page.
    """
    if path is None:
        return None
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags)
    except (OSError, ValueError):
        return None
    try:
        with open(descriptor, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None
            data = handle.read(_MAX_THUMBNAIL_BYTES + 1)
    except (OSError, ValueError):
        return None
    if len(data) > _MAX_THUMBNAIL_BYTES or not data.startswith(b"\xff\xd8\xff"):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def _query_picture(source: str | os.PathLike[str]) -> str | None:
    """The query image downscaled to a small JPEG ``data:`` URI, or ``None`` if unreadable."""
    from PIL import Image, ImageOps

    try:
        with Image.open(source) as image:
            image.draft("RGB", (_QUERY_IMAGE_SIZE, _QUERY_IMAGE_SIZE))
            small = ImageOps.exif_transpose(image).convert("RGB")
        small.thumbnail((_QUERY_IMAGE_SIZE, _QUERY_IMAGE_SIZE))
        buffer = io.BytesIO()
        small.save(buffer, "JPEG", quality=85)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _escape(text: str) -> str:
    """``text`` for HTML, its control and bidirectional characters shown as escapes."""
    return html.escape(printable(text), quote=True)
