"""The data that crosses kb's layers, as pydantic models."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Format = Literal["md", "txt", "pdf", "html", "docx", "odt", "pptx", "epub", "ipynb", "rst"]
FORMATS: tuple[Format, ...] = ("md", "txt", "pdf", "html", "docx", "odt", "pptx", "epub", "ipynb", "rst")
RENDERED_FORMATS: frozenset[Format] = frozenset({"pdf", "docx", "odt", "pptx", "epub", "ipynb"})
"""Formats whose file is not text a reader takes as written (a PDF, a zip of XML, a notebook's JSON
with its outputs): their resource serves the extracted text instead, and they are extracted in a
worker process, within the time budget, since their parsers unpack and build far more than the
file's bytes."""


# Each model's validator and serializer are built on first use, not at import: a command uses a few
# of them (a no-change `kb index` only its report), and building all costs tens of milliseconds.
_DEFERRED = ConfigDict(defer_build=True)


@dataclass(frozen=True)
class DocId:
    """What search returns and fetch takes: a document (`path`) or one passage (`path#fragment`)."""

    path: str
    fragment: str | None = None

    def __str__(self) -> str:
        return self.path if self.fragment is None else f"{self.path}#{self.fragment}"

    @classmethod
    def readings(cls, text: str) -> list[DocId]:
        """The ways `text` can be read, likeliest first: all of it as a path, then, when it holds a
        '#', the path before the last '#' and the passage after it. A path may itself contain '#',
        so which reading names something is for the index (or the folder) to say."""
        path, hash_sign, fragment = text.rpartition("#")
        if not hash_sign or not path or not fragment:
            return [cls(text)]
        return [cls(text), cls(path, fragment)]


def normalize_tags(tags: Iterable[str]) -> list[str]:
    """Tags as kb stores and matches them: trimmed, lowercased, each once, sorted."""
    return sorted({tag.strip().lower() for tag in tags} - {""})


class Section(BaseModel):
    """One passage of a document: the text under a heading, one PDF page, or a run of paragraphs."""

    model_config = _DEFERRED

    fragment: str = Field(
        description="Stable id of the passage within its document, e.g. 'install-linux' or 'page-3'"
    )
    heading: str | None = Field(default=None, description="Heading trail, e.g. 'Install > Linux'")
    page: int | None = Field(default=None, description="PDF page or slide number, counting from 1")
    text: str
    line_start: int | None = Field(
        default=None, description="First line of the passage in the file (1-based)"
    )
    line_end: int | None = Field(default=None, description="Last line of the passage in the file (1-based)")


class Document(BaseModel):
    """What an extractor makes of one file."""

    model_config = _DEFERRED

    path: str = Field(description="Root-relative POSIX path")
    format: Format
    title: str
    tags: list[str] = Field(default_factory=list, description="Normalized (see `normalize_tags`)")
    sections: list[Section] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list, description="Parts that could not be extracted")

    @field_validator("tags")
    @classmethod
    def _normalize_tags(cls, tags: list[str]) -> list[str]:
        return normalize_tags(tags)  # once, as the extractor hands the document over


class ManifestEntry(BaseModel):
    """What the index remembers of one file, to decide whether it must be re-read."""

    model_config = _DEFERRED

    path: str
    size: int
    mtime_ns: int
    sha256: str
    format: Format
    title: str
    tags: list[str] = Field(default_factory=list, description="Lowercased front matter tags")


class SearchHit(BaseModel):
    """One ranked passage."""

    model_config = _DEFERRED

    id: str = Field(description="'path' or 'path#fragment'; pass it to fetch")
    path: str
    fragment: str | None = Field(default=None, exclude=True)
    title: str
    url: str = ""
    heading: str | None = None
    page: int | None = None
    score: float
    snippet: str
    copies: list[str] = Field(default_factory=list, description="Other documents with the same passage")


class SearchResults(BaseModel):
    """One page of search results."""

    model_config = _DEFERRED

    query: str
    results: list[SearchHit]
    total: int = Field(
        description="Number of matching documents (or passages when all passages were asked for)"
    )
    next_offset: int | None = None
    approximate: bool = Field(
        default=False, description="True when no exact match existed and fuzzy terms were used"
    )
    corrections: dict[str, list[str]] = Field(
        default_factory=dict, description="Each unknown word as typed, and the indexed terms used instead"
    )
    semantic_coverage: float | None = Field(
        default=None,
        description="Share of passages also searched by meaning (below 1 while kb is still embedding "
        "them); null when semantic search is off",
    )


class StoredDocument(BaseModel):
    """A document as the index holds it, for fetch and resources."""

    model_config = _DEFERRED

    path: str
    format: Format
    title: str
    tags: list[str]
    size: int
    mtime_ns: int
    sections: list[Section]


class IndexStats(BaseModel):
    """What `kb status` reports."""

    model_config = _DEFERRED

    root: str
    index_dir: str
    documents: int
    sections: int
    size_bytes: int
    last_indexed: datetime | None
    schema_version: int


class FileProblem(BaseModel):
    """A file that was not indexed, and why."""

    model_config = _DEFERRED

    path: str
    error: str


class SkippedFile(BaseModel):
    model_config = _DEFERRED

    path: str
    reason: str


class SyncReport(BaseModel):
    """The outcome of one sync; the JSON of `kb index --json`."""

    model_config = _DEFERRED

    root: str
    index_dir: str
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: list[FileProblem] = Field(default_factory=list)
    skipped: list[SkippedFile] = Field(default_factory=list)
    unsupported: dict[str, int] = Field(
        default_factory=dict, description="Files of kinds kb does not read, by extension ('' for none)"
    )
    seconds: float = 0.0
    embedded: int = Field(default=0, description="Passages given a vector in this run")
    embedding_seconds: float = Field(default=0.0, description="Time spent embedding, after `seconds`")
    semantic_coverage: float | None = Field(
        default=None, description="Share of all passages that have a vector; null when semantic search is off"
    )
    # Which documents changed, for change notifications; not part of the JSON report.
    added_paths: list[str] = Field(default_factory=list, exclude=True)
    updated_paths: list[str] = Field(default_factory=list, exclude=True)
    removed_paths: list[str] = Field(default_factory=list, exclude=True)

    @property
    def changed_documents(self) -> bool:
        """Whether any document was added, updated or removed."""
        return bool(self.added_paths or self.updated_paths or self.removed_paths)
