"""The index folder: kb's sidecar beside Tantivy's files, creating it, checking it, wiping it.

A sidecar `kb-index.json` records the root the index was built for and the schema version, so an
index is never silently reused for another folder; it also marks the folder as kb's, so that
`--rebuild` may wipe a damaged one and never a folder kb did not make.
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from pathlib import Path

import tantivy

from kb.errors import ConfigError, IndexDamagedError, IndexLockedError, IndexMismatchError
from kb.index._lock import holder_of
from kb.index._schema import SCHEMA_VERSION, open_tantivy

logger = logging.getLogger(__name__)

SIDECAR = "kb-index.json"
# Files a fresh index folder may already hold (the repo ships index/ with these two).
KEEP_FILES = frozenset({"README.md", ".gitignore"})
# The passage vectors' folder (kb.semantic's). A rebuild keeps it: a vector is keyed by the text it
# was made from, so it is valid for any index, and the rebuilt one finds its vectors there.
VECTORS_FOLDER = "vectors"
_KEPT = KEEP_FILES | {VECTORS_FOLDER}
# What kb and Tantivy write in an index folder: kb's files are all named kb-*, Tantivy's are its
# meta files and locks, segment files named by a 32-digit hex id, and its atomic writes' temp files.
_KB_FILE = re.compile(r"kb-[a-z-]+\.(json|tmp|json\.tmp)")
_TANTIVY_META = "meta.json"
_TANTIVY_FILES = frozenset({_TANTIVY_META, ".managed.json", ".tantivy-meta.lock", ".tantivy-writer.lock"})
_SEGMENT_FILE = re.compile(r"[0-9a-f]{32}\.[a-z0-9.]+")
_TANTIVY_FILE = re.compile(rf"{_SEGMENT_FILE.pattern}|\.tmp\w+")
_SEGMENT_COMPONENTS = ("idx", "pos", "term", "store", "fast", "fieldnorm")
_FOOTER_MAGIC = 1337


def open_folder(index_dir: Path, root: Path | None, *, rebuild: bool) -> tuple[tantivy.Index, Path, Path]:
    """The Tantivy index in `index_dir`, created for `root` if the folder holds none, with the
    folder and the root resolved (`root=None`: the one the index was built for).

    Raises:
        IndexMismatchError: the index was built for another root or schema version (unless `rebuild`).
        IndexDamagedError: the folder is kb's but its index cannot be read (unless `rebuild`).
        ConfigError: there is no index and no root, the folder holds something else, or it cannot
            be created or written.
    """
    index_dir = index_dir.resolve()
    try:
        return _open(index_dir, root, rebuild)
    except OSError as exc:  # an unwritable folder, a read-only working directory, a full disk
        raise ConfigError(
            f"cannot use {index_dir} as the index folder: {exc.strerror or exc}; "
            "choose another with --index-dir or KB_INDEX_DIR"
        ) from exc


def _open(index_dir: Path, root: Path | None, rebuild: bool) -> tuple[tantivy.Index, Path, Path]:
    sidecar = index_dir / SIDECAR
    try:
        meta = _read_sidecar(sidecar)
        if meta is None:
            _ensure_empty_or_absent(index_dir)
    except IndexDamagedError as exc:
        if root is None:
            raise
        if not rebuild:
            raise IndexDamagedError(exc.index_dir, exc.reason, str(root.resolve())) from exc
        _wipe(index_dir)
        meta = None
    rebuild_older = root is not None  # a command that knows the root may rebuild an older kb's index
    if root is None:
        if meta is None:
            raise ConfigError(
                f"no kb index at {index_dir}; run `kb index ROOT --index-dir {index_dir}` first"
            )
        root = Path(meta["root"])
    root = root.resolve()
    if meta is not None:
        problem = None
        if meta.get("schema_version") != SCHEMA_VERSION:
            found = meta.get("schema_version")
            problem = f"the index at {index_dir} has schema version {found}, kb needs {SCHEMA_VERSION}"
        elif meta.get("root") != str(root):
            problem = f"the index at {index_dir} was built for {meta.get('root')}, not {root}"
        if problem is not None:
            older = meta.get("root") == str(root) and rebuild_older
            if not rebuild and not older:
                raise IndexMismatchError(str(index_dir), problem)
            if older:  # derived data in an older layout: made anew from the folder, which is the truth
                logger.warning("%s; rebuilding it from %s", problem, root)
            _wipe(index_dir)
            meta = None
    if meta is None:
        _create(index_dir, root)
    try:
        index = _open_checked(index_dir, root, thorough=rebuild)
    except IndexDamagedError:
        if not rebuild:
            raise
        logger.warning("the index at %s is damaged; wiping it to rebuild", index_dir)
        _wipe(index_dir)
        _create(index_dir, root)
        index = _open_checked(index_dir, root)
    return index, index_dir, root


def _read_sidecar(sidecar: Path) -> dict | None:
    """The sidecar's record, or None when there is none.

    Raises:
        IndexDamagedError: the sidecar exists but cannot be read as kb wrote it.
    """
    try:
        data = json.loads(sidecar.read_text())
    except (FileNotFoundError, NotADirectoryError):  # nothing there (or a file where the folder goes)
        return None
    except (OSError, ValueError) as exc:
        raise IndexDamagedError(str(sidecar.parent), f"{SIDECAR} cannot be read: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("root"), str) or "schema_version" not in data:
        raise IndexDamagedError(str(sidecar.parent), f"{SIDECAR} does not hold a root and a schema version")
    return data


def _create(index_dir: Path, root: Path) -> None:
    """Make `index_dir` a kb index folder for `root` (Tantivy's files come when it is opened)."""
    _ensure_empty_or_absent(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    # The sidecar goes first: a crash before Tantivy's files exist leaves a folder that the
    # next open recognizes as ours and finishes creating.
    sidecar = index_dir / SIDECAR
    tmp = sidecar.with_suffix(".tmp")
    tmp.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "root": str(root)}))
    tmp.replace(sidecar)


