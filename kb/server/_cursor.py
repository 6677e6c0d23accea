"""The one opaque cursor: an offset into a listing, tied to what was listed.

A `resources/list` cursor is tied to nothing; a `search` cursor to its query and filters, so a
cursor of another search is refused rather than paging through the wrong results.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

MAX_CURSOR_CHARS = 500


class CursorError(ValueError):
    """A cursor this server did not make, or made for another listing."""


def fingerprint(*parts: Any) -> str:
    """A short stable digest of what a listing depends on (a search's query and filters)."""
    key = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def encode(offset: int, belongs_to: str = "") -> str:
    data: dict[str, Any] = {"o": offset}
    if belongs_to:
        data["f"] = belongs_to
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode()


def decode(cursor: str, belongs_to: str = "") -> int:
    """The offset in `cursor`.

    Raises:
        CursorError: the cursor is malformed, or was made for another listing than `belongs_to`.
    """
    if len(cursor) > MAX_CURSOR_CHARS:
        raise CursorError("cursor is not valid")
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError, RecursionError) as exc:  # deep nesting is a RecursionError
        raise CursorError("cursor is not valid") from exc
    offset = data.get("o") if isinstance(data, dict) else None
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise CursorError("cursor is not valid")
    if data.get("f", "") != belongs_to:
        raise CursorError("cursor belongs to a different query or filters")
    return offset
