"""Writing: one batch of changes made while holding Tantivy's writer (see `_lock` for the lock)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tantivy

from kb.index._copies import PassageKeys
from kb.index._schema import file_record, file_record_query, section_records
from kb.models import Document, ManifestEntry


class IndexBatch:
    """Changes to the index made while holding its writer; each `commit` is atomic."""

    def __init__(self, writer: tantivy.IndexWriter, schema: tantivy.Schema, reload: Callable[[], None]) -> None:
        self._writer = writer
        self._schema = schema
        self._reload = reload
        self.pending = 0

    def put(self, doc: Document, entry: ManifestEntry, keys: Sequence[PassageKeys] | None = None) -> None:
        """Replace everything stored for `doc.path` with this document and its manifest record;
        `keys` are the document's `passage_keys`, if they were computed ahead."""
        self._writer.delete_documents_by_term("path", doc.path)
        for record in section_records(doc, entry, keys):
            self._writer.add_document(record)
        self._writer.add_document(file_record(entry))
        self.pending += 1

    def put_manifest(self, entry: ManifestEntry) -> None:
        """Update only the manifest record (the file's stat changed, its content did not)."""
        self._writer.delete_documents_by_query(file_record_query(self._schema, entry.path))
        self._writer.add_document(file_record(entry))
        self.pending += 1

    def delete(self, path: str) -> None:
        """Remove a document's sections and manifest record."""
        self._writer.delete_documents_by_term("path", path)
        self.pending += 1

    def commit(self) -> None:
        """Make every change so far durable and visible, atomically."""
        self._writer.commit()
        self._reload()
        self.pending = 0
