"""Shared fixtures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

SAMPLE_DOCS = Path(__file__).resolve().parent.parent / "sample_docs"


@pytest.fixture
def sample_docs(tmp_path: Path) -> Path:
    """A private copy of the repository's sample_docs/ handbook, safe to modify."""
    return Path(shutil.copytree(SAMPLE_DOCS, tmp_path / "sample_docs"))
