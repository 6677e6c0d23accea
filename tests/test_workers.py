"""Several server processes over one index (`kb serve --http --workers N`): a replica library follows
the writer's commits, and the processes answer any request, statelessly, on one port."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp_helpers import anyio_backend  # noqa: F401
from test_cli import kb
from test_semantic import QUESTION, indexed, write

from kb import ingest
from kb.config import Settings
from kb.library import Library
from kb.models import SyncReport

TIMEOUT = 60  # a bound on waiting for a loaded 2-core machine, not a timing assertion


@pytest.fixture
def writer_and_replica(settings: Settings) -> Iterator[tuple[Library, Library]]:
    writer = Library.open(settings.model_copy(update={"semantic": False}))
    replica = Library.open(settings.model_copy(update={"semantic": False}), replica=True)
    try:
        yield writer, replica
    finally:
        replica.close()
        writer.close()


def test_a_replica_takes_in_the_writers_commits_and_tells_what_they_changed(writer_and_replica):
    writer, replica = writer_and_replica
    root = writer.settings.root
    reports: list[SyncReport] = []
    told = threading.Event()
    replica.start(on_commit=lambda report: (reports.append(report), told.set()))
    assert replica.synced.wait(TIMEOUT) and replica.search("zyzzyvaquux").results == []

    (root / "new.md").write_text("# New\n\nA zyzzyvaquux note.\n")
    (root / "notes.txt").write_text("Rewritten: the notes now speak of zyzzyvaquux things too.\n")
    (root / "guide" / "install.md").unlink()
    ingest.sync(writer.settings, writer.index)

    assert told.wait(TIMEOUT)
    assert reports[0].added_paths == ["new.md"]
    assert reports[0].updated_paths == ["notes.txt"]
    assert reports[0].removed_paths == ["guide/install.md"]
    assert {hit.path for hit in replica.search("zyzzyvaquux").results} == {"new.md", "notes.txt"}
    status = replica.status()
    assert status["process"]["role"] == "replica" and status["watcher"] == "off"
    assert status["documents"] == writer.status()["documents"]


def test_a_replica_says_it_is_syncing_until_the_writer_has_synced(writer_and_replica):
    _, replica = writer_and_replica
    writer_synced = threading.Event()
    replica = Library.open(replica.settings, replica=True, writer_synced=writer_synced.is_set)
    try:
        replica.start()
        assert replica.syncing and replica.status()["syncing"]
        writer_synced.set()
        assert replica.synced.wait(TIMEOUT) and not replica.status()["syncing"]
    finally:
        replica.close()


def test_a_replica_never_writes_the_index(writer_and_replica):
    writer, replica = writer_and_replica
    (writer.settings.root / "new.md").write_text("# New\n\nA qwertyzorbian.\n")
    replica.start()
    assert replica.synced.wait(TIMEOUT)
    # The replica does not sync: the file stays unindexed until the writer's sync.
    assert replica.search("qwertyzorbian").results == []
    assert replica.last_sync is None and not replica.syncing


def test_a_replica_finds_by_meaning_with_the_vectors_the_writer_makes(tmp_path):
    settings = indexed(tmp_path)  # `kb index`, which embedded every passage
    replica = Library.open(settings, replica=True)
    try:
        replica.start()
        assert replica.synced.wait(TIMEOUT)
        assert replica.search(QUESTION).results[0].path == "kitchen/bread.md"
        assert replica.semantic_coverage == 1.0 and replica.status()["semantic"]["state"] == "ready"

        write(
            settings.root, {"garden/bees.md": "# Bees\n\nThe hive swarms in spring when the queen leaves.\n"}
        )
        # Another writer (`kb index`) indexes the new page, then embeds it: the replica takes in the
        # commit, then the vector, and finds the page by meaning.
        run = kb("index", settings.root, "--index-dir", settings.index_dir, "--semantic", "on")
        assert run.exit_code == 0, run.output
        for _ in range(100):  # each round waits for the replica to take in more of the writer's work
            replica.follower.took_in.clear()
            found = replica.search("when do insects leave their colony", limit=1).results
            if found and found[0].path == "garden/bees.md" and replica.semantic_coverage == 1.0:
                break
            assert replica.follower.took_in.wait(TIMEOUT), "the replica took in nothing more"
        assert found and found[0].path == "garden/bees.md"
        assert replica.semantic_coverage == 1.0
    finally:
        replica.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class _Served:
    url: str
    process: subprocess.Popen[bytes]
    output: tuple[bytes, bytes] = (b"", b"")  # stdout and stderr, once stopped


@asynccontextmanager
async def _served_by_two_workers(root: Path, tmp_path: Path, stop: signal.Signals) -> AsyncIterator[_Served]:
    """`kb serve ROOT --http --workers 2`, ready; sent `stop` when the block ends (its output kept)."""
    port = _free_port()
    served = _Served(
        f"http://127.0.0.1:{port}/mcp",
        subprocess.Popen(
            [
                *(sys.executable, "-m", "kb", "serve", str(root), "--index-dir", str(tmp_path / "index")),
                *("--http", f"127.0.0.1:{port}", "--workers", "2", "--semantic", "off"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ),
    )
    try:
        await _wait_ready(served.url, served.process)
        yield served
    finally:
        served.process.send_signal(stop)
        served.output = served.process.communicate(timeout=TIMEOUT)


async def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    with anyio.fail_after(TIMEOUT):
        while True:  # polled: a server starting up
            try:
                await _process_and_hits(url, "auto", "install")
                return
            except Exception:
                assert process.poll() is None, process.communicate()[1].decode()[-2000:]
                await anyio.sleep(0.1)


Answer = tuple[str, int, int]  # the role and pid of a process that answered, and the results found


async def _process_and_hits(url: str, mode: str, query: str) -> Answer | None:
    """One client's search for `query` and its read of kb://status: which process answered (most
    often the search's too: a client's requests usually share a connection) and how many results
    it found; None while the index is still being built."""
    async with Client(url, cache=None, mode=mode, read_timeout_seconds=30) as client:
        found = await client.call_tool("search", {"query": query})
        status = json.loads((await client.read_resource("kb://status")).contents[0].text)
    assert not found.is_error
    if found.structured_content.get("indexing") or status["syncing"]:
        return None
    return status["process"]["role"], status["process"]["pid"], len(found.structured_content["results"])


async def _until(url: str, query: str, done: Callable[[list[Answer]], bool]) -> list[Answer]:
    """Rounds of many clients at once, both protocol eras, until a round's answers are `done`
    (bounded by TIMEOUT); answers given while the index was being built are left out."""
    with anyio.fail_after(TIMEOUT):
        while True:
            answers: list[Answer] = []

            async def ask(mode: str, answers: list[Answer] = answers) -> None:
                if (answer := await _process_and_hits(url, mode, query)) is not None:
                    answers.append(answer)

            async with anyio.create_task_group() as tg:
                for i in range(12):
                    tg.start_soon(ask, "legacy" if i % 2 else "auto")
            if done(answers):
                return answers


def _roles(answers: list[Answer]) -> set[str]:
    return {role for role, _, _ in answers}


@pytest.mark.anyio
async def test_serve_with_workers_answers_from_every_process_and_each_follows_edits(sample_docs, tmp_path):
    async with _served_by_two_workers(sample_docs, tmp_path, signal.SIGTERM) as served:
        url, process = served.url, served.process
        seen = await _until(url, "install", lambda answers: _roles(answers) == {"writer", "replica"})
        assert all(hits > 0 for _, _, hits in seen)
        pids = {pid for _, pid, _ in seen}
        assert len(pids) == 2 and process.pid in pids

        (sample_docs / "guide" / "install.md").write_text("# Install\n\nNow with a quokkaesque step.\n")
        # Every process finds the edit (the writer indexes it, the replica takes in its commit):
        # a round where both answered and every answer found it.
        await _until(
            url,
            "quokkaesque",
            lambda answers: _roles(answers) == {"writer", "replica"} and all(h for _, _, h in answers),
        )
    out, err = served.output
    assert process.returncode == 128 + signal.SIGTERM, err.decode()[-2000:]  # as one process ends
    assert out == b""
    for pid in pids - {process.pid}:  # the replicas were stopped with the writer
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.anyio
async def test_a_replica_stops_when_the_writer_is_killed(sample_docs, tmp_path):
    async with _served_by_two_workers(sample_docs, tmp_path, signal.SIGKILL) as served:
        seen = await _until(served.url, "install", lambda answers: "replica" in _roles(answers))
        replica = next(pid for role, pid, _ in seen if role == "replica")
        exited = os.pidfd_open(replica)  # readable once the replica has exited
    try:
        readable, _, _ = select.select([exited], [], [], TIMEOUT)
        assert readable, "a replica outlived its writer"
    finally:
        os.close(exited)


@pytest.mark.parametrize("transport", [[], ["--sse", "--http", "0"]])
def test_several_workers_need_streamable_http(sample_docs, tmp_path, transport):
    done = subprocess.run(
        [
            *(sys.executable, "-m", "kb", "serve", str(sample_docs), "--index-dir", str(tmp_path / "index")),
            *transport,
            *("--workers", "2"),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 2
    assert b"--workers" in done.stderr and done.stdout == b""
