"""Shared by the server tests: a small corpus on disk, and a connected in-memory client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from mcp import Client

from kb import ingest
from kb.config import Settings
from kb.index import SearchIndex
from kb.server import KbRuntime, build_server

MODES = ["auto", "legacy"]  # the 2026-07-28 era, and the 2025-11-25 initialize handshake

INSTALL_MD = """\
---
title: Install guide
tags: [setup, linux]
---
# Install

How to install the toolkit.

## Linux

Use apt to install the kangaroo package.

## Windows

Run the installer wizard and reboot.
"""

NOTES_TXT = "Plain notes about wombats.\n\nA second paragraph about kangaroo care.\n"

PAGE_HTML = """\
<html><head><title>Reference page</title></head>
<body><h1>Reference</h1><p>The platypus lays eggs.</p></body></html>
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def write_corpus(root: Path) -> None:
    (root / "guide").mkdir(parents=True)
    (root / "guide" / "install.md").write_text(INSTALL_MD)
    (root / "notes.txt").write_text(NOTES_TXT)
    (root / "ref page.html").write_text(PAGE_HTML)
    (root / ".secret.md").write_text("# Secret\n\nhidden kangaroo\n")


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    root = tmp_path / "docs"
    if not root.exists():
        write_corpus(root)
    return Settings(root=root, index_dir=tmp_path / "index", jobs=1, **overrides)


def index_now(settings: Settings) -> None:
    """Index the corpus before serving, so tests see a complete index from the first request."""
    index = SearchIndex.open(settings.index_dir, settings.root)
    try:
        ingest.sync(settings, index)
    finally:
        index.close()


@asynccontextmanager
async def connected(settings: Settings, mode: str = "auto", *, synced: bool = True) -> AsyncIterator[Client]:
    """A client connected in memory to a fresh server; by default after its startup sync is done."""
    runtime = KbRuntime(settings)
    async with Client(build_server(settings, runtime=runtime), mode=mode, cache=None) as client:
        if synced:
            with anyio.fail_after(20):
                await runtime.wait_synced()
        yield client
