"""The index layer: the only package that touches Tantivy.

Nothing above it sees a Tantivy type, so another engine could stand behind the same interface.
"""

from kb.index._batch import IndexBatch
from kb.index._index import Nearest, SearchIndex
from kb.index._lock import HOLDER_FILE, pid_alive
from kb.index._query import DEFAULT_RANKING, MAX_QUERY_CHARS, Ranking, plain_words
from kb.index._copies import PassageKeys, passage_keys
from kb.index._schema import SCHEMA_VERSION

__all__ = [
    "DEFAULT_RANKING",
    "HOLDER_FILE",
    "MAX_QUERY_CHARS",
    "Nearest",
    "SCHEMA_VERSION",
    "IndexBatch",
    "PassageKeys",
    "Ranking",
    "SearchIndex",
    "passage_keys",
    "pid_alive",
    "plain_words",
]