def _open_checked(index_dir: Path, root: Path, *, thorough: bool = False) -> tantivy.Index:
    """Open the Tantivy index and read a little of it, so damage shows here and not at the first search.

    With `thorough`, every committed segment file's checksum is verified too (it reads the whole
    index), which finds damage inside a file that Tantivy would only meet when it reads there.

    Raises:
        IndexDamagedError: Tantivy cannot open or read the index.
    """
    names = [entry.name for entry in index_dir.iterdir()]
    if _TANTIVY_META not in names and any(_SEGMENT_FILE.fullmatch(name) for name in names):
        # Tantivy would quietly start an empty index over the segments.
        raise IndexDamagedError(str(index_dir), f"{_TANTIVY_META} is missing", str(root))
    try:
        index = open_tantivy(str(index_dir))
        searcher = index.searcher()
        if searcher.num_docs:
            # Reading one record touches the term dictionary, the postings and the document store.
            query = tantivy.Query.term_query(index.schema, "kind", "file")
            for _, address in searcher.search(query, limit=1, count=False).hits:
                searcher.doc(address)
    except ValueError as exc:
        if "PermissionDenied" in str(exc):
            raise  # an unreadable folder is not a damaged index, and wiping it would not help
        logger.debug("opening the index at %s failed", index_dir, exc_info=True)
        raise IndexDamagedError(str(index_dir), _damage_reason(str(exc)), str(root)) from exc
    if thorough and (bad := _bad_checksum(index_dir)) is not None:
        raise IndexDamagedError(str(index_dir), f"{bad} does not match its checksum", str(root))
    return index


