"""Every shell command that README.md and the sample handbook tell a person to type, run as written
by bash in a sandbox: a temp folder holding copies of sample_docs (as ./sample_docs, ./docs,
~/notes and ~/docs), with HOME pointing into it.

What the sandbox stands in for, and why:
- Setting up a virtual environment (`python3 -m venv DIR`, `DIR/bin/pip install ...`) takes half a
  minute; CI's `.ci/run` does exactly that on a fresh clone. Here DIR/bin gets a `kb` that runs the
  kb under test, so the commands after the setup run as written.
- `.venv/bin/pytest` is the suite this test belongs to (CI runs it as the README says).
- A `kb serve --http` command runs until stopped: it is started, must answer on its port, and is
  stopped; its port is swapped for a free one so that parallel runs do not collide. `kb serve` on
  stdio gets closed stdin, as a client that hangs up, and must exit 0.
- Paths outside the sandbox (`/var/lib/...`) are moved into it.
In the handbook's prose, a `kb ...` span with arguments is a command too (ROOT and QUERY filled in);
the README's inline spans are synopses (`kb index ROOT [--rebuild]`), its commands are its blocks.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kb.cli import cli

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "sample_docs").rglob("*.md"))]
FENCE = re.compile(r"^```(?:sh|bash|shell|console)\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`(kb(?: [^`]*)?)`")
VENV_SETUP = re.compile(r"^python3 -m venv (\S+)$")
PIP_SETUP = re.compile(r"^(\S+)/bin/pip install .*$")
SUITE = ".venv/bin/pytest"
PLACEHOLDERS = {"ROOT": "./docs", "QUERY": "linux"}
SERVE_DEADLINE = 30.0


def blocks() -> list[tuple[str, str]]:
    found = []
    for document in DOCUMENTS:
        for n, match in enumerate(FENCE.finditer(document.read_text()), 1):
            found.append((f"{document.relative_to(REPO)}:block{n}", match.group(1)))
    return found


def handbook_spans() -> list[tuple[str, str]]:
    """`kb ...` spans of the handbook's prose that a person would type: with arguments, or a
    command that needs none (`kb status`); a bare `kb index` names the command."""
    found = []
    for document in DOCUMENTS[1:]:
        prose = FENCE.sub("", document.read_text())
        for span in INLINE.findall(prose):
            words = span.split()
            command = cli.commands.get(words[1]) if len(words) > 1 else None
            if command is None:
                continue
            needs_arguments = any(getattr(param, "required", False) for param in command.params)
            if len(words) > 2 or not needs_arguments:
                found.append((f"{document.relative_to(REPO)}:`{span}`", span))
    return found


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    work = tmp_path / "work"
    for folder in (work / "sample_docs", work / "docs", home / "notes", home / "docs"):
        shutil.copytree(REPO / "sample_docs", folder)
    write_kb(tmp_path / "bin")  # `kb` on PATH, as after the handbook's install
    write_kb(work / ".venv" / "bin")  # as the README's first block leaves it for the next ones
    return work


def write_kb(bin_dir: Path) -> None:
    """A `kb` in `bin_dir` that runs the kb under test (with this test's Python)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "kb"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m kb "$@"\n')
    script.chmod(0o755)


def environment(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KB_")}
    env["HOME"] = str(work.parent / "home")
    env["PATH"] = f"{work.parent / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prepare(line: str, work: Path) -> str | None:
    """The line as the sandbox runs it, its setup steps done here (None: nothing left to run)."""
    line = re.sub(r"(?<![\w.~/])/(var|srv|opt|etc)/", f"{work.parent}/\\1/", line)
    steps = []
    for step in line.split(" && "):
        stripped = step.strip()
        if (venv := VENV_SETUP.match(stripped)) or (venv := PIP_SETUP.match(stripped)):
            folder = venv.group(1).replace("~", str(work.parent / "home"), 1)
            write_kb((work / folder / "bin") if not folder.startswith("/") else Path(folder) / "bin")
        elif stripped.split()[0] != SUITE:
            steps.append(stripped)
    return " && ".join(steps) or None


def serves_http(line: str) -> bool:
    return " serve " in f" {line} " and ("--http" in line or "--sse" in line)


def run_line(line: str, work: Path) -> None:
    prepared = prepare(line, work)
    if prepared is None:
        return
    if serves_http(prepared):
        run_server(prepared, work)
        return
    done = subprocess.run(
        ["bash", "-c", f"set -e\n{prepared}"],
        cwd=work,
        env=environment(work),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{line!r} exited {done.returncode}:\n{done.stderr[-3000:]}"


def run_server(line: str, work: Path) -> None:
    """Start a `kb serve --http` line, wait until its port answers, stop it (with its shell)."""
    port = free_port()
    line = re.sub(r"(--http (?:[\w.\[\]:]+:)?)8765\b", rf"\g<1>{port}", line)
    server = subprocess.Popen(
        ["bash", "-c", line],
        cwd=work,
        env=environment(work),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + SERVE_DEADLINE
        while True:
            assert server.poll() is None, f"{line!r} exited {server.returncode}: {server.stderr.read()}"  # type: ignore[union-attr]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"{line!r} did not listen on {port}"
                time.sleep(0.1)  # polling another process's port, bounded by the deadline
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.communicate(timeout=30)


@pytest.mark.parametrize(("where", "block"), blocks(), ids=[where for where, _ in blocks()])
def test_every_shell_block_runs_as_written(where: str, block: str, sandbox: Path) -> None:
    script = "\n".join(line for line in block.splitlines() if line.strip())
    if any(serves_http(line) for line in script.splitlines()):
        for line in script.splitlines():  # servers one by one: each runs until stopped
            run_line(line, sandbox)
    else:
        run_line(script.replace("\n", " && ") if "export " not in script else script, sandbox)


@pytest.mark.parametrize(("where", "span"), handbook_spans(), ids=[where for where, _ in handbook_spans()])
def test_every_command_the_handbook_names_in_its_prose_runs(where: str, span: str, sandbox: Path) -> None:
    if span.split()[1] in ("status", "search"):
        run_line("kb index ./docs", sandbox)  # the handbook's first step, which these read
    command = " ".join(PLACEHOLDERS.get(word, word) for word in span.split())
    run_line(command, sandbox)


def test_the_documents_hold_the_commands_this_test_runs() -> None:
    assert len(blocks()) >= 6
    spans = [span for _, span in handbook_spans()]
    assert "kb status" in spans and "kb index ./docs --json" in spans
