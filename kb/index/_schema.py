"""What the index stores: the Tantivy schema and the two kinds of records.

A *section* record per passage (what search ranks) and a *file* record per document (the
manifest that lets a sync skip unchanged files), both keyed by the document's path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import tantivy

from kb.index._copies import SKETCH_FIELDS, PassageKeys, passage_keys
from kb.index._english import SAMPLE_CHARS
from kb.index._variants import family
from kb.models import Document, ManifestEntry, Section

SCHEMA_VERSION = 7  # 7: translation families; 6: near-copy sketches by one-permutation MinHash, stat columns
# Title, heading and body: words lowercased, accents folded ('café' is 'cafe', 'straße' is 'strasse')
# and English stems. Tantivy keeps no analyzer in the index, so every opening registers it.
TEXT_TOKENIZER = "kb_text"


def text_analyzer(*, stem: bool = True) -> tantivy.TextAnalyzer:
    """The analyzer of the text fields (without the stemmer: for prefixes, which stemming would cut)."""
    builder = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
    )
    if stem:
        builder = builder.filter(tantivy.Filter.stemmer("english"))
    return builder.build()


def open_tantivy(path: str) -> tantivy.Index:
    """The Tantivy index in `path` (created if absent), with kb's analyzer registered."""
    index = tantivy.Index(build_schema(), path=path, reuse=True)
    index.register_tokenizer(TEXT_TOKENIZER, text_analyzer())
    return index


def build_schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("kind", stored=True, tokenizer_name="raw")  # "section" | "file"
    sb.add_text_field("path", stored=True, tokenizer_name="raw", fast=True)
    sb.add_text_field("fragment", stored=True, tokenizer_name="raw")
    sb.add_text_field("title", stored=True, tokenizer_name=TEXT_TOKENIZER)
    sb.add_text_field("heading", stored=True, tokenizer_name=TEXT_TOKENIZER)
    sb.add_text_field("body", stored=True, tokenizer_name=TEXT_TOKENIZER)
    sb.add_text_field("tags", stored=True, tokenizer_name="raw")
    sb.add_text_field("format", stored=True, tokenizer_name="raw")
    sb.add_integer_field("page", stored=True, indexed=True)
    sb.add_integer_field("ordinal", stored=True, fast=True)
    # A number per document, so search can group hits by document from a fast field instead of
    # loading each hit's stored fields (~30 µs a hit).
    sb.add_integer_field("doc_num", fast=True)
    # The same for a passage's words (see `_copies.passage_key`), so copies of one passage in several
    # documents (a book's two trees, one page per product version) take one result slot.
    sb.add_integer_field("content", fast=True)
    # A fingerprint of the passage's word sequences (see `_copies.passage_sketch`), so near copies
    # (a version's edits, a renamed product) take one slot too.
    for field in SKETCH_FIELDS:
        sb.add_integer_field(field, fast=True)
    # The passage's document's translations (see `_variants.family`), so they take one slot; and
    # in the passages of an English or untagged document, the same number: whether a family has
    # such an original, and which passage an English question is shown.
    sb.add_integer_field("family", fast=True)
    sb.add_integer_field("original", indexed=True, fast=True)
    # Which vector the passage needs (see `vector_key`): indexed to find a vector's passages, fast to
    # list the keys without loading records.
    sb.add_integer_field("vector_key", indexed=True, fast=True)
    sb.add_integer_field("line_start", stored=True)
    sb.add_integer_field("line_end", stored=True)
    sb.add_integer_field("mtime", stored=True, indexed=True, fast=True)  # seconds since the epoch
    # File records: the stat a sync compares, as columns (see `SearchIndex.file_stats`).
    sb.add_integer_field("size", fast=True)
    sb.add_integer_field("mtime_ns", fast=True)
    sb.add_text_field("manifest", stored=True, tokenizer_name="raw")  # ManifestEntry JSON, file records only
    return sb.build()


