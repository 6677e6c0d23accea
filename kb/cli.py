"""The `kb` command: serve, index, search, status.

The only module that configures logging (always to stderr: under stdio, stdout is the protocol),
reads flags and environment into Settings, and turns KbError into a message and an exit code.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, get_args

import click
from pydantic import ValidationError

from kb import __version__
from kb.config import Settings
from kb.errors import ConfigError, IndexLockedError, KbError, QueryError

if TYPE_CHECKING:
    from kb.models import SearchResults, SyncReport
    from kb.server._workers import Flag

logger = logging.getLogger("kb")

EXIT_OK = 0
EXIT_FAILED_FILES = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_INTERRUPTED = 130


class _UsageProblem(click.ClickException):
    exit_code = EXIT_USAGE


class _LockedProblem(click.ClickException):
    exit_code = EXIT_LOCKED


def _setup_logging(debug: bool, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    logging.captureWarnings(True)  # `warnings.warn` from libraries: a log record like any other
    # Libraries' chatter stays out unless debugging.
    for noisy in ("pypdf", "watchdog", "httpx", "uvicorn.access", "mcp"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:  # a record forwarded from an extraction worker carries only the text
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


def _settings(ctx: click.Context, **flags: Any) -> Settings:
    """Settings for a command: flags given on the command line win over KB_* environment variables,
    which win over defaults (`Settings.from_env`, the one place both are read). Also sets up logging
    as they say."""
    given = {name: value for name, value in {**ctx.obj, **flags}.items() if value is not None}
    try:
        settings = Settings.from_env(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_setting_name(error['loc'])}: {error['msg']}" if error["loc"] else error["msg"]
            for error in exc.errors(include_url=False)
        )
        raise _UsageProblem(problems) from exc
    _setup_logging(settings.debug, settings.log_format)
    return settings


def _setting_name(loc: tuple[int | str, ...]) -> str:
    """How a person spells a setting: its flag and its environment variable."""
    field = str(loc[0])
    flag = {"max_file_bytes": "max_file_mb", "allow_origins": "allow_origin", "watch": "no_watch"}.get(
        field, field
    )
    return f"--{flag.replace('_', '-')} / KB_{field.upper()}"


def _debug_requested() -> bool:
    """--debug or KB_DEBUG, for an error that escaped every command."""
    if "--debug" in sys.argv[1:]:
        return True
    try:
        return Settings.from_env().debug
    except ValidationError:
        return False


def _fail(error: KbError) -> NoReturn:
    """Leave with the error's one-line message and the exit code its kind deserves."""
    if isinstance(error, ConfigError | QueryError):
        raise _UsageProblem(str(error)) from error
    if isinstance(error, IndexLockedError):
        raise _LockedProblem(str(error)) from error
    raise click.ClickException(str(error)) from error


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