def _damage_reason(tantivy_message: str) -> str:
    """Tantivy's error in a few words: which file, and whether it is missing or corrupt."""
    if found := re.search(r"FileDoesNotExist\(\"([^\"]+)\"\)", tantivy_message):
        return f"{Path(found.group(1)).name} is missing"
    if found := re.search(r"(?:in file `\"|filepath: \")([^\"`]+)", tantivy_message):
        return f"{Path(found.group(1)).name} is corrupt"
    text = " ".join(tantivy_message.split())
    return f"Tantivy: {text if len(text) <= 160 else text[:159] + '…'}"


def _bad_checksum(index_dir: Path) -> str | None:
    """The first committed segment file whose contents do not match the CRC32 in its footer.

    Tantivy ends each segment file with a JSON footer holding that checksum, its length (u32 LE)
    and a magic number; a file in another layout is left to Tantivy to judge.
    """
    meta = json.loads((index_dir / _TANTIVY_META).read_text())
    wanted: set[str] = set()
    for segment in meta.get("segments", []):
        segment_id = str(segment.get("segment_id", "")).replace("-", "")
        wanted.update(f"{segment_id}.{ext}" for ext in _SEGMENT_COMPONENTS)
        if deletes := segment.get("deletes"):
            wanted.add(f"{segment_id}.{deletes.get('opstamp')}.del")
    for name in sorted(wanted):
        try:
            data = (index_dir / name).read_bytes()
        except FileNotFoundError:
            continue  # not every segment has every component; a missing one fails Tantivy's open
        if len(data) < 8 or int.from_bytes(data[-4:], "little") != _FOOTER_MAGIC:
            return name
        length = int.from_bytes(data[-8:-4], "little")
        if length > len(data) - 8:
            return name
        try:
            crc = json.loads(data[-8 - length : -8])["crc"]
        except (ValueError, KeyError, TypeError):
            continue
        if zlib.crc32(memoryview(data)[: len(data) - 8 - length]) != crc:
            return name
    return None


def _is_index_file(name: str) -> bool:
    """A file kb or Tantivy writes in an index folder."""
    return name in _TANTIVY_FILES or bool(_KB_FILE.fullmatch(name) or _TANTIVY_FILE.fullmatch(name))


def _ensure_empty_or_absent(index_dir: Path) -> None:
    """Check `index_dir` can become a new kb index.

    Raises:
        IndexDamagedError: the folder is kb's (it holds kb's own files beside Tantivy's) but has lost
            its sidecar.
        ConfigError: it is not a folder, or it holds files that are not kb's.
    """
    if not index_dir.exists():
        return
    if not index_dir.is_dir():
        raise ConfigError(f"--index-dir {index_dir} is not a folder")
    stray = [p.name for p in index_dir.iterdir() if p.name not in _KEPT]
    if all(_KB_FILE.fullmatch(name) for name in stray):
        return  # empty, or kb stopped before Tantivy made anything
    if all(_is_index_file(name) for name in stray) and any(_KB_FILE.fullmatch(name) for name in stray):
        raise IndexDamagedError(str(index_dir), f"{SIDECAR} is missing")
    raise ConfigError(
        f"{index_dir} is not empty and holds no kb index ({', '.join(sorted(stray)[:3])}…); "
        "choose another --index-dir"
    )


def _wipe(index_dir: Path) -> None:
    """Delete a kb index's files, keeping the repo's README and .gitignore.

    Raises:
        ConfigError: the folder also holds files neither kb nor Tantivy wrote (nothing is deleted then).
        IndexLockedError: a live process is writing the index.
    """
    if (holder := holder_of(index_dir)) is not None:
        raise IndexLockedError(str(index_dir), holder, 0)
    entries = [entry for entry in index_dir.iterdir() if entry.name not in _KEPT]
    foreign = sorted(e.name for e in entries if not _is_index_file(e.name) or e.is_dir() or e.is_symlink())
    if foreign:
        raise ConfigError(
            f"{index_dir} holds files kb did not write ({', '.join(foreign[:3])}); "
            "move them away, or delete the folder yourself, to rebuild the index there"
        )
    for entry in entries:
        entry.unlink()
