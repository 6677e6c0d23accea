"""Turning what a person or a model typed into a Tantivy query, plus filters.

Assistants send whole questions, so the default is OR of the words, ranked by BM25, with the
question's function words dropped, then reranked with words of the best passages it found
(pseudo-relevance feedback). Tantivy's syntax (phrases, AND/OR/NOT, field:term) still works, as written;
input that does not parse falls back to lenient parsing and then to its plain words, never an error.
"""

from __future__ import annotations

import heapq
import itertools
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import tantivy

from kb.errors import QueryError
from kb.index._english import STOPWORDS
from kb.index._schema import text_analyzer
from kb.index._vocabulary import Vocabulary
from kb.models import FORMATS, Format, normalize_tags

MAX_QUERY_CHARS = 2000
# Correcting a typo reads the term dictionary in Python; these bound that work for one query, so a
# long paste of unknown words costs milliseconds, not seconds.
MAX_FUZZY_TERMS = 8
TEXT_FIELDS = ["title", "heading", "body"]
QUERYABLE_FIELDS = frozenset({*TEXT_FIELDS, "path", "tags", "format", "page"})

# Parentheses alone are prose ("the flow (laminar) case"): without AND/OR/NOT or +/- they group
# nothing, so only these mark a query written in Tantivy's syntax.
_OPERATOR = re.compile(r'[":^*~\[\]{}]|\b(?:AND|OR|NOT)\b|(?:^|[\s(])[+-]\S')
_WORD = re.compile(r"\w+", re.UNICODE)
# `-word`, `NOT word`, `NOT "a phrase"`, `-title:word`: what no result may contain.
_NEGATED = re.compile(r'(?:^|(?<=[\s(]))(?:-|NOT\s+)((?:\w+:)?(?:"[^"]*"|[^\s()"]+))')
# `caf*`: every word starting so (two letters at least, or it would match most of the index).
_PREFIX = re.compile(r"(?:^|(?<=[\s(]))(\w{2,})\*(?=$|[\s)])")
_DANGLING = re.compile(r"^\s*(?:(?:AND|OR)\b\s*)+|(?:\s*\b(?:AND|OR))+\s*$")
_GLOB = re.compile(r"[*?\[]")
_REGEX_META = re.compile(r"([\\.+*?()|\[\]{}^$#&\-~])")


@dataclass(frozen=True)
class Ranking:
    """How passages are scored: one value passed to every search, so a benchmark can try another.

    The defaults were measured on Cranfield (benchmarks/relevance.py). BM25 already scores a word in
    a short title or heading highly, so boosts above 1 let a title match outweigh the passage that
    answers; the best field of each word counts in full and the others at `field_tie` (a title
    repeated in the heading trail and the body would otherwise count three times; None: a word's
    per-field scores simply add up). Neighbouring query words found within `proximity_slop`
    positions of each other earn `proximity_boost`. Pseudo-relevance feedback (RM3): the words that
    dominate the `feedback_passages` best passages are the vocabulary of the answer, which a
    question often lacks; `feedback_terms` of them are added (0: no feedback), the strongest
    weighing `feedback_weight` (as much as one of the question's words), each passage read for
    `feedback_chars` (a text section's size: bounds the time on long ones). With semantic search,
    the lexical ranking is fused with the `vector_candidates` passages nearest in meaning.
    """

    field_boosts: tuple[tuple[str, float], ...] = (("title", 0.5), ("heading", 0.5), ("body", 1.0))
    field_tie: float | None = 0.5
    proximity_boost: float = 0.1
    proximity_slop: int = 3
    feedback_passages: int = 5
    feedback_terms: int = 30
    feedback_weight: float = 1.0
    feedback_chars: int = 2_000
    # Reciprocal rank fusion of the lexical and the vector rankings: a document's score is the sum
    # of 1 / (rrf_k + rank) over both. 60 is the constant of the method's paper, not a fitted value.
    rrf_k: int = 60
    vector_candidates: int = 100

    @property
    def boosts(self) -> dict[str, float]:
        return dict(self.field_boosts)


DEFAULT_RANKING = Ranking()


