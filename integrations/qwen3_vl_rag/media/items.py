"""The retrievable items the media layer produces: PDF pages, images, videos and video clips."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from qwen3_vl_rag.inputs import LazyImage, MultimodalInput, Video

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = ["ItemKind", "MediaItem", "MetadataValue"]

ItemKind = Literal["page", "image", "video", "clip"]
MetadataValue = str | int | float | bool


@dataclass(frozen=True, eq=False)
class MediaItem:
    """One retrievable unit cut from a file: a PDF page, an image, a whole video or a clip.

    Pass it straight to the embedder (``embedder.embed_documents(items)``): it embeds as its image
    or video, the way the official model was trained on page screenshots. Page text is kept for
    citations and hybrid search, not embedded (use ``to_input(with_text=True)`` to add it).

    Attributes:
        kind: ``"page"``, ``"image"``, ``"video"`` or ``"clip"``.
        source: The file (path as text, non-UTF-8 bytes escaped) or URL it came from.
        metadata: Flat facts about the item (str, int, float, bool values only), with the keys of
            the common loaders: ``source``, ``page`` (0-based), ``page_label``, ``total_pages``,
            ``start_seconds``/``end_seconds`` for clips, and more per kind.
        image: The page or image, rendered or decoded only when needed.
        video: The video or clip to sample frames from.
        text: The page's text (PDF pages), or ``None``.
        frame_times: Seconds of the frames the model samples (videos and clips).

    Example:
        >>> from qwen3_vl_rag import Qwen3VLEmbedder
        >>> from qwen3_vl_rag.media import load
        >>> pages = list(load("report.pdf"))
        >>> pages[0], pages[0].metadata["page"], pages[0].load_image().size
        (MediaItem(page, 'report.pdf', page 1), 0, (1152, 1600))
        >>> embedder = Qwen3VLEmbedder.from_pretrained("Qwen/Qwen3-VL-Embedding-2B")
        >>> len(embedder.embed_documents(pages))  # one vector per page
        3
    """

    kind: ItemKind
    source: str
    metadata: Mapping[str, MetadataValue]
    image: LazyImage | None = None
    video: Video | None = None
    text: str | None = None
    frame_times: tuple[float, ...] = field(default=())

    def to_input(self, *, with_text: bool = False) -> MultimodalInput:
        """The model input: the image or video, and the page text if asked for."""
        text = self.text if with_text and self.text else None
        images = (self.image,) if self.image is not None else ()
        return MultimodalInput(text=text, images=images, video=self.video)

    def load_image(self) -> PILImage.Image:
        """Render the page or decode the image now (RGB)."""
        if self.image is None:
            msg = f"a {self.kind} item has no image"
            raise ValueError(msg)
        return self.image.load()

    @property
    def locator(self) -> str:
        """Where in the file the item is: ``"page 3"``, ``"0:10-0:20"``..."""
        if self.kind == "page":
            return f"page {self.metadata.get('page_label') or int(self.metadata['page']) + 1}"
        if self.kind == "clip":
            start = float(self.metadata["start_seconds"])
            end = float(self.metadata["end_seconds"])
            return f"{_clock(start)}-{_clock(end)}"
        if "frame" in self.metadata:
            return f"frame {self.metadata['frame']}"
        return ""

    def __repr__(self) -> str:
        where = f", {self.locator}" if self.locator else ""
        return f"MediaItem({self.kind}, {self.source!r}{where})"


def _clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{minutes}:{rest:04.1f}" if not hours else f"{hours}:{minutes:02d}:{rest:04.1f}"
    return text.replace(".0", "")