index_dir_option = click.option(
    "--index-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder of the index [env KB_INDEX_DIR; default ./index].",
)
jobs_option = click.option(
    "--jobs",
    type=int,
    default=None,
    help="Extraction worker processes, 0 to 64; 0 = one per core [env KB_JOBS].",
)
max_file_mb_option = click.option(
    "--max-file-mb",
    type=float,
    default=None,
    help="Skip files larger than this many MB [env KB_MAX_FILE_MB; default 20].",
)
semantic_option = click.option(
    "--semantic",
    type=click.Choice(["on", "off"]),
    default=None,
    help="Search by meaning too, with passage vectors made on this machine [env KB_SEMANTIC; default on].",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kb")
@click.option("--debug", is_flag=True, help="Verbose logs, and tracebacks on errors [env KB_DEBUG].")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """kb: a local-first knowledge server. Index a folder of documents; serve it to AI assistants over MCP."""
    ctx.obj = {"debug": debug or None}  # absent: KB_DEBUG or the default decides


def _parse_http(value: str) -> tuple[str, int]:
    """'8000' -> ('127.0.0.1', 8000); 'HOST:PORT' and '[v6]:PORT' as written."""
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(
            f"{value!r} is not [HOST:]PORT, e.g. 8000 or 127.0.0.1:8000", param_hint="--http"
        )
    return host, int(port)


@cli.command("serve")
@click.argument("root", type=click.Path(path_type=Path, exists=True, file_okay=False))
@index_dir_option
@click.option(
    "--http",
    "http",
    metavar="[HOST:]PORT",
    default=None,
    help="Serve streamable HTTP at /mcp on this address instead of stdio (host defaults to 127.0.0.1).",
)
@click.option(
    "--sse", is_flag=True, help="Serve the legacy SSE transport (at /sse) for old clients; implies HTTP."
)
@click.option(
    "--token",
    default=None,
    help="Bearer token every HTTP request must carry; required to bind beyond loopback [env KB_TOKEN].",
)
@click.option(
    "--allow-origin",
    "allow_origins",
    multiple=True,
    help="An extra browser Origin allowed on HTTP (repeatable) [env KB_ALLOW_ORIGINS, space-separated].",
)
@click.option(
    "--url-base",
    default=None,
    help="Web address where the documents are also published; result urls become URL_BASE/path "
    "[env KB_URL_BASE].",
)
@click.option(
    "--workers",
    type=int,
    default=None,
    help="With --http: server processes sharing the port and the index, 1 to 32; the first syncs and "
    "watches, the others only read, and every request stands alone [env KB_WORKERS; default 1].",
)
@click.option("--no-watch", is_flag=True, help="Do not watch the folder for changes.")
@click.option(
    "--rescan-seconds",
    type=float,
    default=None,
    help="Interval of the stat-only safety rescan while watching, at least 1 "
    "[env KB_RESCAN_SECONDS; default 600].",
)
@jobs_option
@max_file_mb_option
@semantic_option
@click.option(
    "--log-format",
    type=click.Choice(get_args(Settings.model_fields["log_format"].annotation)),
    default=None,
    help="Format of the log lines on stderr [env KB_LOG_FORMAT; default text].",
)
@click.pass_context
def serve_command(
    ctx: click.Context,
    root: Path,
    index_dir: Path | None,
    http: str | None,
    sse: bool,
    token: str | None,
    allow_origins: tuple[str, ...],
    url_base: str | None,
    workers: int | None,
    no_watch: bool,
    rescan_seconds: float | None,
    jobs: int | None,
    max_file_mb: float | None,
    semantic: str | None,
    log_format: str | None,
) -> None:
    """Serve the documents under ROOT to MCP clients (stdio by default; --http for streamable HTTP).

    The index is opened at once and kept fresh in the background; stdout carries only the protocol.
    """
    settings = _settings(
        ctx,
        root=root,
        index_dir=index_dir,
        token=token,
        allow_origins=list(allow_origins) or None,
        url_base=url_base,
        workers=workers,
        watch=False if no_watch else None,
        rescan_seconds=rescan_seconds,
        jobs=jobs,
        max_file_mb=max_file_mb,
        semantic=semantic,
        log_format=log_format,
    )
    from kb import server
    from kb.library import Library

    try:
        # Whatever keeps the index from opening (another root, a damaged or unwritable folder) is
        # said here, in kb's one line and exit code, before any protocol traffic.
        if http is None and not sse and settings.workers > 1:
            raise ConfigError("--workers above 1 needs --http: over stdio one client talks to one process")
        Library.open(settings).close()
        if http is None and not sse:
            stopped_by = server.run_stdio(settings)
            # A clean stop either way; Ctrl-C keeps the shell's convention (128 + SIGINT).
            ctx.exit(EXIT_INTERRUPTED if stopped_by == signal.SIGINT else EXIT_OK)
        else:
            from kb.server.http import run_http  # uvicorn and friends: only for HTTP

            host, port = _parse_http(http or "8000")
            run_http(settings, host, port, sse=sse, replica_main=functools.partial(_serve_replica, settings))
    except KbError as exc:
        _fail(exc)


def _serve_replica(settings: Settings, sock: socket.socket, writer_synced: Flag) -> None:
    """A replica process of `kb serve --workers` (spawned): logs as its parent does, serves `sock`."""
    _setup_logging(settings.debug, settings.log_format)
    from kb.server.http import serve_replica

    try:
        serve_replica(settings, sock, writer_synced)
    except KbError as exc:
        logger.error("replica stopped: %s", exc)
        sys.exit(1)


@cli.command("index")
@click.argument("root", type=click.Path(path_type=Path, exists=True, file_okay=False))
@index_dir_option
@click.option(
    "--rebuild", is_flag=True, help="Re-read every file (and rebuild an index made for another root)."
)
@jobs_option
@max_file_mb_option
@click.option(
    "--wait",
    "lock_wait",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds to wait for another process writing the index [default 60].",
)
@semantic_option
@json_option
@click.pass_context
def index_command(
    ctx: click.Context,
    root: Path,
    index_dir: Path | None,
    rebuild: bool,
    jobs: int | None,
    max_file_mb: float | None,
    lock_wait: float | None,
    semantic: str | None,
    as_json: bool,
) -> None:
    """Index the documents under ROOT once, then exit (for cron jobs and systemd timers).

    Exit codes: 0 every file indexed; 1 some files failed (the rest is committed);
    2 usage or configuration error; 3 the index is locked by another process.
    """
    settings = _settings(
        ctx,
        root=root,
        index_dir=index_dir,
        jobs=jobs,
        lock_wait=lock_wait,
        max_file_mb=max_file_mb,
        semantic=semantic,
    )
    from kb.index import SearchIndex
    from kb.ingest import sync

    try:
        index = SearchIndex.open(settings.index_dir, settings.root, rebuild=rebuild)
        with _progress_bar(enabled=not as_json) as progress:
            report = sync(settings, index, rebuild=rebuild, progress=progress)
    except KbError as exc:
        _fail(exc)
    if settings.semantic:
        _embed_missing(settings, index, report, progress_shown=not as_json)
    if as_json:
        _emit_json(report.model_dump())
    else:
        not_read = sum(report.unsupported.values())
        click.echo(
            f"indexed {report.root} in {report.seconds:.2f}s: {report.added} added, "
            f"{report.updated} updated, {report.removed} removed, {report.unchanged} unchanged, "
            f"{len(report.failed)} failed, "
            f"{len(report.skipped)} skipped"
            + (f", {not_read} of other kinds not read" if not_read else "")
            + (f"; {report.embedded} passages embedded" if report.embedded else ""),
            err=True,
        )
        for problem in report.failed:
            click.echo(f"  failed  {problem.path}: {problem.error}", err=True)
        for skipped in report.skipped:
            click.echo(f"  skipped {skipped.path}: {skipped.reason}", err=True)
    if not (report.added or report.updated or report.unchanged or report.failed):
        click.echo(_nothing_to_read(report), err=True)
    ctx.exit(EXIT_FAILED_FILES if report.failed else EXIT_OK)


def _embed_missing(settings: Settings, index: Any, report: SyncReport, *, progress_shown: bool) -> None:
    """`library.embed_missing`, with its own progress bar; counted in `report`."""
    from kb.library import embed_missing
    from kb.semantic import SemanticUnavailableError

    try:
        with _progress_bar(enabled=progress_shown, label="embedding") as progress:
            embed_missing(settings, index, report, progress=progress)
    except (SemanticUnavailableError, OSError) as exc:  # OSError: INDEX_DIR/vectors is not a folder, say
        logging.getLogger("kb.cli").warning("%s; the index is lexical only", exc)


def _semantic_for(settings: Settings, index: Any) -> Any:
    """The index's vectors with the encoder loaded, or None (semantic search off or unavailable)."""
    from kb.semantic import Semantic, SemanticUnavailableError

    if not settings.semantic:
        return None
    try:
        semantic = Semantic(index.vectors_dir, settings.cache_dir)
        if not len(semantic.store):
            return None  # nothing embedded (kb index --semantic off): no model to load
        semantic.load(threads=1)
    except (SemanticUnavailableError, OSError) as exc:  # OSError: INDEX_DIR/vectors is not a folder, say
        logging.getLogger("kb.cli").warning("%s; searching by words only", exc)
        return None
    return semantic


def _nothing_to_read(report: SyncReport) -> str:
    """Why a sync found no document: what it saw, and what kb reads."""
    from kb.extractors import EXTENSIONS

    seen = sum(report.unsupported.values()) + len(report.skipped)
    kinds = ", ".join(
        f"{count} {extension or '(no extension)'}"
        for extension, count in sorted(report.unsupported.items(), key=lambda item: (-item[1], item[0]))
    )
    return (
        f"no documents in {report.root}: saw {seen} file{'s' if seen != 1 else ''}"
        + (f", of kinds kb does not read ({kinds})" if kinds else "")
        + (f"; {len(report.skipped)} skipped as listed" if report.skipped else "")
        + f". kb reads {' '.join(EXTENSIONS)} (hidden and ignored files are not looked at)"
    )


class _progress_bar:
    """A rich progress bar on stderr when it is a terminal; otherwise nothing.

    While it runs, log lines are written above it (through rich's stand-in for stderr) instead of
    into it, and it ends as soon as the last file is done, before the sync's closing log line.
    """

    def __init__(self, enabled: bool, label: str = "indexing") -> None:
        self._enabled = enabled and sys.stderr.isatty()
        self._label = label
        self._bar: Any = None
        self._task: Any = None
        self._handlers: list[tuple[logging.StreamHandler[Any], Any]] = []

    def __enter__(self) -> Any:
        if not self._enabled:
            return None
        from rich.console import Console
        from rich.progress import Progress

        stderr = sys.stderr
        self._bar = Progress(console=Console(stderr=True), transient=True, redirect_stderr=True)
        self._bar.start()
        self._task = self._bar.add_task(self._label, total=None)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is stderr:
                self._handlers.append((handler, handler.setStream(sys.stderr)))  # rich's stand-in
        return self._advance

    def _advance(self, done: int, total: int) -> None:
        if self._bar is None:
            return
        self._bar.update(self._task, completed=done, total=total)
        if done >= total:
            self._finish()

    def _finish(self) -> None:
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.stop()
        for handler, stream in self._handlers:
            handler.setStream(stream)
        self._handlers.clear()

    def __exit__(self, *exc: object) -> None:
        self._finish()


@cli.command("search")
@click.argument("query")
@index_dir_option
@click.option("--limit", type=click.IntRange(1, 100), default=10, show_default=True, help="Results to show.")
@click.option("--all-passages", is_flag=True, help="List every matching passage, not one per document.")
@semantic_option
@json_option
@click.pass_context
def search_command(
    ctx: click.Context,
    query: str,
    index_dir: Path | None,
    limit: int,
    all_passages: bool,
    semantic: str | None,
    as_json: bool,
) -> None:
    """Search the index for QUERY (words, "phrases", AND/OR/NOT, field:term)."""
    settings = _settings(ctx, index_dir=index_dir, semantic=semantic)
    from kb.index import SearchIndex
    from kb.library import search

    try:
        index = SearchIndex.open(settings.index_dir)
        results = search(
            index, _semantic_for(settings, index), query, None, limit=limit, all_passages=all_passages
        )
    except KbError as exc:
        _fail(exc)
    for hit in results.results:
        hit.url = _file_url(index.root, hit.path)
    if as_json:
        _emit_json({"query": results.query, "results": [h.model_dump() for h in results.results]})
        return
    if not results.results:
        click.echo(f"no results for {query!r}")
        return
    if sys.stdout.isatty():
        _print_for_terminal(results)
        return
    if results.approximate:
        click.echo("(no exact matches; showing approximate ones)")
    for rank, hit in enumerate(results.results, start=1):
        where = hit.heading or (f"page {hit.page}" if hit.page else "")
        click.secho(f"{rank}. {hit.title}", bold=True)
        click.echo(f"   {hit.id}" + (f"  ({where})" if where else "") + f"  score {hit.score:.2f}")
        click.echo(f"   {hit.snippet}")


def _print_for_terminal(results: SearchResults) -> None:
    """Results as a person reads them: the snippet's **marked** words in bold, with rich (which
    also wraps to the terminal's width and honours NO_COLOR)."""
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False)
    if results.approximate:
        console.print("(no exact matches; showing approximate ones)", style="italic")
    for rank, hit in enumerate(results.results, start=1):
        where = hit.heading or (f"page {hit.page}" if hit.page else "")
        console.print(Text(f"{rank}. {hit.title}", style="bold"))
        line = Text(hit.id + (f"  ({where})" if where else "") + f"  score {hit.score:.2f}")
        snippet = Text()
        for n, part in enumerate(hit.snippet.split("**")):
            snippet.append(part, style="bold" if n % 2 else "")
        for wrapped in (*line.wrap(console, console.width - 3), *snippet.wrap(console, console.width - 3)):
            console.print(Text("   ") + wrapped)