@dataclass
class QueryPlan:
    """What to run for one search.

    `query` is the text part AND the filters; `text_query` the text part alone (for snippets);
    `fuzzy()` builds the plan to retry with when nothing matched (only then: correcting is slow);
    `approximate` says words were matched fuzzily (a word unknown to the index, or the whole retry),
    and `corrections` which: each unknown word as typed, and the indexed terms searched instead;
    `expand(best)` builds the plan that reranks the same matches with words of the best passages
    for `query` (`(score, text)` pairs); None for queries written in Tantivy's syntax, run as written.
    `as_words()` is the plan of the text's plain words, for a query Tantivy parses but refuses to
    run ('title:*': the field is not a fast field). `natural` says the text is plain words, so a
    passage alike in meaning may answer it too (Tantivy's syntax means exactly what it says), and
    `restrict(query)` applies the plan's filters to another query.
    """

    query: tantivy.Query
    text_query: tantivy.Query
    fuzzy: Callable[[], QueryPlan | None]
    approximate: bool = False
    expand: Callable[[list[tuple[float, str]]], QueryPlan] | None = None
    as_words: Callable[[], QueryPlan] | None = None
    corrections: dict[str, list[str]] = field(default_factory=dict)
    natural: bool = False
    restrict: Callable[[tantivy.Query], tantivy.Query] = lambda query: query


def _restrict(query: tantivy.Query, filters: list[tantivy.Query]) -> tantivy.Query:
    return tantivy.Query.boolean_query(
        [(tantivy.Occur.Must, query), *((tantivy.Occur.Must, f) for f in filters)]
    )


_ANALYZER = text_analyzer()
_PREFIX_ANALYZER = text_analyzer(stem=False)


def analyze(text: str) -> list[str]:
    """The terms the text fields hold for `text` (lowercased, accents folded, English stems)."""
    return _ANALYZER.analyze(text)


_STOPWORD_TERMS = frozenset(analyze(" ".join(STOPWORDS)))


def content_words(text: str) -> list[str]:
    """The words of a natural-language query worth searching for (all of them if all are stopwords)."""
    words = _WORD.findall(text)
    kept = [w for w in words if w.lower() not in STOPWORDS]
    return kept or words


def feedback_terms(
    best: list[tuple[float, str]], exclude: set[str], ranking: Ranking = DEFAULT_RANKING
) -> dict[str, float]:
    """The `ranking.feedback_terms` terms likeliest in the passages that answer, weighted 1 for the likeliest.

    A relevance model (RM3): each passage's share of its words, weighted by how likely the passage
    is to answer (the softmax of its BM25 score, so the best few dominate). Function words and
    `exclude` (the question's own terms) are left out, and so are numbers and one- or two-letter tokens.
    """
    if not best or not ranking.feedback_terms:
        return {}
    top = max(score for score, _ in best)
    likelihood: defaultdict[str, float] = defaultdict(float)
    for score, text in best:
        counts = Counter(analyze(text[: ranking.feedback_chars]))  # counted in C, then one step per distinct term
        share = math.exp(score - top) / max(counts.total(), 1)
        for term, n in counts.items():
            likelihood[term] += share * n
    skip = exclude | _STOPWORD_TERMS
    chosen = heapq.nlargest(
        ranking.feedback_terms,
        ((p, t) for t, p in likelihood.items() if t not in skip and len(t) > 2 and not t.isdigit()),
    )
    return {term: p / chosen[0][0] for p, term in chosen} if chosen else {}


@dataclass
class _Text:
    query: tantivy.Query
    fuzzy_words: list[str]  # what the retry searches when nothing matched (plain-word queries only)
    approximate: bool = False
    terms: list[str] = field(default_factory=list)  # analyzed words to expand on (plain-word queries only)
    corrections: dict[str, list[str]] = field(default_factory=dict)  # typed word -> terms used instead


def _parse_text(
    index: tantivy.Index, text: str, vocabulary: Vocabulary | None, ranking: Ranking
) -> _Text:
    """Parse the query text: plain words become a ranked OR; Tantivy syntax is run as written.

    Negations (`-word`, `NOT word`, `NOT "a phrase"`) exclude what they name whatever the rest says,
    also alone (`NOT rust`: everything else); Tantivy would match nothing for a negation nested under
    AND or standing alone. Prefixes (`caf*`) match every indexed word they start.
    """
    negated = [m.group(1) for m in _NEGATED.finditer(text)]
    prefixes = [m.group(1) for m in _PREFIX.finditer(text)]
    if not negated and not prefixes:
        return _parse_positive(index, text, vocabulary, ranking)
    schema = index.schema
    rest = _DANGLING.sub("", _PREFIX.sub(" ", _NEGATED.sub(" ", text))).strip()
    positive = (
        _parse_positive(index, rest, vocabulary, ranking)
        if any(w not in ("AND", "OR", "NOT") for w in _WORD.findall(rest))
        else None
    )
    wanted = [positive.query] if positive is not None else []
    for prefix in prefixes:
        for start in _PREFIX_ANALYZER.analyze(prefix)[:1]:
            wanted.append(_starting_with(schema, start, ranking))
    if not wanted:
        query = tantivy.Query.all_query()
    elif len(wanted) == 1:
        query = wanted[0]
    else:
        query = tantivy.Query.boolean_query([(tantivy.Occur.Should, q) for q in wanted])
    excluded = [q for part in negated if (q := _anywhere(index, part)) is not None]
    if excluded:
        query = tantivy.Query.boolean_query(
            [(tantivy.Occur.Must, query), *((tantivy.Occur.MustNot, q) for q in excluded)]
        )
    if positive is None:
        return _Text(query, [])
    # No typo retry when something is excluded: the retry would not exclude it.
    fuzzy_words = [] if excluded else positive.fuzzy_words
    return _Text(query, fuzzy_words, positive.approximate, positive.terms, positive.corrections)


