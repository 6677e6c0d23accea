"""kb: a local-first knowledge server. Index a folder of documents and serve it over MCP."""

__version__ = "0.1.0"
