"""The naive pipeline kb is measured against: one process, render each file, one Tantivy writer thread.

Run as a script so it pays the same interpreter start-up as `kb index`:
    python benchmarks/_naive.py DIR INDEX_DIR     -> one JSON line: files, bytes, seconds
It deliberately uses none of kb's code.
"""

from __future__ import annotations

import html
import json
import re
import sys
import time
from pathlib import Path

import tantivy
from markdown_it import MarkdownIt

TAG = re.compile(r"<[^>]+>")


def run(root: Path, index_dir: Path) -> dict[str, float]:
    started = time.perf_counter()
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("path", stored=True, tokenizer_name="raw")
    sb.add_text_field("body", stored=True, tokenizer_name="en_stem")
    index_dir.mkdir(parents=True, exist_ok=True)
    index = tantivy.Index(sb.build(), path=str(index_dir))
    writer = index.writer(num_threads=1)
    md = MarkdownIt()
    files = size = 0
    for path in sorted(root.rglob("*.md")):
        data = path.read_bytes()
        text = html.unescape(TAG.sub(" ", md.render(data.decode("utf-8", "replace"))))
        writer.add_document(tantivy.Document(path=str(path.relative_to(root)), body=text))
        files += 1
        size += len(data)
    writer.commit()
    writer.wait_merging_threads()
    return {"files": files, "bytes": size, "seconds": time.perf_counter() - started}


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1]), Path(sys.argv[2]))))
