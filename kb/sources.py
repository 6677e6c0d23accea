"""Walking a root: which files are documents, and reading them without ever leaving the root.

The walk and `confine` apply the same rules, so a file that the walk would pass over (hidden,
ignored, a symlink, not a regular file, a name no client could spell) can never be served by
naming it.

Every read of a document file goes through one opener, `_open_inside`, whether through
`read_inside` (indexing, in `ingest._load`'s worker processes, and serving) or `confine` (the check
of a path a client names): the path is opened relative to the root one component at a time with
O_NOFOLLOW|O_NONBLOCK, and the open descriptor is checked with fstat: a regular file, on the root's
file system, within the size cap, with no second hard link unless allowed. What was checked is
what is read, so a folder or file swapped for a symlink, a FIFO or a device between the walk and
the read is refused, never followed, and never blocks. The walk descends through open folder
descriptors the same way, so it lists only what lies inside the root as it walks; a path named by
the watcher whose folders are no longer real folders inside the root is gone, and what was indexed
under it leaves the index. This needs POSIX `openat` (kb's worker processes need POSIX too).

Policies:
- Symlinks are never followed, wherever they point; the walk reports each one in `skipped`. A link
  out of the root would serve outside text; a link inside only names a file that is indexed under
  its own path anyway, and following it would let a visible name serve a hidden or ignored file,
  and make every read depend on a resolution that can change between the check and the read.
- Hard links: a file with a second link may be a file from elsewhere (`/etc/passwd`) linked in,
  and nothing on disk says which name came first. Such files are skipped and refused unless the
  `allow_hardlinks` setting (KB_ALLOW_HARDLINKS) is on, for trees that use hard links on purpose
  (backup snapshots, deduplicating tools).
- Names: a file or folder whose path `check_path_syntax` would refuse (a name that is not valid
  UTF-8, control characters such as a newline, a backslash) is skipped with that reason, shown
  escaped. Indexing such names under an escaped spelling would need a second spelling at every
  read path, for names that are nearly always accidents; skipping keeps one rule for both sides.
- A folder or file on another file system than the root (a mount point inside it) is skipped.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import re
import stat
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from kb.errors import PathRefusedError
from kb.extractors import format_for
from kb.models import Format

if TYPE_CHECKING:
    import pathspec

logger = logging.getLogger(__name__)

IGNORE_FILES = (".gitignore", ".kbignore")
IGNORE_FILE_MAX_BYTES = 1024 * 1024

# O_NONBLOCK: opening a FIFO must not wait for a writer (reads of a regular file ignore the flag).
_O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_O_FOLDER = _O_FILE | os.O_DIRECTORY

LINK_OUTSIDE = "symlink points outside the root"
LINK_INSIDE = "symlink inside the root (not followed; what it points to is indexed under its own path)"
LINK_BROKEN = "broken symlink or symlink loop"
OTHER_FILE_SYSTEM = "on another file system than the root (a mount point inside it)"
NOT_FOUND = "no such file under the root"


@dataclass(frozen=True)
class SourceFile:
    """A file the walk found: a candidate document, read later through `read_inside`."""

    path: str  # root-relative POSIX path
    size: int
    mtime_ns: int
    format: Format


@dataclass
class WalkResult:
    files: list[SourceFile] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    # Files of kinds kb does not read, by lowercased extension ('' for none); hidden and ignored
    # ones are not counted.
    unsupported: Counter[str] = field(default_factory=Counter)


class IgnoreRules:
    """`.gitignore` and `.kbignore` files found anywhere under the root, each applying below its folder."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._specs: dict[str, pathspec.PathSpec | None] = {}
        self._above: dict[str, list[tuple[int, pathspec.PathSpec]]] = {}

    def _spec_for(self, folder: str) -> pathspec.PathSpec | None:
        if folder not in self._specs:
            lines: list[str] = []
            for name in IGNORE_FILES:
                lines.extend(_read_ignore_file(self._root / folder / name).splitlines())
            if lines:
                import pathspec  # only for a tree that has ignore files

                self._specs[folder] = pathspec.GitIgnoreSpec.from_lines(lines)
            else:
                self._specs[folder] = None
        return self._specs[folder]

    def _specs_above(self, folder: str) -> list[tuple[int, pathspec.PathSpec]]:
        """The rules of `folder` and of each folder above it, with its depth, the root's first: the
        same for every file in `folder`, so looked up once per folder."""
        if folder not in self._above:
            parts = folder.split("/") if folder else []
            specs = ((depth, self._spec_for("/".join(parts[:depth]))) for depth in range(len(parts) + 1))
            self._above[folder] = [(depth, spec) for depth, spec in specs if spec is not None]
        return self._above[folder]

    def is_ignored(self, rel: str, is_dir: bool = False) -> bool:
        """Whether any ignore file in a folder above `rel` excludes it (nearest folder wins last)."""
        specs = self._specs_above(rel.rpartition("/")[0])
        if not specs:
            return False
        parts = rel.split("/")
        ignored = False
        for depth, spec in specs:
            below = "/".join(parts[depth:]) + ("/" if is_dir else "")
            result = spec.check_file(below)
            if result.include is not None:
                ignored = result.include
        return ignored