def doc_num(path: str) -> int:
    """A stable signed 64-bit number for a path (a hash; a collision would only merge two
    documents' hits in one result list)."""
    return int.from_bytes(hashlib.blake2b(path.encode(), digest_size=8).digest(), "big", signed=True)


EMBEDDED_CHARS = 1_500  # the encoder reads ~128 word pieces; more text would only cost tokenizing


def passage_text(title: str, heading: str, body: str) -> str:
    """What a passage's vector is made from: its document's title, its heading, then its words."""
    head = title if not heading or heading == title else f"{title}: {heading}"
    return f"{head}\n{body}"[:EMBEDDED_CHARS]


def vector_key(text: str) -> int:
    """The key of the vector of `text` (`passage_text`): equal texts share one vector."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def section_records(
    doc: Document, entry: ManifestEntry, keys: Sequence[PassageKeys] | None = None
) -> list[tantivy.Document]:
    """One record per section of `doc`, in order; `keys` are its `passage_keys` if known."""
    mtime = entry.mtime_ns // 1_000_000_000
    num = doc_num(doc.path)
    translations = family(doc.path, lambda: _opening(doc))
    keys = passage_keys([doc])[0] if keys is None else keys
    records = []
    for ordinal, (section, key) in enumerate(zip(doc.sections, keys, strict=True)):
        record = tantivy.Document(
            kind="section",
            path=doc.path,
            fragment=section.fragment,
            title=doc.title,
            heading=section.heading or "",
            body=section.text,
            format=doc.format,
            ordinal=ordinal,
            doc_num=num,
            family=translations.number,
            content=key.exact,
            **dict(zip(SKETCH_FIELDS, key.near, strict=True)),
            vector_key=vector_key(passage_text(doc.title, section.heading or "", section.text)),
            mtime=mtime,
        )
        if translations.original:
            record.add_integer("original", translations.number)
        for tag in entry.tags:
            record.add_text("tags", tag)
        if section.page is not None:
            record.add_integer("page", section.page)
        if section.line_start is not None and section.line_end is not None:
            record.add_integer("line_start", section.line_start)
            record.add_integer("line_end", section.line_end)
        records.append(record)
    return records


def _opening(doc: Document) -> str:
    """The start of a document's text, enough to tell its language."""
    texts, size = [], 0
    for section in doc.sections:
        texts.append(section.text)
        size += len(section.text)
        if size >= SAMPLE_CHARS:
            break
    return "\n".join(texts)


def file_record(entry: ManifestEntry) -> tantivy.Document:
    """The manifest record of one file."""
    return tantivy.Document(
        kind="file",
        path=entry.path,
        title=entry.title,
        format=entry.format,
        doc_num=doc_num(entry.path),
        mtime=entry.mtime_ns // 1_000_000_000,
        size=entry.size,
        mtime_ns=entry.mtime_ns,
        manifest=entry.model_dump_json(),
    )


def file_record_query(schema: tantivy.Schema, path: str) -> tantivy.Query:
    """The query that finds the manifest record of `path`."""
    return tantivy.Query.boolean_query(
        [
            (tantivy.Occur.Must, tantivy.Query.term_query(schema, "kind", "file")),
            (tantivy.Occur.Must, tantivy.Query.term_query(schema, "path", path)),
        ]
    )


def section_from_record(record: tantivy.Document) -> Section:
    return Section(
        fragment=text_of(record, "fragment"),
        heading=text_of(record, "heading") or None,
        page=int_of(record, "page"),
        text=text_of(record, "body"),
        line_start=int_of(record, "line_start"),
        line_end=int_of(record, "line_end"),
    )


# Tantivy's stub types every stored value as Any | None; these read one with the type kb stored.
def text_of(record: tantivy.Document, field: str) -> str:
    value = record.get_first(field)
    return value if isinstance(value, str) else ""


def int_of(record: tantivy.Document, field: str) -> int | None:
    value = record.get_first(field)
    return value if isinstance(value, int) else None
