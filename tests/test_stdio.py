"""`kb serve` on stdio, as a real process driven by real bytes: SIGINT and SIGTERM stop it within a
couple of seconds and cleanly (also in the middle of a long first sync), every request read before
the end of input is answered, and stderr carries only kb's log lines, in the format asked for."""

from __future__ import annotations

import importlib.util
import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from mcp_helpers import index_now, make_settings

from kb.index import HOLDER_FILE, SearchIndex

STOP_WITHIN = 3.0  # seconds from the signal to the exit: "a second or two", with room for CI's noise
BIG_FILES = 3000  # a first sync of these takes well over STOP_WITHIN on this kind of machine
MODERN = "2026-07-28"


class Stderr:
    """Every line a process writes on stderr, read by a thread; waits are bounded."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            with self._changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 60) -> None:
        with self._changed:
            found = self._changed.wait_for(lambda: any(text in line for line in self.lines), timeout)
        assert found, f"never logged {text!r}; stderr was:\n" + "\n".join(self.lines[-20:])

    def all(self) -> str:
        self._thread.join(10)
        return "\n".join(self.lines)


def serve(root: Path, index_dir: Path, *args: str, stdin: Any = subprocess.PIPE) -> subprocess.Popen[bytes]:
    # A session of its own, so a signal can go to its whole process group as a terminal's Ctrl-C does.
    return subprocess.Popen(
        [sys.executable, "-m", "kb", "serve", str(root), "--index-dir", str(index_dir), *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


@pytest.fixture
def reap() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test started, killed at its end if still running (a failed test)."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def stopped_within(process: subprocess.Popen[bytes], sig: signal.Signals) -> float:
    """Send `sig` to the process group, as a terminal would; seconds until the process exited."""
    started = time.monotonic()
    os.killpg(process.pid, sig)
    try:
        process.wait(STOP_WITHIN * 3)
    except subprocess.TimeoutExpired:
        pytest.fail(f"kb serve still runs {STOP_WITHIN * 3:g}s after {sig.name}")
    return time.monotonic() - started


def big_corpus(root: Path) -> None:
    """Enough Markdown (over the parallel threshold) for a first sync of many seconds."""
    root.mkdir()
    body = "Some words about kangaroos and the care of wombats. " * 20
    for n in range(BIG_FILES):
        (root / f"n{n:05}.md").write_text(f"# Note {n}\n\nUnique{n} {body}\n")


def wait_until_writing(index_dir: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until the first sync holds the index writer (polled, bounded)."""
    deadline = time.monotonic() + timeout
    while not (index_dir / HOLDER_FILE).exists():
        assert process.poll() is None, "kb serve exited before its sync started"
        assert time.monotonic() < deadline, "the first sync never started writing"
        time.sleep(0.02)


def no_traceback(stderr: str) -> None:
    for sign in ("Traceback", "BrokenPipeError", "KeyboardInterrupt", "Exception ignored"):
        assert sign not in stderr, stderr[-3000:]


# ---- stopping on a signal ----------------------------------------------------------------------


def test_ctrl_c_at_a_terminal_stops_serve_at_once_with_exit_130(tmp_path: Path, reap: list[Any]) -> None:
    settings = make_settings(tmp_path)
    index_now(settings)
    terminal, tty = pty.openpty()
    try:
        process = serve(settings.root, settings.index_dir, stdin=tty)
        reap.append(process)
        stderr = Stderr(process.stderr)  # type: ignore[arg-type]
        stderr.wait_for("watching")
        seconds = stopped_within(process, signal.SIGINT)
    finally:
        os.close(tty)
        os.close(terminal)
    assert process.returncode == 130
    assert seconds < STOP_WITHIN
    no_traceback(stderr.all())
    assert process.stdout is not None and process.stdout.read() == b""


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_a_signal_during_a_long_first_sync_stops_serve_promptly_keeping_what_it_indexed(
    tmp_path: Path, reap: list[Any], sig: signal.Signals, code: int
) -> None:
    root, index_dir = tmp_path / "docs", tmp_path / "index"
    big_corpus(root)
    process = serve(root, index_dir, "--jobs", "2")  # stdin stays open: a pipe, not a terminal
    reap.append(process)
    stderr = Stderr(process.stderr)  # type: ignore[arg-type]
    wait_until_writing(index_dir, process)
    seconds = stopped_within(process, sig)
    assert process.returncode == code
    assert seconds < STOP_WITHIN
    log = stderr.all()
    no_traceback(log)
    assert "sync stopped after" in log
    assert not (index_dir / HOLDER_FILE).exists(), "the writer was not released"
    kept = SearchIndex.open(index_dir, root)
    assert 0 < kept.stats().documents < BIG_FILES  # committed what it had, stopped mid-way


# ---- the end of input ---------------------------------------------------------------------------


def request(id_: int, method: str, params: dict[str, Any], era: str = "2025-11-25") -> dict[str, Any]:
    if era == MODERN:  # every request carries its own envelope; there is no handshake
        params = {
            **params,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "bytes", "version": "0"},
            },
        }
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": params}


HANDSHAKE = [
    request(
        1,
        "initialize",
        {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "bytes", "version": "0"},
        },
    ),
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
]