def _read_ignore_file(path: Path) -> str:
    """An ignore file's text, or '' when there is none. Its text is never served, so a link is
    followed here (people link a shared .gitignore in); a FIFO or device is not waited on."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return ""
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return ""
    with open(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return handle.read(IGNORE_FILE_MAX_BYTES).decode("utf-8", errors="replace")


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


# Characters after which a name could be refused by `check_path_syntax` (besides unprintable ones).
_SUSPECT = re.compile(r"[\\%:]")


def _spelling_problem(rel: str, name: str) -> str | None:
    """Why no client could name `rel` (its last part `name` is new; the folders above passed):
    `check_path_syntax`'s reason, so the walk never lists what a read would refuse. Most names are
    plain, and pass without the full check."""
    if _SUSPECT.search(name) is None and name.isprintable():
        return None
    try:
        check_path_syntax(rel)
    except PathRefusedError as exc:
        return exc.reason
    return None


def _shown(rel: str) -> str:
    """`rel` as a report shows it: bytes that are not UTF-8 as \\xNN, control characters too."""
    if rel.isprintable():
        return rel
    try:
        text = rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that no file name decodes to
        text = rel.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(f"\\x{ord(ch):02x}" if ord(ch) < 32 or ord(ch) == 127 else ch for ch in text)


def _link_reason(root: Path, rel: str) -> str:
    """Why the symlink at `rel` is not followed (resolved only to say so; nothing is read)."""
    root = root.resolve()
    try:
        target = (root / rel).resolve(strict=True)
    except (OSError, RuntimeError):
        return LINK_BROKEN
    return LINK_INSIDE if target.is_relative_to(root) else LINK_OUTSIDE


def _why_not_opened(root: Path, dir_fd: int, name: str, rel: str, exc: OSError) -> str | None:
    """Why `name` in the folder `dir_fd` (the path `rel`) could not be opened; None when it is
    simply not there (also when a file stands where a folder was named)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return _link_reason(root, rel)
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return None
    return f"cannot open: {exc.strerror or exc}"


def _file_problem(
    st: os.stat_result, root_dev: int, max_bytes: int | None, allow_hardlinks: bool
) -> str | None:
    """Why a file with this (l)stat is not a document: one rule for the walk and for every read."""
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_dev != root_dev:
        return OTHER_FILE_SYSTEM
    if st.st_nlink > 1 and not allow_hardlinks:
        return (
            f"has {st.st_nlink} hard links, so it may be a file from outside the root linked in; "
            "set allow_hardlinks (KB_ALLOW_HARDLINKS=1) to index such files"
        )
    if max_bytes is not None and st.st_size > max_bytes:
        return f"larger than the size cap ({st.st_size} > {max_bytes} bytes)"
    return None


def _open_root(root: str | os.PathLike[str]) -> int:
    # The root itself is the user's choice: a link on the way to it is followed.
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