def _starting_with(schema: tantivy.Schema, start: str, ranking: Ranking) -> tantivy.Query:
    pattern = _escape_regex(start) + ".*"
    return _field_max(ranking, lambda field: tantivy.Query.regex_query(schema, field, pattern))


def _anywhere(index: tantivy.Index, part: str) -> tantivy.Query | None:
    """What a negation names, matched in any text field (a `field:` or a "phrase" as Tantivy reads it)."""
    if ":" in part or '"' in part:
        try:
            return index.parse_query(part, TEXT_FIELDS)
        except ValueError:
            pass
    terms = analyze(part)
    if not terms:
        return None
    return tantivy.Query.boolean_query(
        [(tantivy.Occur.Should, tantivy.Query.term_query(index.schema, f, t)) for f in TEXT_FIELDS for t in terms]
    )


def _parse_positive(
    index: tantivy.Index, text: str, vocabulary: Vocabulary | None, ranking: Ranking
) -> _Text:
    """Plain words as a ranked OR; Tantivy syntax as written (it asked for exactly that, so it gets
    no fuzzy retry)."""
    words = content_words(text)
    if not _OPERATOR.search(text) or _unknown_fields(text):  # 'error: foo' is prose, not a field query
        return _parse_words(index.schema, words, vocabulary, ranking)
    try:
        return _Text(index.parse_query(text, TEXT_FIELDS, field_boosts=ranking.boosts), [])
    except ValueError:
        pass
    query, errors = index.parse_query_lenient(text, TEXT_FIELDS, field_boosts=ranking.boosts)
    if errors:
        # Lenient parsing can drop most of the input; the plain words keep every term.
        plain = [w for w in words if w not in ("AND", "OR", "NOT")]
        parsed = _parse_words(index.schema, plain, vocabulary, ranking)
        return _Text(parsed.query, [], parsed.approximate, corrections=parsed.corrections)
    return _Text(query, [])


def _parse_words(
    schema: tantivy.Schema, words: list[str], vocabulary: Vocabulary | None, ranking: Ranking
) -> _Text:
    """An OR of plain words over the text fields, plus a bonus where neighbouring words appear together.

    A word counts once, by its best field plus a share (`ranking.field_tie`) of the others, so a title that
    repeats in the heading and the body does not count three times. A word the index has never seen
    (a typo) is replaced by its nearest indexed terms and the plan marked approximate.
    """
    terms = analyze(" ".join(words))
    if not terms:
        return _Text(tantivy.Query.empty_query(), words)
    clauses = []
    corrections: dict[str, list[str]] = {}
    typed = _typed_words(words)
    for term in dict.fromkeys(terms):
        if vocabulary is not None and _fuzzable(term) and not vocabulary.known(term):
            if len(corrections) == MAX_FUZZY_TERMS:
                continue  # unknown, and past the bound: it could only match nothing
            clause, corrections[typed.get(term, term)] = _fuzzy_term(schema, term, vocabulary, ranking)
        else:
            clause = _term_over_fields(schema, term, ranking)
        clauses.append((tantivy.Occur.Should, clause))
    if ranking.proximity_boost:
        for pair in dict.fromkeys((a, b) for a, b in itertools.pairwise(terms) if a != b):
            phrase = tantivy.Query.phrase_query(schema, "body", list(pair), ranking.proximity_slop)
            clauses.append((tantivy.Occur.Should, _boosted(phrase, ranking.proximity_boost)))
    return _Text(tantivy.Query.boolean_query(clauses), words, bool(corrections), terms, corrections)


def _typed_words(words: list[str]) -> dict[str, str]:
    """Each analyzed term of `words`, and the word it was typed as (lowercased)."""
    typed: dict[str, str] = {}
    for word in words:
        for term in analyze(word):
            typed.setdefault(term, word.lower())
    return typed