def questions(first_id: int, era: str = "2025-11-25") -> list[dict[str, Any]]:
    searches = ["kangaroo", "install linux", "platypus eggs", "wombats care"]
    return [
        *(
            request(first_id + n, "tools/call", {"name": "search", "arguments": {"query": q}}, era)
            for n, q in enumerate(searches)
        ),
        request(first_id + len(searches), "resources/read", {"uri": "kb://status"}, era),
        request(
            first_id + len(searches) + 1,
            "tools/call",
            {"name": "fetch", "arguments": {"id": "notes.txt"}},
            era,
        ),
    ]


def run_to_the_end_of_input(tmp_path: Path, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pipe `messages` into `kb serve` as JSON lines, then end its input; its replies, in order."""
    settings = make_settings(tmp_path)
    index_now(settings)
    stream = b"".join(json.dumps(m).encode() + b"\n" for m in messages)
    done = subprocess.run(
        [sys.executable, "-m", "kb", "serve", str(settings.root), "--index-dir", str(settings.index_dir)],
        input=stream,
        capture_output=True,
        timeout=60,
    )
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, stderr
    no_traceback(stderr)
    lines = done.stdout.decode().splitlines()
    replies = [json.loads(line) for line in lines]  # nothing but JSON-RPC on stdout
    assert all(reply.get("jsonrpc") == "2.0" for reply in replies), lines
    return replies


def test_every_request_read_before_the_end_of_input_is_answered(tmp_path: Path) -> None:
    asked = [*HANDSHAKE, *questions(2)]
    replies = run_to_the_end_of_input(tmp_path, asked)
    ids = [m["id"] for m in asked if "id" in m]
    assert sorted(r["id"] for r in replies) == ids
    assert all("result" in r for r in replies), [r.get("error") for r in replies]
    by_id = {r["id"]: r["result"] for r in replies}
    assert any(hit["path"] == "notes.txt" for hit in by_id[2]["structuredContent"]["results"])
    assert "wombats" in by_id[7]["structuredContent"]["text"]


def test_every_stateless_request_read_before_the_end_of_input_is_answered(tmp_path: Path) -> None:
    asked = questions(1, era=MODERN)
    replies = run_to_the_end_of_input(tmp_path, asked)
    assert sorted(r["id"] for r in replies) == [m["id"] for m in asked]
    assert all("result" in r for r in replies), [r.get("error") for r in replies]
    assert "wombats" in {r["id"]: r for r in replies}[6]["result"]["structuredContent"]["text"]


# ---- stderr ---------------------------------------------------------------------------------------


def _build_pdf() -> Any:
    path = Path(__file__).resolve().parents[1] / "scripts" / "make_sample_pdf.py"
    spec = importlib.util.spec_from_file_location("make_sample_pdf", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_pdf


def broken_xref_pdfs(root: Path, count: int = 4) -> None:
    """PDFs whose cross-reference table points a few bytes off: pypdf repairs them, warning."""
    root.mkdir(parents=True, exist_ok=True)
    build_pdf = _build_pdf()
    for n in range(count):
        good: bytes = build_pdf(f"Report {n}", [(f"Report {n}", [f"Readable despite its xref, numbat{n}."])])
        bad = re.sub(rb"(\d{10}) 00000 n ", lambda m: b"%010d 00000 n " % (int(m[1]) + 7), good)
        (root / f"report{n}.pdf").write_bytes(bad)


def json_lines(stderr: str) -> list[dict[str, Any]]:
    records = []
    for line in stderr.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a line on stderr is not JSON: {line[:300]!r}")
    return records


def test_json_logs_stay_json_when_pypdf_warns_in_the_extraction_workers(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    broken_xref_pdfs(root)
    done = subprocess.run(
        [sys.executable, "-m", "kb", "index", str(root), "--index-dir", str(tmp_path / "index"), "--json"],
        env={**os.environ, "KB_LOG_FORMAT": "json"},
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert json.loads(done.stdout)["added"] == 4
    records = json_lines(done.stderr.decode())
    forwarded = [r for r in records if r["logger"].startswith("pypdf")]
    assert forwarded, "pypdf's warnings should come through kb's logging, not vanish"
    assert all(r["level"] == "WARNING" for r in forwarded)


def test_a_client_that_goes_away_mid_sync_leaves_only_json_log_lines(tmp_path: Path, reap: list[Any]) -> None:
    root, index_dir = tmp_path / "docs", tmp_path / "index"
    big_corpus(root)
    broken_xref_pdfs(root / "reports")
    process = serve(root, index_dir, "--log-format", "json", "--jobs", "2")
    reap.append(process)
    stderr = Stderr(process.stderr)  # type: ignore[arg-type]
    wait_until_writing(index_dir, process)
    assert process.stdin is not None and process.stdout is not None
    process.stdin.close()  # the client's end of both pipes goes, as when it is killed
    process.stdout.close()
    try:
        process.wait(STOP_WITHIN * 3)
    except subprocess.TimeoutExpired:
        pytest.fail("kb serve kept running after its client went away")
    log = stderr.all()
    assert process.returncode == 0, log[-3000:]
    no_traceback(log)
    json_lines(log)