class _Walker:
    """The rules of the walk, applied to whole trees or to single paths (for the watcher)."""

    def __init__(self, root: Path, max_file_bytes: int, exclude: Path | None, allow_hardlinks: bool) -> None:
        self.root = root.resolve()
        self.rules = IgnoreRules(self.root)
        self.max_file_bytes = max_file_bytes
        self.allow_hardlinks = allow_hardlinks
        self.excluded = exclude.resolve() if exclude is not None else None
        self.result = WalkResult()
        self._seen_dirs: set[tuple[int, int]] = set()
        self._root_dev = 0

    def _skip(self, rel: str, reason: str) -> None:
        self.result.skipped.append((_shown(rel), reason))

    def _is_excluded(self, rel: str) -> bool:
        return self.excluded is not None and self.root / rel == self.excluded

    def examine_root(self) -> None:
        fd = _open_root(self.root)
        try:
            st = os.fstat(fd)
            self._root_dev = st.st_dev
            self._descend(fd, st, "")
        finally:
            os.close(fd)

    def examine(self, rel: str) -> None:
        """Add `rel` to the result: a document, a skipped file, or (for a folder) everything below.
        Each folder on the way is opened as the walk would reach it: one that is now a link or not
        a folder makes `rel` gone (a link is reported), so what was indexed below it is removed."""
        parts = rel.split("/")
        if any(_is_hidden(part) for part in parts):
            return
        if (problem := _spelling_problem(rel, rel)) is not None:
            self._skip(rel, problem)
            return
        try:
            fd = _open_root(self.root)
        except OSError:
            return
        try:
            self._root_dev = os.fstat(fd).st_dev
            for depth, part in enumerate(parts[:-1], 1):
                prefix = "/".join(parts[:depth])
                if self._is_excluded(prefix) or (opened := self._open_folder(fd, part, prefix)) is None:
                    return
                os.close(fd)
                fd = opened[0]
            self._visit(fd, parts[-1], rel, None)
        finally:
            os.close(fd)

    def _open_folder(self, dir_fd: int, name: str, rel: str) -> tuple[int, os.stat_result] | None:
        """The folder `name` of `dir_fd`, opened without following a link, if it may be walked."""
        try:
            fd = os.open(name, _O_FOLDER, dir_fd=dir_fd)
        except OSError as exc:
            reason = _why_not_opened(self.root, dir_fd, name, rel, exc)
            if reason is not None:
                self._skip(rel, reason)
            return None
        st = os.fstat(fd)
        if st.st_dev != self._root_dev:
            os.close(fd)
            self._skip(rel, OTHER_FILE_SYSTEM)
            return None
        return fd, st

    def _visit(self, dir_fd: int, name: str, rel: str, entry: os.DirEntry[str] | None) -> None:
        """`rel` (the entry `name` of the folder `dir_fd`): the folder listing already says what is
        a link, a folder or a plain file, so most entries cost one stat or none."""
        st: os.stat_result | None = None
        try:
            if entry is not None:
                is_link = entry.is_symlink()
                is_dir = not is_link and entry.is_dir(follow_symlinks=False)
            else:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                is_link, is_dir = stat.S_ISLNK(st.st_mode), stat.S_ISDIR(st.st_mode)
        except OSError:
            return  # gone
        if is_link:
            self._skip(rel, _link_reason(self.root, rel))
        elif is_dir:
            if self._is_excluded(rel) or self.rules.is_ignored(rel, is_dir=True):
                return
            if (opened := self._open_folder(dir_fd, name, rel)) is not None:
                try:
                    self._descend(*opened, rel)
                finally:
                    os.close(opened[0])
        elif (fmt := format_for(name)) is not None and not self.rules.is_ignored(rel):
            try:
                st = st or os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                return  # gone since the listing
            self._add_file(rel, st, fmt)
        elif fmt is None and not self.rules.is_ignored(rel):
            self.result.unsupported[posixpath.splitext(name)[1].lower()] += 1

    def _add_file(self, rel: str, st: os.stat_result, fmt: Format) -> None:
        problem = _file_problem(st, self._root_dev, self.max_file_bytes, self.allow_hardlinks)
        if problem is not None:
            self._skip(rel, problem)
        else:
            self.result.files.append(SourceFile(rel, st.st_size, st.st_mtime_ns, fmt))

    def _descend(self, fd: int, st: os.stat_result, rel_folder: str) -> None:
        if (st.st_dev, st.st_ino) in self._seen_dirs:
            return  # named twice (a folder and a path below it), or a bind mount looping back
        self._seen_dirs.add((st.st_dev, st.st_ino))
        try:
            with os.scandir(fd) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            self._skip(rel_folder or ".", f"cannot read folder: {exc.strerror or exc}")
            return
        for entry in entries:
            name = entry.name
            if _is_hidden(name):
                continue
            rel = f"{rel_folder}/{name}" if rel_folder else name
            if (problem := _spelling_problem(rel, name)) is not None:
                self._skip(rel, problem)
            else:
                self._visit(fd, name, rel, entry)


def walk(
    root: Path,
    *,
    max_file_bytes: int,
    exclude: Path | None = None,
    paths: Iterable[str] | None = None,
    allow_hardlinks: bool = False,
) -> WalkResult:
    """List the documents under `root` (or only at and below `paths`), and the files passed over.

    Hidden files and folders and ignored paths are passed over quietly; files of other kinds are
    counted by extension in `unsupported`; oversized files, non-regular files, symlinks, files
    with a second hard link (unless `allow_hardlinks`) and names no client could spell are
    reported in `skipped`.
    `exclude` (the index folder, when it sits inside the root) is never entered.
    """
    walker = _Walker(root, max_file_bytes, exclude, allow_hardlinks)
    if paths is None:
        walker.examine_root()
    else:
        for rel in sorted(set(paths)):
            walker.examine(rel)
    result = walker.result
    # A folder and a file inside it may both be named; list each file (and each skip) once.
    result.files = sorted({f.path: f for f in result.files}.values(), key=lambda f: f.path)
    result.skipped = list(dict.fromkeys(result.skipped))
    return result


