"""The floor: a same-SDK MCP server whose `search` returns one canned kb result, over stdio.

    python benchmarks/_floor.py CANNED.json

CANNED.json holds `{"result": <one real kb search result>, "output_schema": <kb's published schema>}`,
taken from kb in the same benchmark run. The floor answers every search with that result, so what it
costs is what any MCP server of this SDK pays (framing, pipes, the client's validation against the same
schema); what kb costs beyond it is kb's own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp.server import MCPServer
from mcp_types import CallToolResult, TextContent


def build(canned: dict[str, Any]) -> MCPServer[Any]:
    result, schema = canned["result"], canned["output_schema"]
    text = json.dumps(result, ensure_ascii=False, indent=2)
    server: MCPServer[Any] = MCPServer("floor")

    @server.tool(name="search", description="Returns one canned result.")
    async def search(query: str, limit: int = 10) -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=result)

    # The same output schema as kb's tool, so the client validates the same document either way
    # (the decorator cannot take a schema; its metadata is read live).
    tool = server._tool_manager.get_tool("search")
    assert tool is not None
    tool.fn_metadata.output_schema = schema
    return server


def main() -> None:
    canned = json.loads(Path(sys.argv[1]).read_text())
    anyio.run(build(canned).run_stdio_async)


if __name__ == "__main__":
    main()
