"""Turning what a person or a model typed into a Tantivy query, plus filters.

Assistants send whole questions, so the default is OR of the words, ranked by BM25, with the
question's function words dropped. Tantivy's syntax (phrases, AND/OR/NOT, field:term) still works;
input that does not parse falls back to lenient parsing and then to its plain words, never an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import tantivy

from kb.errors import QueryError
from kb.models import FORMATS, Format

MAX_QUERY_CHARS = 2000
TEXT_FIELDS = ["title", "heading", "body"]
FIELD_BOOSTS = {"title": 2.0, "heading": 1.5, "body": 1.0}
QUERYABLE_FIELDS = frozenset({*TEXT_FIELDS, "path", "tags", "format", "page"})

# Function words that carry no topic in a natural-language question. Only dropped from queries
# without operators, and never when nothing else would remain.
STOPWORDS = frozenset(
    """a an and are as at be been being but by can could did do does doing for from had has have how
    i if in into is it its me my of on or our should so than that the their them then there these they
    this those to was we were what when where which who whom why will with would you your about any
    some such tell explain describe please show give find""".split()
)
_OPERATOR = re.compile(r'["():^*~\[\]{}]|\b(?:AND|OR|NOT)\b|(?:^|\s)[+-]\S')
_WORD = re.compile(r"\w+", re.UNICODE)
_GLOB = re.compile(r"[*?\[]")
_REGEX_META = re.compile(r"([\\.+*?()|\[\]{}^$#&\-~])")


@dataclass
class QueryPlan:
    """The query to run (text AND filters), the text part alone (for snippets), and a fuzzy fallback."""

    query: tantivy.Query
    text_query: tantivy.Query
    fuzzy: QueryPlan | None


_analyzer: tantivy.TextAnalyzer | None = None


def _stem(word: str) -> str:
    global _analyzer  # a cache of an immutable analyzer, not configuration
    if _analyzer is None:
        _analyzer = (
            tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
            .filter(tantivy.Filter.lowercase())
            .filter(tantivy.Filter.stemmer("english"))
            .build()
        )
    tokens = _analyzer.analyze(word)
    return tokens[0] if tokens else word.lower()


def content_words(text: str) -> list[str]:
    """The words of a natural-language query worth searching for (all of them if all are stopwords)."""
    words = _WORD.findall(text)
    kept = [w for w in words if w.lower() not in STOPWORDS]
    return kept or words


def _parse_text(index: tantivy.Index, text: str) -> tuple[tantivy.Query, list[str]]:
    """Parse the query text; return the query and, for plain-word queries, the words to retry fuzzily.

    A query written with operators or phrases asked for exactly that, so it gets no fuzzy retry.
    """
    words = content_words(text)
    if not _OPERATOR.search(text):
        return _parse_words(index, words), words
    if _unknown_fields(text):
        return _parse_words(index, words), []  # 'error: foo' is prose, not a field query
    try:
        return index.parse_query(text, TEXT_FIELDS, field_boosts=FIELD_BOOSTS), []
    except ValueError:
        pass
    query, errors = index.parse_query_lenient(text, TEXT_FIELDS, field_boosts=FIELD_BOOSTS)
    if errors:
        # Lenient parsing can drop most of the input; the plain words keep every term.
        return _parse_words(index, [w for w in words if w not in ("AND", "OR", "NOT")]), []
    return query, []


def _parse_words(index: tantivy.Index, words: list[str]) -> tantivy.Query:
    """An OR of plain words (\\w+ runs, which always parse)."""
    if not words:
        return tantivy.Query.empty_query()
    return index.parse_query(" ".join(words).lower(), TEXT_FIELDS, field_boosts=FIELD_BOOSTS)


def _unknown_fields(text: str) -> set[str]:
    return {m for m in re.findall(r"(\w+):", text) if m not in QUERYABLE_FIELDS}


def _escape_regex(text: str) -> str:
    return _REGEX_META.sub(r"\\\1", text)


def path_regex(path: str) -> str:
    """A Tantivy regex for a folder prefix ('guide', 'guide/') or a glob ('**/*.md', 'notes/*.txt')."""
    path = path.strip()
    if _GLOB.search(path):
        out = []
        i = 0
        while i < len(path):
            ch = path[i]
            if path.startswith("**/", i):
                out.append("(.*/)?")
                i += 3
                continue
            if path.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            if ch == "*":
                out.append("[^/]*")
            elif ch == "?":
                out.append("[^/]")
            else:
                out.append(_escape_regex(ch))
            i += 1
        return "".join(out)
    return prefix_regex(path)


def prefix_regex(path: str) -> str:
    """A Tantivy regex for the path itself and everything below it, taken literally."""
    return _escape_regex(path.strip("/")) + "(/.*)?"


def plan_query(
    index: tantivy.Index,
    schema: tantivy.Schema,
    text: str,
    *,
    path: str | None = None,
    formats: list[Format] | None = None,
    tags: list[str] | None = None,
    modified_after: datetime | None = None,
) -> QueryPlan:
    """Build the query for `text` restricted to section records and the given filters.

    Raises:
        QueryError: the text is empty or too long, or a filter is malformed.
    """
    if not text.strip():
        raise QueryError(text, "the query is empty; pass some words to search for")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(text[:80], f"the query is {len(text)} characters; the limit is {MAX_QUERY_CHARS}")
    filters = [tantivy.Query.term_query(schema, "kind", "section")]
    if path:
        if "\x00" in path or ".." in path.split("/"):
            raise QueryError(
                text, f"bad path filter {path!r}: use a folder like 'guide/' or a glob like '*.md'"
            )
        try:
            filters.append(tantivy.Query.regex_query(schema, "path", path_regex(path)))
        except ValueError as exc:
            raise QueryError(text, f"bad path filter {path!r}: {exc}") from exc
    if formats:
        unknown = set(formats) - set(FORMATS)
        if unknown:
            raise QueryError(text, f"unknown formats {sorted(unknown)}; use any of {list(FORMATS)}")
        filters.append(tantivy.Query.term_set_query(schema, "format", list(formats)))
    if tags:
        filters.append(tantivy.Query.term_set_query(schema, "tags", [t.lower() for t in tags]))
    if modified_after is not None:
        filters.append(
            tantivy.Query.range_query(
                schema, "mtime", tantivy.FieldType.Integer, lower_bound=int(modified_after.timestamp())
            )
        )
    text_query, words = _parse_text(index, text)

    def combine(q: tantivy.Query) -> tantivy.Query:
        return tantivy.Query.boolean_query(
            [(tantivy.Occur.Must, q), *((tantivy.Occur.Must, f) for f in filters)]
        )

    fuzzy = None
    terms = [_stem(w) for w in words if len(w) >= 4 and not w.isdigit()]
    if terms:
        fuzzy_query = tantivy.Query.boolean_query(
            [
                (
                    tantivy.Occur.Should,
                    tantivy.Query.fuzzy_term_query(schema, field, term, distance=1 if len(term) < 7 else 2),
                )
                for term in terms
                for field in ("title", "body")
            ]
        )
        fuzzy = QueryPlan(combine(fuzzy_query), fuzzy_query, None)
    return QueryPlan(combine(text_query), text_query, fuzzy)
