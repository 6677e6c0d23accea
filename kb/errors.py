"""The exceptions kb raises. Every one derives from `KbError`, so a caller can catch them all.

    KbError
    ├── ConfigError            bad settings or arguments (CLI exit 2)
    │   ├── IndexMismatchError the index was built for another root or schema (names --rebuild)
    │   ├── RootMissingError   the folder of documents is gone or not a folder (carries root)
    │   └── IndexDamagedError  the index folder is kb's but cannot be read (names --rebuild)
    ├── IndexLockedError       another process holds the index writer (CLI exit 3)
    ├── ExtractionError        one file could not be turned into a Document (carries path)
    ├── PathRefusedError       a path would escape the root or names a hidden/ignored file
    ├── DocumentNotFoundError  no indexed document or passage has this id (carries doc_id)
    │   └── NotIndexedYetError the file exists, but the first sync has not reached it yet
    └── QueryError             a search request is out of bounds (carries query)

Only the CLI turns these into messages and exit codes; the MCP server turns them into tool errors.
"""

from __future__ import annotations

import shlex


class KbError(Exception):
    """The root of every error kb raises on purpose."""


class ConfigError(KbError):
    """Settings or arguments that cannot work; the message says which and how to fix it."""


class IndexMismatchError(ConfigError):
    """The index folder holds an index built for another root or another schema version."""

    def __init__(self, index_dir: str, reason: str) -> None:
        self.index_dir = index_dir
        self.reason = reason
        super().__init__(
            f"{reason}; run `kb index ROOT --rebuild --index-dir {index_dir}` to rebuild it, "
            "or point --index-dir elsewhere"
        )


class RootMissingError(ConfigError):
    """The folder of documents is gone (deleted, moved away) or no longer a folder.

    A sync raises it instead of removing every document, so the index keeps its last commit.
    """

    def __init__(self, root: str, reason: str) -> None:
        self.root = root
        self.reason = reason
        super().__init__(
            f"the folder of documents {root} {reason}; the index was left as it was "
            "(restore the folder, or give kb its new path)"
        )


class IndexDamagedError(ConfigError):
    """The index folder is one kb made, but its files cannot be read (corrupt, truncated, missing)."""

    def __init__(self, index_dir: str, reason: str, root: str | None = None) -> None:
        self.index_dir = index_dir
        self.reason = reason
        self.root = root
        where = shlex.quote(root) if root else "ROOT"
        command = f"kb index {where} --rebuild --index-dir {shlex.quote(index_dir)}"
        super().__init__(f"the index at {index_dir} is damaged ({reason}); run `{command}` to rebuild it")


class IndexLockedError(KbError):
    """Another process holds the index writer lock for longer than we were willing to wait."""

    def __init__(self, index_dir: str, holder: str | None, waited: float) -> None:
        self.index_dir = index_dir
        self.holder = holder
        self.waited = waited
        who = holder or "another process"
        super().__init__(
            f"the index at {index_dir} is being written by {who}; waited {waited:.0f}s "
            "(raise --wait, or try again when it finishes)"
        )


class ExtractionError(KbError):
    """A file that cannot be indexed: corrupt, encrypted, binary, or unreadable."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class PathRefusedError(KbError):
    """A requested path that kb will not serve (outside the root, hidden, ignored, malformed)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"refused path {path!r}: {reason}")


class DocumentNotFoundError(KbError):
    """No indexed document or passage has this id."""

    def __init__(self, doc_id: str) -> None:
        self.doc_id = doc_id
        super().__init__(f"no document or passage with id {doc_id!r}; use the search tool to find valid ids")


class QueryError(KbError):
    """A search request outside its bounds (too long, bad cursor, bad filter)."""

    def __init__(self, query: str, reason: str) -> None:
        self.query = query
        self.reason = reason
        super().__init__(reason)


class NotIndexedYetError(DocumentNotFoundError):
    """A document that exists under the root but that the running first sync has not indexed yet."""

    def __init__(self, doc_id: str) -> None:
        self.doc_id = doc_id
        KbError.__init__(self, f"kb is still indexing and has not reached {doc_id!r} yet; try again shortly")
