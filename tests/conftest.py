"""Shared fixtures."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from mcp_helpers import index_now, make_settings

from kb.config import Settings

# Semantic search is on by default, but embedding every test corpus in every `kb` process would
# take most of the suite's time: commands read this, and test_semantic.py turns it on where tested.
# (Settings built in a test are on: their small corpora embed in a moment.)
os.environ.setdefault("KB_SEMANTIC", "off")

SAMPLE_DOCS = Path(__file__).resolve().parent.parent / "sample_docs"


@pytest.fixture
def sample_docs(tmp_path: Path) -> Path:
    """A private copy of the repository's sample_docs/ handbook, safe to modify."""
    return Path(shutil.copytree(SAMPLE_DOCS, tmp_path / "sample_docs"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for a server on a small corpus of its own, already indexed (so the server's
    startup sync changes nothing and sends no notifications)."""
    settings = make_settings(tmp_path)
    index_now(settings)
    return settings
