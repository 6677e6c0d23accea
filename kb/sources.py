"""Walking a root: which files are documents, and confining every path a client names to the root.

Both the walk and `confine` apply the same rules, so a file that the walk would pass over (hidden,
ignored, outside the root through a symlink, not a regular file) can never be served by naming it.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import pathspec

from kb.errors import PathRefusedError
from kb.extractors import format_for
from kb.models import Format

logger = logging.getLogger(__name__)

IGNORE_FILES = (".gitignore", ".kbignore")


@dataclass(frozen=True)
class SourceFile:
    """A file the walk found: a candidate document."""

    path: str  # root-relative POSIX path
    abspath: str
    size: int
    mtime_ns: int
    format: Format


@dataclass
class WalkResult:
    files: list[SourceFile] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


class IgnoreRules:
    """`.gitignore` and `.kbignore` files found anywhere under the root, each applying below its folder."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._specs: dict[str, pathspec.PathSpec | None] = {}

    def _spec_for(self, folder: str) -> pathspec.PathSpec | None:
        if folder not in self._specs:
            lines: list[str] = []
            for name in IGNORE_FILES:
                try:
                    text = (self._root / folder / name).read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
                lines.extend(text.splitlines())
            self._specs[folder] = pathspec.GitIgnoreSpec.from_lines(lines) if lines else None
        return self._specs[folder]

    def is_ignored(self, rel: str, is_dir: bool = False) -> bool:
        """Whether any ignore file in a folder above `rel` excludes it (nearest folder wins last)."""
        parts = rel.split("/")
        ignored = False
        for depth in range(len(parts)):
            folder = "/".join(parts[:depth])
            spec = self._spec_for(folder)
            if spec is None:
                continue
            below = "/".join(parts[depth:]) + ("/" if is_dir else "")
            result = spec.check_file(below)
            if result.include is not None:
                ignored = result.include
        return ignored


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


class _Walker:
    """The rules of the walk, applied to whole trees or to single paths (for the watcher)."""

    def __init__(self, root: Path, max_file_bytes: int, exclude: Path | None) -> None:
        self.root = root.resolve()
        self.rules = IgnoreRules(self.root)
        self.max_file_bytes = max_file_bytes
        self.excluded = exclude.resolve() if exclude is not None else None
        self.result = WalkResult()
        self._seen_dirs: set[tuple[int, int]] = set()

    def examine(self, rel: str) -> None:
        """Add `rel` to the result: a document, a skipped file, or (for a folder) everything below."""
        if any(_is_hidden(part) for part in rel.split("/")):
            return
        path = self.root / rel
        try:
            is_link = path.is_symlink()
            st = path.stat()  # follows links
        except OSError:
            if path.is_symlink():
                self.result.skipped.append((rel, "broken symlink or symlink loop"))
            return
        if stat.S_ISDIR(st.st_mode):
            target = path.resolve()
            if self.excluded is not None and target == self.excluded:
                return
            if is_link and not target.is_relative_to(self.root):
                self.result.skipped.append((rel, "symlink points outside the root"))
            elif not self.rules.is_ignored(rel, is_dir=True):
                self._descend(path, rel, st)
            return
        fmt = format_for(path.name)
        if fmt is None or self.rules.is_ignored(rel):
            return
        if is_link and not path.resolve().is_relative_to(self.root):
            self.result.skipped.append((rel, "symlink points outside the root"))
        else:
            self._add_file(rel, str(path), st, fmt)

    def _add_file(self, rel: str, abspath: str, st: os.stat_result, fmt: Format) -> None:
        if not stat.S_ISREG(st.st_mode):
            self.result.skipped.append((rel, "not a regular file"))
        elif st.st_size > self.max_file_bytes:
            self.result.skipped.append(
                (rel, f"larger than the size cap ({st.st_size} > {self.max_file_bytes} bytes)")
            )
        else:
            self.result.files.append(SourceFile(rel, abspath, st.st_size, st.st_mtime_ns, fmt))

    def _examine_entry(self, entry: os.DirEntry[str], rel: str) -> None:
        """`examine` for an entry of a folder being walked: the folder listing already says what is
        a plain file or folder, so most entries cost one stat or none (symlinks take the long way)."""
        if _is_hidden(entry.name):
            return
        try:
            if entry.is_symlink():
                self.examine(rel)
            elif entry.is_dir(follow_symlinks=False):
                if self.excluded is not None and entry.path == str(self.excluded):
                    return
                if not self.rules.is_ignored(rel, is_dir=True):
                    self._descend(Path(entry.path), rel, entry.stat(follow_symlinks=False))
            elif (fmt := format_for(entry.name)) is not None and not self.rules.is_ignored(rel):
                self._add_file(rel, entry.path, entry.stat(follow_symlinks=False), fmt)
        except OSError:
            return  # gone since the listing

    def examine_root(self) -> None:
        self._descend(self.root, "", self.root.stat())

    def _descend(self, folder: Path, rel_folder: str, st: os.stat_result) -> None:
        if (st.st_dev, st.st_ino) in self._seen_dirs:
            return  # a symlink loop, or a second link to a folder already walked
        self._seen_dirs.add((st.st_dev, st.st_ino))
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            self.result.skipped.append((rel_folder or ".", f"cannot read folder: {exc.strerror or exc}"))
            return
        for entry in entries:
            self._examine_entry(entry, f"{rel_folder}/{entry.name}" if rel_folder else entry.name)