def _field_max(ranking: Ranking, query_of: Callable[[str], tantivy.Query]) -> tantivy.Query:
    """One word's query over the text fields (`query_of(field)` for each), boosted per field."""
    boosted = [_boosted(query_of(f), b) for f, b in ranking.field_boosts if b]
    if ranking.field_tie is None:
        return tantivy.Query.boolean_query([(tantivy.Occur.Should, q) for q in boosted])
    return tantivy.Query.disjunction_max_query(boosted, ranking.field_tie)


def _term_over_fields(schema: tantivy.Schema, term: str, ranking: Ranking) -> tantivy.Query:
    return _field_max(ranking, lambda field: tantivy.Query.term_query(schema, field, term))


def _fuzzable(term: str) -> bool:
    return len(term) >= 4 and not term.isdigit()


def _fuzzy_term(
    schema: tantivy.Schema, term: str, vocabulary: Vocabulary | None, ranking: Ranking
) -> tuple[tantivy.Query, list[str]]:
    """The indexed terms a typo probably meant, as plain term queries (so snippets can mark them),
    and those terms (none known without a vocabulary: Tantivy's fuzzy query then picks them)."""
    distance = 1 if len(term) < 7 else 2
    if vocabulary is None:
        fuzzy = _field_max(ranking, lambda f: tantivy.Query.fuzzy_term_query(schema, f, term, distance=distance))
        return fuzzy, []
    near = vocabulary.near(term, distance)
    if not near:
        return tantivy.Query.empty_query(), []
    clauses = [(tantivy.Occur.Should, _term_over_fields(schema, t, ranking)) for t in near]
    return tantivy.Query.boolean_query(clauses), near


def _boosted(query: tantivy.Query, boost: float) -> tantivy.Query:
    return query if boost == 1.0 else tantivy.Query.boost_query(query, boost)


def plain_words(text: str) -> bool:
    """Whether a query is plain words (a question, keywords) rather than query syntax (operators,
    phrases, prefixes, fields kb knows): only plain words are also searched by meaning."""
    return not _OPERATOR.search(text) or bool(_unknown_fields(text))


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
    vocabulary: Vocabulary | None = None,
    ranking: Ranking = DEFAULT_RANKING,
) -> QueryPlan:
    """Build the query for `text` restricted to section records and the given filters.

    With a `vocabulary`, words the index does not hold (typos) are replaced by the nearest terms it
    does hold, and the plan says so.

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
        filters.append(tantivy.Query.term_set_query(schema, "tags", normalize_tags(tags)))
    if modified_after is not None:
        filters.append(
            tantivy.Query.range_query(
                schema, "mtime", tantivy.FieldType.Integer, lower_bound=int(modified_after.timestamp())
            )
        )
    parsed = _parse_text(index, text, vocabulary, ranking)

    def fuzzy() -> QueryPlan | None:
        words = dict.fromkeys(analyze(" ".join(parsed.fuzzy_words)))
        terms = [t for t in words if _fuzzable(t)][:MAX_FUZZY_TERMS]
        if not terms:
            return None
        typed = _typed_words(parsed.fuzzy_words)
        clauses, corrections = [], {}
        for term in terms:
            clause, corrections[typed.get(term, term)] = _fuzzy_term(schema, term, vocabulary, ranking)
            clauses.append((tantivy.Occur.Should, clause))
        query = tantivy.Query.boolean_query(clauses)
        return QueryPlan(_restrict(query, filters), query, lambda: None, True, corrections=corrections)

    def expand(best: list[tuple[float, str]]) -> QueryPlan:
        weighted = [
            _boosted(tantivy.Query.term_query(schema, "body", term), ranking.feedback_weight * weight)
            for term, weight in feedback_terms(best, set(parsed.terms), ranking).items()
        ]
        # The question must still match: added words only reorder what its own words found.
        query = tantivy.Query.boolean_query(
            [(tantivy.Occur.Must, parsed.query), *((tantivy.Occur.Should, q) for q in weighted)]
        )
        return QueryPlan(
            _restrict(query, filters), parsed.query, fuzzy, parsed.approximate, corrections=parsed.corrections
        )

    def as_words() -> QueryPlan:
        plain = [w for w in content_words(text) if w not in ("AND", "OR", "NOT")]
        words = _parse_words(schema, plain, vocabulary, ranking)
        return QueryPlan(
            _restrict(words.query, filters), words.query, fuzzy, words.approximate, corrections=words.corrections
        )

    return QueryPlan(
        _restrict(parsed.query, filters),
        parsed.query,
        fuzzy,
        parsed.approximate,
        expand if parsed.terms and ranking.feedback_terms else None,
        None if parsed.terms else as_words,
        parsed.corrections,
        natural=plain_words(text),
        restrict=lambda query: _restrict(query, filters),
    )
