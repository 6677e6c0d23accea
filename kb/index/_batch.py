"""Writing: one batch of changes under Tantivy's writer lock, and who holds that lock.

Tantivy allows one writer per index folder, across processes. Whoever takes it leaves its pid and
command line beside it, so a process kept waiting can say who is writing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import tantivy

from kb.index._schema import file_record, section_records
from kb.models import Document, ManifestEntry

if TYPE_CHECKING:
    from kb.index._index import SearchIndex

HOLDER_FILE = "kb-writer.json"


class IndexBatch:
    """Changes to the index made while holding its writer; each `commit` is atomic."""

    def __init__(self, index: SearchIndex, writer: tantivy.IndexWriter) -> None:
        self._index = index
        self._writer = writer
        self.pending = 0

    def put(self, doc: Document, entry: ManifestEntry) -> None:
        """Replace everything stored for `doc.path` with this document and its manifest record."""
        self._writer.delete_documents_by_term("path", doc.path)
        for record in section_records(doc, entry):
            self._writer.add_document(record)
        self._writer.add_document(file_record(entry))
        self.pending += 1

    def put_manifest(self, entry: ManifestEntry) -> None:
        """Update only the manifest record (the file's stat changed, its content did not)."""
        self._writer.delete_documents_by_query(self._index.file_record_query(entry.path))
        self._writer.add_document(file_record(entry))
        self.pending += 1

    def delete(self, path: str) -> None:
        """Remove a document's sections and manifest record."""
        self._writer.delete_documents_by_term("path", path)
        self.pending += 1

    def commit(self) -> None:
        """Make every change so far durable and visible, atomically."""
        self._writer.commit()
        self._index.reload()
        self.pending = 0


def is_lock_busy(exc: ValueError) -> bool:
    return "LockBusy" in str(exc) or "lock" in str(exc).lower()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_of(index_dir: Path) -> str | None:
    """Describe the live process holding the writer, if it left its name."""
    try:
        info = json.loads((index_dir / HOLDER_FILE).read_text())
    except (OSError, ValueError):
        return None
    pid = int(info.get("pid", 0))
    if not pid or not pid_alive(pid):
        return None
    return f"pid {pid} ({info.get('command', '?')})"


def command_line() -> str:
    try:
        return (
            Path("/proc/self/cmdline")
            .read_bytes()
            .replace(b"\0", b" ")
            .decode(errors="replace")
            .strip()[:200]
        )
    except OSError:
        return "kb"
