"""The Postgres store's lexical leg: a ``tsvector`` of the analyzed terms with a GIN index, ranked by BM25 in SQL.

- A record's ``lexical`` column holds its analyzed terms (``lexical.analyzer``, the same terms as
  the embedded store's FTS5 index), written as a ``tsvector`` literal so Postgres keeps each term
  exactly (no parser, no dictionary); each term has one position, its term frequency (``'term':tf``:
  the search reads tf as the term's last position, which is also tf in the ``1..tf`` position lists
  that earlier versions wrote, so their rows score alike). A position is at most 16,383 in Postgres,
  so tf is capped there, and a term longer than a lexeme may be, 2,046 bytes, is left out.
  ``lexical_len`` holds the number of terms.
- ``embeddings_collections`` keeps N (``lex_docs``) and the total length (``lex_terms``) of each
  collection, changed in the transaction of every write (writers of a collection with a lexical
  leg lock its row there, so the counts never race).
- A query finds its candidates through the GIN index (``lexical @@ 't1' | 't2' ...``), takes each
  candidate's tf of the query terms from their positions, counts each term's document frequency
  over the candidates (every document holding a query term is one), and scores BM25 exactly as
  SQLite FTS5's ``bm25()`` does (k1 = 1.2, b = 0.75, idf ``ln((N - n + 0.5) / (n + 0.5))``, at
  least 1e-6), so both stores rank and score alike. The filter is evaluated on the candidates
  (frequencies count them all) and only the rows it allows are scored; the best ``top_k`` are
  then read by primary key. Ties (to 1e-9, which absorbs the order of a float sum) go to the
  record written first, as on the embedded store.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from psycopg import sql

from ..lexical.analyzer import analyzer
from .filters import Filter
from .pg_filters import pg_where

K1, B = 1.2, 0.75
MAX_POSITION = 16383  # Postgres: the largest position a lexeme may have (larger ones are clamped)
MAX_LEXEME_BYTES = 2046  # Postgres: "word is too long" beyond this


def _lexeme(term: str) -> str:
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def frequencies(language: str, text: str) -> tuple[dict[str, int], int]:
    """Each term a ``tsvector`` keeps with its tf (capped at ``MAX_POSITION``), and the term count of a text."""
    terms = analyzer(language).terms(text)
    tfs = Counter(terms)
    # per-text checks, not per-term ones (a text has ~100 terms): only a long term (up to 4 bytes a
    # character) or a huge tf needs the term-by-term pass
    if max(map(len, tfs), default=0) * 4 > MAX_LEXEME_BYTES or max(tfs.values(), default=0) > MAX_POSITION:
        return {t: min(tf, MAX_POSITION) for t, tf in tfs.items() if len(t.encode()) <= MAX_LEXEME_BYTES}, len(terms)
    return tfs, len(terms)


def document(language: str, text: str) -> tuple[str, int]:
    """The ``tsvector`` literal and the term count of a text (see module docstring)."""
    tfs, length = frequencies(language, text)
    words = "".join(tfs)
    if "'" in words or "\\" in words:  # the analyzer's terms are letters and digits: never, so far
        return " ".join(f"{_lexeme(term)}:{tf}" for term, tf in tfs.items()), length
    return " ".join(map("'{}':{}".format, tfs, tfs.values())), length


def search(conn: Any, table: sql.Identifier, docs: int, total_terms: int, terms: Sequence[str], top_k: int,
           where: Filter) -> list[tuple[str, str, str, float]]:
    """The best ``top_k`` ``(id, text, metadata JSON, score)`` by BM25 among the rows ``where`` allows."""
    distinct = [t for t in dict.fromkeys(terms) if t and len(t.encode()) <= MAX_LEXEME_BYTES]
    if not distinct or top_k <= 0 or docs <= 0:
        return []
    query = " | ".join(_lexeme(t) for t in distinct)
    clause, params = pg_where(where)
    statement = sql.SQL("""
        WITH p AS (SELECT %s::float8 AS docs, %s::float8 AS avgdl),
        cand AS (
            SELECT id, updated_at, lexical_len, ts_filter(setweight(lexical, 'A', %s::text[]), '{{a}}') AS hits,
                   {clause} AS allowed
            FROM {table} WHERE lexical @@ %s::tsquery),
        tf AS (
            SELECT cand.id, cand.updated_at, cand.lexical_len, cand.allowed, u.lexeme,
                   u.positions[cardinality(u.positions)] AS tf
            FROM cand CROSS JOIN LATERAL unnest(cand.hits) AS u),
        df AS (SELECT lexeme, count(*) AS n FROM tf GROUP BY lexeme),
        scored AS (
            SELECT tf.id, tf.updated_at,
                   sum(greatest(ln((p.docs - df.n + 0.5) / (df.n + 0.5)), 1e-6) * tf.tf * ({k1} + 1)
                       / (tf.tf + {k1} * (1 - {b} + {b} * tf.lexical_len / p.avgdl))) AS score
            FROM tf JOIN df USING (lexeme) CROSS JOIN p WHERE tf.allowed
            GROUP BY tf.id, tf.updated_at),
        best AS (SELECT * FROM scored ORDER BY round(score::numeric, 9) DESC, updated_at, id LIMIT %s)
        SELECT t.id, t.text, t.metadata::text, best.score FROM best JOIN {table} t USING (id)
        ORDER BY round(best.score::numeric, 9) DESC, best.updated_at, t.id""").format(
        table=table, clause=clause, k1=sql.Literal(K1), b=sql.Literal(B))
    args = [float(docs), max(total_terms / docs, 1e-9), distinct, *params, query, top_k]
    return [(r[0], r[1], r[2], float(r[3])) for r in conn.execute(statement, args)]
