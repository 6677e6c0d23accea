"""The MCP prompts (summarize a document, summarize a topic, compare two documents) and completion
of the arguments that name documents."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import anyio.to_thread
from mcp.server import MCPServer, ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.prompts.base import Message, UserMessage
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    Completion,
    CompletionArgument,
    CompletionContext,
    EmbeddedResource,
    PromptReference,
    ResourceTemplateReference,
    TextResourceContents,
)
from pydantic import Field, ValidationError

from kb.errors import KbError, NotIndexedYetError
from kb.server._runtime import library_of
from kb.server._uris import DOC_TEMPLATE, MIME_TYPES, doc_uri

if TYPE_CHECKING:
    from kb.library import Library
    from kb.models import StoredDocument
    from kb.server._runtime import KbRuntime

logger = logging.getLogger(__name__)

MAX_COMPLETIONS = 100
MAX_EMBEDDED_CHARS = 200_000
DEFAULT_TOPIC_SOURCES = 8
MAX_TOPIC_SOURCES = 20
LENGTHS = {
    "short": "in three to five sentences",
    "medium": "in a few short paragraphs",
    "long": "in detail, section by section",
}
DOCUMENT_ARGUMENTS = {"summarize_document": {"path"}, "compare_documents": {"path_a", "path_b"}}


def register_prompts(server: MCPServer[Any], runtime: KbRuntime) -> None:
    """Add the prompts and the completion handler to `server`."""
    server.middleware.append(_invalid_params)

    @server.prompt(
        name="summarize_document",
        title="Summarize a document",
        description="Summarize one document of the knowledge base, citing its sections or pages.",
    )
    async def summarize_document(
        path: Annotated[str, Field(description="The document's path, e.g. guide/install.md")],
        ctx: Context,
        focus: Annotated[str | None, Field(description="What to concentrate on")] = None,
        length: Annotated[str | None, Field(description="short, medium (default) or long")] = None,
    ) -> list[Message]:
        library = library_of(ctx)
        how = LENGTHS.get((length or "medium").strip().lower())
        if how is None:
            raise MCPError(code=INVALID_PARAMS, message=f"length must be one of {', '.join(LENGTHS)}")
        ask = f"Summarize the document {path} above {how}."
        if focus:
            ask += f" Concentrate on: {focus}."
        ask += " Cite the sections (by heading) or pages ('p. N') each point comes from."
        return [UserMessage(await _embed(library, path)), UserMessage(ask)]

    @server.prompt(
        name="summarize_topic",
        title="Summarize a topic across documents",
        description=(
            "Search the knowledge base for a topic and synthesize what the documents say about it, "
            "citing each passage by its id."
        ),
    )
    async def summarize_topic(
        topic: Annotated[str, Field(description="What to look for, as search words")],
        ctx: Context,
        max_sources: Annotated[
            str | None, Field(description="How many passages to read: 1 to 20, default 8")
        ] = None,
    ) -> list[Message]:
        library = library_of(ctx)
        limit = _parse_sources(max_sources)
        try:
            found = await anyio.to_thread.run_sync(
                lambda: library.search(topic, limit=limit, all_passages=True)
            )
        except KbError as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc)) from exc
        passages = [
            (hit, doc)
            for hit in found.results
            if (doc := await anyio.to_thread.run_sync(_passage, library, hit.id)) is not None
        ]
        if not passages:
            return [UserMessage(f"The knowledge base has no passages about {topic!r}. Say so; do not guess.")]
        messages: list[Message] = []
        for hit, doc in passages:
            section = doc.sections[0]
            where = section.heading or (f"page {section.page}" if section.page else doc.title)
            text = f"[{hit.id}] {doc.title} - {where}\n\n{section.text}"
            messages.append(UserMessage(_resource(doc_uri(doc.path, section.fragment), "text/plain", text)))
        ask = (
            f"Using only the {len(passages)} passages above, synthesize what the knowledge base says about "
            f"{topic!r}. Cite each claim with the passage id in brackets, e.g. [{passages[0][0].id}]. "
            "Point out where sources disagree and what they leave open."
        )
        if library.syncing:
            ask += " (kb is still indexing, so some documents may be missing.)"
        return [*messages, UserMessage(ask)]

    @server.prompt(
        name="compare_documents",
        title="Compare two documents",
        description="Compare two documents of the knowledge base: agreements, differences, gaps.",
    )
    async def compare_documents(
        path_a: Annotated[str, Field(description="The first document's path")],
        path_b: Annotated[str, Field(description="The second document's path")],
        ctx: Context,
        aspect: Annotated[str | None, Field(description="What to compare them on")] = None,
    ) -> list[Message]:
        library = library_of(ctx)
        ask = f"Compare {path_a} and {path_b} above"
        ask += f" with regard to {aspect}." if aspect else "."
        ask += " List where they agree, where they differ or contradict, and what one covers that the other "
        ask += "does not. Cite sections (by heading) or pages ('p. N') of each."
        return [
            UserMessage(await _embed(library, path_a)),
            UserMessage(await _embed(library, path_b)),
            UserMessage(ask),
        ]

    # The completion callback gets no request context from the SDK, so it reaches the index
    # through the server's runtime.
    @server.completion()
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion | None:
        if isinstance(ref, PromptReference):
            if argument.name not in DOCUMENT_ARGUMENTS.get(ref.name, ()):
                return None
        elif not (ref.uri == DOC_TEMPLATE and argument.name == "path"):
            return None
        library = runtime.library
        paths = await anyio.to_thread.run_sync(library.document_paths)
        return await anyio.to_thread.run_sync(
            lambda: complete_paths(paths, argument.value, servable=library.servable)
        )


async def _invalid_params(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Middleware: an unknown prompt or missing or malformed arguments are the client's to fix, so
    they answer "invalid params" (-32602), where the SDK would send an internal error (or code 0)."""
    if ctx.method != "prompts/get":
        return await call_next(ctx)
    try:
        return await call_next(ctx)
    except ValueError as exc:  # how MCPServer.get_prompt reports every failure but an MCPError
        if not isinstance(exc.__cause__, ValueError | TypeError | ValidationError | None):
            raise  # a fault of kb's, not the client's: it stays an internal error
        raise MCPError(code=INVALID_PARAMS, message=str(exc)) from exc


