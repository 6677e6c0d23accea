"""Checks on what third-party MCP clients report about kb; used by .ci/clients.sh.

    check_clients.py inspector KIND STDOUT STDERR
        The files where `mcp-inspector --cli --format json` wrote one call's result (stdout) or its
        error envelope (the last JSON line on stderr); KIND says which call it was and so what kb
        must have answered (see INSPECTOR_CHECKS).
    check_clients.py conformance SCENARIO OUTDIR [EXPECTED_FAILURES_YML]
        OUTDIR is the --output-dir of one `conformance server --scenario SCENARIO` run. Every check
        must be SUCCESS (or INFO), except those the YAML file lists as `SCENARIO:check-id`; a run
        that recorded no check at all fails too. Stricter than the suite's own exit code, which
        lets warnings through.

Exit status 0 when kb answered as it must, 1 otherwise, with the reason on stderr. Standard library
only, so it runs on any Python 3.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path


class CheckFailed(Exception):
    pass


def expect(condition: object, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def result_of(doc: dict) -> dict:
    expect("error" not in doc, f"the call failed: {json.dumps(doc.get('error'))[:500]}")
    expect(isinstance(doc.get("result"), dict), "no result object")
    return doc["result"]


def check_tools_list(doc: dict) -> str:
    tools = {t["name"]: t for t in result_of(doc)["tools"]}
    expect({"search", "fetch"} <= tools.keys(), f"tools are {sorted(tools)}, want search and fetch")
    for name in ("search", "fetch"):
        tool = tools[name]
        expect(tool.get("description"), f"{name} has no description")
        expect(tool.get("outputSchema"), f"{name} has no output schema")
        expect((tool.get("annotations") or {}).get("readOnlyHint") is True, f"{name} is not marked read-only")
    return f"{len(tools)} tools: {', '.join(sorted(tools))}"


def check_search(doc: dict) -> str:
    result = result_of(doc)
    expect(not result.get("isError"), f"search returned a tool error: {result.get('content')}")
    structured = result.get("structuredContent")
    expect(isinstance(structured, dict), "search returned no structured content")
    hits = structured.get("results")
    expect(hits, f"search for 'install linux' found nothing: {json.dumps(structured)[:500]}")
    for hit in hits:
        for key in ("id", "title", "url", "path", "snippet", "score"):
            expect(key in hit, f"a hit lacks {key!r}: {hit}")
        expect(isinstance(hit["url"], str) and hit["url"], f"a hit has an empty url: {hit}")
    top = hits[0]
    expect(top["path"] == "guide/install.md", f"top hit is {top['path']}, want guide/install.md")
    expect(
        "Linux" in (top.get("heading") or ""),
        f"top hit's heading is {top.get('heading')!r}, want the Linux section",
    )
    texts = [c.get("text", "") for c in result.get("content", []) if c.get("type") == "text"]
    expect(texts, "search returned no text content")
    expect(
        json.loads(texts[0]) == structured, "the text content is not the same JSON as the structured content"
    )
    return f"{len(hits)} hits, top {top['id']}"


def check_read(doc: dict) -> str:
    contents = result_of(doc)["contents"]
    expect(len(contents) == 1, f"{len(contents)} contents, want 1")
    content = contents[0]
    expect(content.get("uri") == "kb://doc/guide/install.md", f"uri is {content.get('uri')!r}")
    expect(
        content.get("mimeType") == "text/markdown",
        f"MIME type is {content.get('mimeType')!r}, want text/markdown",
    )
    text = content.get("text") or ""
    expect("## Linux" in text and "python3 -m venv" in text, "the text is not guide/install.md as written")
    return f"{len(text)} characters of {content['mimeType']}"


def check_prompt(doc: dict) -> str:
    messages = result_of(doc)["messages"]
    expect(messages, "the prompt has no messages")
    resources = [m["content"]["resource"] for m in messages if m["content"].get("type") == "resource"]
    expect(resources, "the prompt does not embed the document as a resource")
    expect(resources[0].get("uri") == "kb://doc/guide/install.md", f"embedded {resources[0].get('uri')!r}")
    expect("## Linux" in (resources[0].get("text") or ""), "the embedded text is not guide/install.md")
    texts = [m["content"]["text"] for m in messages if m["content"].get("type") == "text"]
    expect(any("guide/install.md" in t for t in texts), "no instruction names the document")
    return f"{len(messages)} messages, embeds {resources[0]['uri']}"


def check_read_missing(doc: dict) -> str:
    expect("result" not in doc, f"reading a missing document succeeded: {json.dumps(doc)[:300]}")
    message = (doc.get("error") or {}).get("message", "")
    expect(message, f"no error message: {json.dumps(doc)[:300]}")
    return f"error: {message[:120]}"


def check_fetch_missing(doc: dict) -> str:
    result = result_of(doc)
    expect(
        result.get("isError") is True,
        f"fetch of an unknown id is not a tool error: {json.dumps(result)[:300]}",
    )
    text = " ".join(c.get("text", "") for c in result.get("content", []))
    expect("search" in text, f"the tool error does not tell the model what to do: {text[:300]}")
    return f"tool error: {text[:120]}"


INSPECTOR_CHECKS: dict[str, Callable[[dict], str]] = {
    "tools-list": check_tools_list,
    "search": check_search,
    "read": check_read,
    "prompt": check_prompt,
    "read-missing": check_read_missing,
    "fetch-missing": check_fetch_missing,
}


def inspector(kind: str, stdout: str, stderr: str) -> str:
    raw = Path(stdout).read_text().strip()
    if not raw:  # an error: its envelope is the last JSON line on stderr, after the server's logs
        lines = [line for line in Path(stderr).read_text().splitlines() if line.startswith("{")]
        raw = lines[-1] if lines else ""
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckFailed(f"the inspector printed no JSON ({exc}): {raw[:300]!r}") from None
    return INSPECTOR_CHECKS[kind](doc)


def expected_failures(path: str | None) -> set[str]:
    """The `- scenario:check-id` items of an expected-failures YAML file (a flat list per side)."""
    if not path:
        return set()
    items = set()
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("- "):
            items.add(line[2:].strip().strip("'\""))
    return items


def conformance(scenario: str, outdir: str, expected_file: str | None = None) -> str:
    expected = expected_failures(expected_file)
    files = sorted(Path(outdir).glob("*/checks.json"))
    expect(files, f"no checks.json under {outdir}: the scenario did not run")
    checks = [check for f in files for check in json.loads(f.read_text())]
    expect(checks, "the scenario recorded no check")
    bad, tolerated = [], []
    for check in checks:
        if check["status"] in ("SUCCESS", "INFO"):
            continue
        (tolerated if f"{scenario}:{check['id']}" in expected else bad).append(check)
    for check in bad:
        details = json.dumps(check.get("details"), default=str)[:1500]
        print(
            f"  {check['status']} {scenario}:{check['id']}: {check.get('description', '')}\n"
            f"    {check.get('errorMessage', '')}\n    details: {details}",
            file=sys.stderr,
        )
    expect(not bad, f"{len(bad)} of {len(checks)} checks did not pass")
    passed = sum(c["status"] == "SUCCESS" for c in checks)
    note = f", {len(tolerated)} expected failures" if tolerated else ""
    return f"{passed}/{len(checks)} checks passed{note}"


def main(argv: list[str]) -> int:
    try:
        if len(argv) == 4 and argv[0] == "inspector" and argv[1] in INSPECTOR_CHECKS:
            print(f"    ok: {inspector(*argv[1:])}")
        elif len(argv) in (3, 4) and argv[0] == "conformance":
            print(f"    ok: {conformance(*argv[1:])}")
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except CheckFailed as exc:
        print(f"    FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