def check_path_syntax(rel_path: str) -> str:
    """Refuse a path by its spelling alone, before anything on disk is looked at ('..' also when
    %-encoded, absolute, file:, control characters, text that is not UTF-8, backslashes, hidden
    segments); return it without leading or trailing slashes. Also the check for search's path
    filter, which names no single file, and for the names the walk lists.

    Raises:
        PathRefusedError: the spelling is refused.
    """
    if not rel_path:
        raise PathRefusedError(rel_path, "empty path")
    if not rel_path.isprintable():
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in rel_path):
            raise PathRefusedError(rel_path, "control characters are not allowed in paths")
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in rel_path):  # how an undecodable name reads
            raise PathRefusedError(rel_path, "the name is not valid UTF-8")
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


def confine(
    root: Path, rel_path: str, *, max_file_bytes: int | None = None, allow_hardlinks: bool = False
) -> Path:
    """The file a client names by its root-relative path, checked as a read of it would be (see
    `_open_inside`), for a read by `read_inside` that checks again.

    Raises:
        PathRefusedError: the path is malformed, goes through a symlink (its reason says whether
            the link leaves the root), names a hidden or ignored file, is not a regular file, has
            a second hard link, or is too large. Its cause is FileNotFoundError when nothing is there.
    """
    rel = check_path_syntax(rel_path)
    root = root.resolve()
    fd, _ = _open_inside(root, rel, max_bytes=max_file_bytes, allow_hardlinks=allow_hardlinks)
    os.close(fd)
    if IgnoreRules(root).is_ignored(rel):
        raise PathRefusedError(rel_path, "ignored by .gitignore or .kbignore")
    return root / rel


def read_inside(
    root: str | os.PathLike[str], file: str | Path, max_bytes: int, *, allow_hardlinks: bool = False
) -> tuple[bytes, os.stat_result]:
    """Read one file under `root`, at most `max_bytes`: the one way kb reads a document file, for
    indexing and for serving. `file` is a root-relative POSIX path (a str), or a Path below the
    resolved root (what `confine` returns).

    Raises:
        PathRefusedError: the file may not be read (see `confine`), or grew past the cap.
        OSError: the file could not be read once opened.
    """
    if isinstance(file, Path) and file.is_absolute():
        try:
            rel = file.relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            raise PathRefusedError(str(file), "not under the root") from None
    else:
        rel = str(file)
    fd, st = _open_inside(root, rel, max_bytes=max_bytes, allow_hardlinks=allow_hardlinks)
    with open(fd, "rb") as handle:
        # Sized by the file, not the cap: a read of n bytes allocates n bytes first, and mapping a
        # cap's worth of memory for a 2 KB page cost more than reading it. One byte more tells
        # whether the file grew since its stat; if so, the rest is read up to the cap.
        data = handle.read(min(st.st_size, max_bytes) + 1)
        if len(data) > st.st_size:
            data += handle.read(max(max_bytes + 1 - len(data), 0))
    if len(data) > max_bytes:
        raise PathRefusedError(rel, f"larger than the size cap ({max_bytes} bytes)")
    return data, st


def _open_inside(
    root: str | os.PathLike[str], rel: str, *, max_bytes: int | None, allow_hardlinks: bool
) -> tuple[int, os.stat_result]:
    """Open `rel` below `root` for reading, one component at a time, never following a link, and
    check the open descriptor; return it (the caller closes it) and its fstat.

    Raises:
        PathRefusedError: as `confine` says; the OSError that refused the path is its cause.
    """
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise PathRefusedError(rel, "empty, '.' and '..' segments are not allowed")
    try:
        fd = _open_root(root)
    except OSError as exc:
        raise PathRefusedError(rel, f"cannot open the root: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        root_dev = st.st_dev
        for depth, part in enumerate(parts, 1):
            last = depth == len(parts)
            try:
                if last:  # look first, so that a FIFO or device is not even opened in the usual case
                    before = os.stat(part, dir_fd=fd, follow_symlinks=False)
                    if not stat.S_ISREG(before.st_mode) and not stat.S_ISLNK(before.st_mode):
                        raise PathRefusedError(rel, "not a regular file")
                inner = os.open(part, _O_FILE if last else _O_FOLDER, dir_fd=fd)
            except OSError as exc:
                reason = _why_not_opened(Path(root), fd, part, "/".join(parts[:depth]), exc)
                raise PathRefusedError(rel, reason or NOT_FOUND) from exc
            os.close(fd)
            fd = inner
            st = os.fstat(fd)
            if st.st_dev != root_dev:
                raise PathRefusedError(rel, OTHER_FILE_SYSTEM)
        problem = _file_problem(st, root_dev, max_bytes, allow_hardlinks)
        if problem is not None:
            raise PathRefusedError(rel, problem)
    except BaseException:
        os.close(fd)
        raise
    return fd, st
