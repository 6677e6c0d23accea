"""The index layer: the only package that touches Tantivy.

Nothing above it sees a Tantivy type, so another engine could stand behind the same interface.
"""

from kb.index._index import SCHEMA_VERSION, IndexBatch, SearchIndex
from kb.index._query import MAX_QUERY_CHARS, content_words

__all__ = ["MAX_QUERY_CHARS", "SCHEMA_VERSION", "IndexBatch", "SearchIndex", "content_words"]
