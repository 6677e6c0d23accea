"""The floor: a same-SDK MCP server that answers with canned kb results, over stdio or HTTP.

    python benchmarks/_floor.py CANNED.json                  # stdio
    python benchmarks/_floor.py CANNED.json --http PORT      # streamable HTTP at 127.0.0.1:PORT/mcp

CANNED.json holds `{"result": <one real kb search result>, "output_schema": <kb's published schema>}`,
taken from kb in the same benchmark run, and for the HTTP load's mixed mode also `"fetch"` (a real
`fetch` result and its schema, and kb's result for each id of the load under `by_id`) and
`"resource"` (a real document's URI and text, and each document of the load under `by_path`). The
floor answers every search with that one result and every fetch or read with kb's own answer to it
(the median-sized one for anything else), so what it costs is what any MCP server of this SDK pays
for the same bytes (framing, HTTP, the client's validation against the same schema); what kb costs
beyond it is kb's own.

Over HTTP it is served as `kb serve --http` serves: uvicorn's h11 protocol on one event loop, the
SDK's streamable HTTP app with its Host/Origin check on; nothing of kb's own.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import anyio
import uvicorn
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolResult, TextContent


def _use_schema(server: MCPServer[Any], name: str, schema: dict[str, Any]) -> None:
    tool = server._tool_manager.get_tool(name)
    assert tool is not None
    # The same output schema as kb's tool, so the client validates the same document either way
    # (the decorator cannot take a schema; its metadata is read live).
    tool.fn_metadata.output_schema = schema


def build(canned: dict[str, Any]) -> MCPServer[Any]:
    result = canned["result"]
    text = json.dumps(result, ensure_ascii=False, indent=2)
    server: MCPServer[Any] = MCPServer("floor")

    @server.tool(name="search", description="Returns one canned result.")
    async def search(query: str, limit: int = 10) -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=result)

    _use_schema(server, "search", canned["output_schema"])

    if "fetch" in canned:
        answers = {
            doc_id: (json.dumps(result, ensure_ascii=False, indent=2), result)
            for doc_id, result in canned["fetch"].get("by_id", {}).items()
        }
        median = canned["fetch"]["result"]
        otherwise = (json.dumps(median, ensure_ascii=False, indent=2), median)

        @server.tool(name="fetch", description="Returns kb's answer to this id, canned.")
        async def fetch(id: str, offset: int = 0, max_chars: int = 20_000) -> CallToolResult:
            text, found = answers.get(id, otherwise)
            return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=found)

        _use_schema(server, "fetch", canned["fetch"]["output_schema"])

    if "resource" in canned:
        documents = canned["resource"].get("by_path", {})
        document = canned["resource"]["text"]

        @server.resource("kb://doc/{+path}", name="document", mime_type="text/markdown")
        async def read(path: str) -> str:
            return documents.get(path) or documents.get(unquote(path)) or document

    return server


def serve_http(server: MCPServer[Any], port: int) -> None:
    host = "127.0.0.1"
    names = [f"{name}:{port}" for name in ("127.0.0.1", "localhost")]
    security = TransportSecuritySettings(
        allowed_hosts=names, allowed_origins=[f"http://{name}" for name in names]
    )
    app = server.streamable_http_app(streamable_http_path="/mcp", transport_security=security, host=host)
    config = uvicorn.Config(
        app, host=host, port=port, http="h11", log_config=None, access_log=False, log_level="warning"
    )
    anyio.run(uvicorn.Server(config).serve)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("canned", type=Path)
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT")
    args = parser.parse_args()
    server = build(json.loads(args.canned.read_text()))
    if args.http is None:
        anyio.run(server.run_stdio_async)
    else:
        serve_http(server, args.http)


if __name__ == "__main__":
    main()
