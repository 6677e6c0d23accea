"""Action logging: one record per tool call, resource read and prompt, so an operator can see what an
assistant read.

The record goes to the `kb.audit` logger (the CLI sends it to stderr): a text line by default, and
with `--log-format json` one JSON object whose fields come from the record's `fields` dict:

    tools/call search query='install linux' limit=5 -> ok 1834 chars in 12.4 ms [client inspector/0.17]

It is one server middleware, so no handler logs for itself and every way a request can end (a tool
error, a protocol error, invalid arguments) is seen in one place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Literal

from mcp.server import MCPServer, ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from pydantic import ValidationError

from kb.server import _sdk_compat

logger = logging.getLogger("kb.audit")  # the name operators filter on: kept across moves

AUDITED = ("tools/call", "resources/read", "prompts/get")
MAX_VALUE_CHARS = 80  # each argument value in the summary
MAX_ARGUMENTS = 10
MAX_ERROR_CHARS = 200

Outcome = Literal["ok", "error"]


def install(server: MCPServer[Any]) -> None:
    """Log every tool call, resource read and prompt get that `server` answers."""
    # Public (though "provisional" in mcp 2.3), and the one hook that also sees requests the SDK
    # refuses before a handler runs (unknown tool, invalid arguments).
    server.middleware.append(_audit)


async def _audit(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    if ctx.request_id is None or ctx.method not in AUDITED:
        return await call_next(ctx)
    started = time.perf_counter()
    try:
        result = await call_next(ctx)
    except Exception as exc:  # recorded and re-raised untouched: the SDK turns it into the response
        _log(ctx, started, "error", 0, _error_text(exc))
        raise
    # Read the result as it stands: no JSON dump of the whole result just to count its characters.
    if _field(result, "isError" if isinstance(result, Mapping) else "is_error"):
        _log(ctx, started, "error", result_chars(result), _error_text(_tool_error(result)))
    else:
        _log(ctx, started, "ok", result_chars(result), None)
    return result


def _log(
    ctx: ServerRequestContext[Any, Any], started: float, outcome: Outcome, size: int, error: str | None
) -> None:
    params: Mapping[str, Any] = ctx.params or {}
    name = str(params.get("uri") if ctx.method == "resources/read" else params.get("name", "?"))
    arguments = params.get("arguments") if ctx.method != "resources/read" else None
    summary = summarize_arguments(arguments if isinstance(arguments, Mapping) else {})
    fields: dict[str, Any] = {
        "action": ctx.method,
        "name": _truncate(name, 4 * MAX_VALUE_CHARS),
        "arguments": summary,
        "outcome": outcome,
        "result_chars": size,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        **client_of(ctx),
    }
    if error is not None:
        fields["error"] = error
    args = " ".join(f"{key}={value!r}" for key, value in summary.items())
    line = f"{ctx.method} {fields['name']}{' ' + args if args else ''} -> {outcome}"
    line += f" {size} chars in {fields['duration_ms']} ms"
    if error is not None:
        line += f" ({error})"
    client = " ".join(f"{key} {fields[key]}" for key in ("client", "session") if key in fields)
    if client:
        line += f" [{client}]"
    logger.info("%s", line, extra={"fields": fields})


def summarize_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments as a log can show them: at most 10, each value cut to 80 characters."""
    summary: dict[str, Any] = {}
    for key, value in list(arguments.items())[:MAX_ARGUMENTS]:
        if isinstance(value, bool | int | float) or value is None:
            summary[str(key)] = value
        else:
            summary[str(key)] = _truncate(value if isinstance(value, str) else repr(value), MAX_VALUE_CHARS)
    if len(arguments) > MAX_ARGUMENTS:
        summary["..."] = f"{len(arguments) - MAX_ARGUMENTS} more"
    return summary


def result_chars(result: Any) -> int:
    """How many characters of text a tools/call, resources/read or prompts/get result carried
    (the result model, or its JSON form)."""
    total = 0
    for item in [*(_field(result, "content") or ()), *(_field(result, "contents") or ())]:
        total += _content_chars(item)
    for message in _field(result, "messages") or ():
        total += _content_chars(_field(message, "content") or {})
    return total


def _content_chars(item: Any) -> int:
    resource = _field(item, "resource")  # an embedded resource
    if resource is not None:
        item = resource
    return len(_field(item, "text") or "") + len(_field(item, "blob") or "")


def _field(item: Any, name: str) -> Any:
    """A field of a result or of one of its parts, whether a model or its JSON form (None if absent)."""
    return item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)


def client_of(ctx: ServerRequestContext[Any, Any]) -> dict[str, str]:
    """The client's `name/version` as it introduced itself, and the HTTP session id, when known."""
    found: dict[str, str] = {}
    client_params = ctx.session.client_params
    if client_params is not None:
        info = client_params.client_info
        found["client"] = _truncate(f"{info.name}/{info.version}", MAX_VALUE_CHARS)
    session_id = _sdk_compat.connection_of(ctx).session_id
    if session_id:
        found["session"] = session_id
    return found


def _tool_error(result: Any) -> str:
    texts = [
        _field(item, "text") or ""
        for item in _field(result, "content") or ()
        if _field(item, "type") == "text"
    ]
    return " ".join(texts) or "tool error"


def _error_text(error: BaseException | str) -> str:
    if isinstance(error, ValidationError):
        text = f"invalid params: {error.error_count()} validation error(s)"
    else:
        text = str(error) or type(error).__name__
    return _truncate(" ".join(text.split()), MAX_ERROR_CHARS)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