def _file_url(root: Path, path: str) -> str:
    return (root / path).as_uri()


@cli.command("status")
@index_dir_option
@json_option
@click.pass_context
def status_command(ctx: click.Context, index_dir: Path | None, as_json: bool) -> None:
    """Show what the index holds: root, documents, sections, size, last indexed."""
    settings = _settings(ctx, index_dir=index_dir)
    from kb.index import SearchIndex
    from kb.semantic import Semantic
    from kb.watcher import live_status

    try:
        index = SearchIndex.open(settings.index_dir)
        stats = index.stats()
    except KbError as exc:
        _fail(exc)
    server = live_status(index.index_dir)
    try:
        # The stored vectors only: no model is loaded, and nothing is repaired by a command that reads.
        vectors = Semantic(index.vectors_dir, settings.cache_dir, repair=False)
        coverage: float | None = round(vectors.coverage(index.vector_keys()), 4)
    except OSError as exc:  # INDEX_DIR/vectors is not a folder, say
        logging.getLogger("kb.cli").warning("the vectors cannot be read: %s", exc)
        coverage = None
    data = {
        **stats.model_dump(mode="json"),
        "semantic_coverage": coverage,
        "server": None if server is None else {"pid": server.get("pid")},
        "watcher": None if server is None else server.get("watcher"),
        "last_commit": None if server is None else server.get("last_commit"),
    }
    if as_json:
        _emit_json(data)
        return
    for key, value in data.items():
        if key == "server":
            value = f"running (pid {value['pid']})" if value else "not running"
        click.echo(f"{key:>17}: {value if value is not None else '-'}")


def main() -> None:
    """Entry point of the `kb` console script."""
    try:
        # Outside standalone mode click returns ctx.exit()'s code instead of exiting.
        code = cli.main(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # the last line of defence: one readable line, the traceback on --debug
        if _debug_requested():
            raise
        click.echo(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for details)", err=True)
        sys.exit(1)
