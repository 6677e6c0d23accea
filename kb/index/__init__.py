"""The index layer: the only package that touches Tantivy.

Nothing above it sees a Tantivy type, so another engine could stand behind the same interface.
"""

from kb.index._batch import HOLDER_FILE, IndexBatch
from kb.index._index import SearchIndex
from kb.index._query import MAX_QUERY_CHARS
from kb.index._schema import SCHEMA_VERSION

__all__ = ["HOLDER_FILE", "MAX_QUERY_CHARS", "SCHEMA_VERSION", "IndexBatch", "SearchIndex"]