def walk(
    root: Path, *, max_file_bytes: int, exclude: Path | None = None, paths: Iterable[str] | None = None
) -> WalkResult:
    """List the documents under `root` (or only at and below `paths`), and the files passed over.

    Hidden files and folders, ignored paths and unsupported extensions are passed over quietly;
    oversized files, non-regular files and links that leave the root are reported in `skipped`.
    `exclude` (the index folder, when it sits inside the root) is never entered.
    """
    walker = _Walker(root, max_file_bytes, exclude)
    if paths is None:
        walker.examine_root()
    else:
        for rel in sorted(set(paths)):
            walker.examine(rel)
    result = walker.result
    # A folder and a file inside it may both be named; list each file once.
    result.files = sorted({f.path: f for f in result.files}.values(), key=lambda f: f.path)
    return result


def check_path_syntax(rel_path: str) -> str:
    """Refuse a path by its spelling alone, before anything on disk is looked at ('..' also when
    %-encoded, absolute, file:, control characters, backslashes, hidden segments); return it
    without leading or trailing slashes. Also the check for search's path filter, which names no
    single file.

    Raises:
        PathRefusedError: the spelling is refused.
    """
    if not rel_path:
        raise PathRefusedError(rel_path, "empty path")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in rel_path):
        raise PathRefusedError(rel_path, "control characters are not allowed in paths")
    if "\\" in rel_path:
        raise PathRefusedError(rel_path, "use '/' as the separator")
    if (
        rel_path.lower().startswith("file:")
        or rel_path.startswith("/")
        or (len(rel_path) > 1 and rel_path[1] == ":")
    ):
        raise PathRefusedError(rel_path, "paths are relative to the knowledge base root")
    # Decode until stable so that '%2e%2e' and '%252e%252e' are seen for what they are.
    decoded = rel_path
    for _ in range(4):
        once = unquote(decoded)
        if once == decoded:
            break
        decoded = once
    for spelling in {rel_path, decoded}:
        if "\\" in spelling or "\x00" in spelling:
            raise PathRefusedError(rel_path, "encoded separators or NUL are not allowed")
        for part in spelling.split("/"):
            if part in ("..", "."):
                raise PathRefusedError(rel_path, "'.' and '..' segments are not allowed")
            if _is_hidden(part):
                raise PathRefusedError(rel_path, "hidden files and folders are not served")
    return rel_path.strip("/")


def confine(root: Path, rel_path: str, *, max_file_bytes: int | None = None) -> Path:
    """Resolve a root-relative path to a readable document file inside `root`.

    Raises:
        PathRefusedError: the path is malformed, escapes the root (also through a symlink), names a
            hidden or ignored file, or is not a regular file.
    """
    rel = check_path_syntax(rel_path)
    root = root.resolve()
    candidate = root / rel
    try:
        resolved = candidate.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise PathRefusedError(rel_path, "no such file under the root") from exc
    if not resolved.is_relative_to(root):
        raise PathRefusedError(rel_path, "resolves outside the root")
    if IgnoreRules(root).is_ignored(rel):
        raise PathRefusedError(rel_path, "ignored by .gitignore or .kbignore")
    st = resolved.stat()
    if not stat.S_ISREG(st.st_mode):
        raise PathRefusedError(rel_path, "not a regular file")
    if max_file_bytes is not None and st.st_size > max_file_bytes:
        raise PathRefusedError(rel_path, "larger than the size cap")
    return resolved


def read_inside(root: Path, file: Path, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """Read a confined file, at most `max_bytes`, without following a link on the way.

    `confine` resolved `file` a moment ago, but a folder or the file itself could have been swapped
    for a link out of the root since. Opening one component at a time below the root with
    O_NOFOLLOW closes that gap where the platform allows it.

    Raises:
        PathRefusedError: a component became a link, or the file is no longer a regular file or
            has outgrown the size cap.
    """
    rel = file.relative_to(root.resolve())
    shown = rel.as_posix()
    try:
        if _OPEN_AT:
            fd = _open_below(root.resolve(), rel.parts)
        else:  # pragma: no cover - Windows: confine's check a moment ago is the guard
            fd = os.open(file, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise PathRefusedError(shown, "the path changed while it was being read") from exc
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise PathRefusedError(shown, "not a regular file")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PathRefusedError(shown, "larger than the size cap")
    return data, st


_OPEN_AT = os.open in os.supports_dir_fd and hasattr(os, "O_NOFOLLOW") and hasattr(os, "O_DIRECTORY")


def _open_below(root: Path, parts: tuple[str, ...]) -> int:
    nofollow = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            inner = os.open(part, nofollow | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        # O_NONBLOCK: a fifo swapped in must not hang the open; reads of a regular file ignore it.
        return os.open(parts[-1], nofollow | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)