def complete_paths(
    paths: list[str], typed: str, servable: Callable[[str], bool] = lambda _: True
) -> Completion:
    """Paths starting with `typed` first, then paths containing it (case-insensitively), at most 100.

    Only paths that `servable` accepts are offered (checked for the ones offered, not all matches),
    so a completion never names a file that a read would refuse.
    """
    needle = typed.lower()
    prefix = [p for p in paths if p.lower().startswith(needle)]
    inside = [p for p in paths if needle in p.lower() and not p.lower().startswith(needle)]
    matches = prefix + inside
    values: list[str] = []
    refused = 0
    for path in matches:
        if len(values) == MAX_COMPLETIONS:
            break
        if servable(path):
            values.append(path)
        else:
            refused += 1
    total = len(matches) - refused
    return Completion(values=values, total=total, has_more=total > len(values))


def _passage(library: Library, doc_id: str) -> StoredDocument | None:
    """A found passage, read like fetch reads it (its file confined again); None if now refused."""
    try:
        return library.load(doc_id)[1]
    except KbError as exc:
        logger.debug("passage %s left out of the prompt: %s", doc_id, exc)
        return None


async def _embed(library: Library, path: str) -> EmbeddedResource:
    """The document as an embedded resource, cut at a bound a model can take."""
    try:
        text, fmt = await anyio.to_thread.run_sync(library.read_text, path)
    except NotIndexedYetError as exc:
        raise MCPError(code=INVALID_PARAMS, message=str(exc)) from exc
    except KbError as exc:
        raise MCPError(
            code=INVALID_PARAMS, message=f"{exc} (complete the argument or search for the document first)"
        ) from exc
    if len(text) > MAX_EMBEDDED_CHARS:
        text = (
            text[:MAX_EMBEDDED_CHARS]
            + f"\n\n[cut at {MAX_EMBEDDED_CHARS} characters; fetch '{path}' to read on]"
        )
    return _resource(doc_uri(path), MIME_TYPES[fmt], text)


def _resource(uri: str, mime_type: str, text: str) -> EmbeddedResource:
    return EmbeddedResource(
        type="resource", resource=TextResourceContents(uri=uri, mime_type=mime_type, text=text)
    )


def _parse_sources(value: str | None) -> int:
    if value is None or not value.strip():
        return DEFAULT_TOPIC_SOURCES
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_TOPIC_SOURCES:
        raise MCPError(
            code=INVALID_PARAMS, message=f"max_sources must be a number from 1 to {MAX_TOPIC_SOURCES}"
        )
    return n
