"""A worker reads an item's file again through the media layer, and only if it is unchanged.

The driver hashed the file and described its items; a worker (another process, maybe another
machine seeing the same files) must embed exactly those bytes. It opens the file with the
media layer's checks (a regular file within the byte budget, opened without blocking), hashes
it, and refuses it when the digest differs from the driver's (the vectors would be recorded
under the old content's ids). It then loads it with the same loaders and budgets as a local
run, decoding in worker processes, and picks the wanted items by their place in the file.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from qwen3_vl_rag.checked_files import open_checked
from qwen3_vl_rag.errors import SourceChangedError
from qwen3_vl_rag.index._ids import item_locator
from qwen3_vl_rag.media.items import MediaItem
from qwen3_vl_rag.media.loaders import MediaOptions, load_path
from qwen3_vl_rag.media.sniff import HEAD_BYTES, sniff_bytes

__all__ = ["reload_items"]


def reload_items(
    path: str | os.PathLike[str],
    *,
    label: str,
    digest: str,
    locators: Collection[str],
    options: MediaOptions,
) -> dict[str, MediaItem]:
    """The items of ``path`` at ``locators``, if the file still hashes to ``digest``.

    Args:
        path: The file, as the driver found it.
        label: How messages name it.
        digest: Its SHA-256 when the driver hashed it.
        locators: The items wanted (:func:`~qwen3_vl_rag.index._ids.item_locator`).
        options: The index's decoding options, with this worker's runner.

    Returns:
        Locator to item, for the locators found (a missing one means the file changed).

    Raises:
        SourceChangedError: The file's bytes are not the ones hashed.
        InputError: The file cannot be opened or loaded (the loaders' typed errors).
    """
    with open_checked(path, max_bytes=options.budget.max_bytes, label=label) as opened:
        if opened.sha256() != digest:
            raise SourceChangedError(
                "the file changed after it was hashed, before a worker read it.",
                source=label,
                stage="open",
                hint="Index it again once it is no longer being written.",
            )
        identity = opened.identity
        sniffed = sniff_bytes(opened.head(HEAD_BYTES))
    # loaders reopen it only as this very file (same inode, size and time)
    document = load_path(Path(path), options, sniffed=sniffed, source=label, identity=identity)
    wanted = set(locators)
    found: dict[str, MediaItem] = {}
    for item in document:
        locator = item_locator(item)
        if locator in wanted:
            found[locator] = item
            if len(found) == len(wanted):
                break
    return found
