"""The one cursor codec: offsets round-trip, and a forged cursor is refused, never a crash."""

from __future__ import annotations

import base64

import pytest

from kb.server import _cursor


def test_an_offset_round_trips_and_stays_tied_to_its_listing() -> None:
    belongs_to = _cursor.fingerprint("install", None, ["md"], None, None)
    cursor = _cursor.encode(20, belongs_to)
    assert _cursor.decode(cursor, belongs_to) == 20
    assert _cursor.decode(_cursor.encode(100)) == 100
    with pytest.raises(_cursor.CursorError, match="different query"):
        _cursor.decode(cursor, _cursor.fingerprint("other", None, None, None, None))
    with pytest.raises(_cursor.CursorError):
        _cursor.decode(cursor)  # a search cursor is not a listing cursor


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000 + b"]" * 100_000,  # deep nesting: a RecursionError inside json
        b'{"o": -1}',
        b'{"o": true}',
        b'{"o": "3"}',
        b"[1, 2]",
        b"not json",
    ],
)
def test_a_forged_cursor_is_refused_with_a_cursor_error(payload: bytes) -> None:
    with pytest.raises(_cursor.CursorError):
        _cursor.decode(base64.urlsafe_b64encode(payload).decode()[:400])
    with pytest.raises(_cursor.CursorError):
        _cursor.decode(base64.urlsafe_b64encode(payload).decode())
