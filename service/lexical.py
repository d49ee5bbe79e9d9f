"""BM25 over the same chunks as the vectors (``bm25s``), with an English Snowball stemmer.

Names such as "Liu Zhongyi" or "Myawaddy" are matched exactly here, where embeddings blur them.
The analyzer is also used to score answer sentences lexically, so both agree on what a term is.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .files import map_array

if TYPE_CHECKING:
    import Stemmer  # no type stubs: Any to mypy

_WORD = re.compile(r"\w+", re.UNICODE)
_EMPTY = "EMPTY"
# For ASCII text: every character that ``\w`` does not match, as a space (then str.split finds the words).
_ASCII_NON_WORD_TO_SPACE = bytes(c if chr(c).isalnum() or chr(c) == "_" else ord(" ") for c in range(256))
# bm25s variants whose score is the plain sum of the stored term weights (BM25L and BM25+ add a
# per-term score for chunks that lack the term, which this reader does not implement).
_SUMMED_METHODS = frozenset({"lucene", "robertson", "atire"})


# Lucene's English stop words, as ``bm25s.stopwords.STOPWORDS_EN`` ships them (a test keeps the two
# equal): written out so that analysing a query does not import bm25s, and with it scipy (0.2 s of
# a cold ``ask``).
STOPWORDS_EN = frozenset("""
a an and are as at be but by for if in into is it no not of on or such that the their then there
these they this to was will with
""".split())


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    import Stemmer

    return Stemmer.Stemmer("english")


def analyze(text: str) -> list[str]:
    """Lower-cased, stop words removed, stemmed terms."""
    stop = STOPWORDS_EN
    words = [w for w in _WORD.findall(text.lower()) if w not in stop]
    return _stemmer().stemWords(words) if words else []


class _Stems(dict[str, str]):
    """word -> stem, each word stemmed once; looked up by ``map`` (no Python call per cached word)."""

    limit = 200_000  # words kept; then it starts again (a long-running server sees unbounded text)

    def __missing__(self, word: str) -> str:
        if len(self) >= self.limit:
            self.clear()
        stem = self[word] = _stemmer().stemWord(word)
        return stem


_STEMS = _Stems()


def span_terms(text: str, spans: Sequence[tuple[int, int]]) -> list[set[str]]:
    """The set of :func:`analyze` terms of each ``(start, end)`` span of ``text``."""
    return list(iter_span_terms(text, spans))


def iter_span_terms(text: str, spans: Iterable[tuple[int, int]]) -> Iterator[set[str]]:
    """:func:`span_terms`, one span at a time. This runs for every sentence of every result shown,
    so it works on sets, lower-cases the text once and stems each distinct word once."""
    stop, stem = STOPWORDS_EN, _STEMS.__getitem__
    if text.isascii():  # most text: words are what str.split finds once other characters are spaces
        spaced = text.lower().encode("ascii").translate(_ASCII_NON_WORD_TO_SPACE).decode("ascii")

        def words_in(a: int, b: int) -> list[str]:
            return spaced[a:b].split()
    else:
        def words_in(a: int, b: int) -> list[str]:
            return _WORD.findall(text[a:b].lower())
    for a, b in spans:
        words = set(words_in(a, b))
        words -= stop
        yield set(map(stem, words))


# The words that make a sentence a question ("what did she have", "where was it held"), dropped
# from queries only: passages use them as ordinary words, and in a question they match noise.
# On SQuAD, BM25 paragraph hit@1 rises from 0.770 to 0.785; SciFact claims are unaffected.
QUERY_STOPWORDS = frozenset("""
what which who whom whose where when why how did does do done doing was were been being has have had having
can could would should may might must shall i me my we our you your he him his she her its them those am
""".split())


def analyze_query(text: str) -> list[str]:
    """:func:`analyze` for a question: its question words are dropped too."""
    return analyze(" ".join(w for w in _WORD.findall(text.lower()) if w not in QUERY_STOPWORDS))


def top_hits(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best chunks of a BM25 score array (only those scoring above 0), best first, ties by
    the smaller id."""
    hits = np.flatnonzero(scores > 0)
    if len(hits) > n:
        hits = hits[np.argpartition(-scores[hits], n - 1)[:n]]
    order = hits[np.lexsort((hits, -scores[hits]))]
    return order.astype(np.int64), scores[order]


class LexicalIndex:
    """A BM25 index over the chunk texts: built and saved by ``bm25s``, searched from its files.

    bm25s stores the BM25 weight of every (term, chunk) pair as a sparse matrix (``data``,
    ``indices``, ``indptr``, one row per term); a query's scores are the sums of its terms' rows.
    Reading those arrays directly (memory-mapped) keeps bm25s and scipy out of the query path: a
    cold ``ask`` imports neither. A test checks the scores against bm25s's own.
    """

    def __init__(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, vocab: dict[str, int],
                 num_docs: int) -> None:
        self.data, self.indices, self.indptr = data, indices, indptr
        self.vocab = vocab
        self.num_docs = num_docs

    @property
    def size(self) -> int:
        return self.num_docs

    @staticmethod
    def write(texts: Sequence[str], folder: Path) -> None:
        """Index ``texts`` (row ``i`` = chunk ``i``) with bm25s and save the index into ``folder`` (the
        format 1-4 lexical part; only tests write it now, with today's ``BM25_K1`` and ``BM25_B``)."""
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs at DEBUG by default
        folder.mkdir(parents=True, exist_ok=True)
        if not texts:
            (folder / _EMPTY).write_text("")
            return
        retriever = bm25s.BM25(k1=BM25_K1, b=BM25_B)
        retriever.index([analyze(t) for t in texts], show_progress=False, create_empty_token=True)
        retriever.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        if (folder / _EMPTY).exists():
            empty = np.zeros(0, np.int32)
            return cls(np.zeros(0, np.float32), empty, np.zeros(1, np.int64), {}, 0)
        params = json.loads((folder / "params.index.json").read_text())
        if params.get("method", "lucene") not in _SUMMED_METHODS:
            raise ValueError(f"unsupported BM25 variant {params.get('method')!r} in {folder}")
        vocab = json.loads((folder / "vocab.index.json").read_text())
        data, indices, indptr = (map_array(folder / f"{name}.csc.index.npy") for name in ("data", "indices", "indptr"))
        # bm25s's vocabulary also names an empty token that has no row: ids beyond the rows are skipped.
        if len(indptr) < 1 or len(data) != len(indices) or int(indptr[-1]) != len(data):
            raise ValueError(f"the BM25 index in {folder} is inconsistent")
        return cls(data, indices, indptr, vocab, int(params["num_docs"]))

    def scores(self, terms: Sequence[str]) -> np.ndarray:
        """BM25 score of every chunk for the query ``terms`` (a repeated term counts again)."""
        last = len(self.indptr) - 1
        rows = [r for r in (self.vocab.get(t, last) for t in terms) if r < last]
        if not rows:
            return np.zeros(self.num_docs, np.float32)
        spans = [(int(self.indptr[r]), int(self.indptr[r + 1])) for r in rows]
        chunk_ids = np.concatenate([self.indices[a:b] for a, b in spans])
        weights = np.concatenate([self.data[a:b] for a, b in spans])
        return np.bincount(chunk_ids, weights=weights, minlength=self.num_docs).astype(np.float32)

    def search(self, query: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` chunk ids and BM25 scores (only chunks sharing a term with the query)."""
        terms = analyze_query(query)
        if not self.num_docs or not terms:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        return top_hits(self.scores(terms), n)


# -- BM25 over segments ---------------------------------------------------------------------------------------
# Lucene's BM25 formula with its default saturation (k1 = 1.2) and a lighter length normalisation
# (b = 0.6): chunks are a sentence or a window of a few, so a term's repeats saturate early and
# length says less about topicality than in whole documents. Against bm25s's defaults (1.5, 0.75),
# which formats 1-4 baked into their files (those still score with them until the next sync rebuilds
# them), measured in one bench-quality run each (README, issue 15): SQuAD hit@1 0.8422 -> 0.8488,
# untitled 0.8413 -> 0.8483, Reuters 0.781 -> 0.795, SciFact 0.7349 -> 0.7354. A lower k1 (0.9-1.0)
# gained more on SQuAD (0.851) but not on Reuters; b = 0.9 lost everywhere.
BM25_K1 = 1.2
BM25_B = 0.6


# Word pairs: each pair of consecutive terms of a chunk (stop words removed) is indexed as one more
# term, and a question's consecutive terms score as pairs at PAIR_WEIGHT of a word's BM25, so a
# passage that has the question's words next to each other ("tidal power station") ranks above one
# that has them apart. Measured in one bench-quality run each (README, issue 15): at 0.1 SQuAD
# hit@1 0.8376 -> 0.8422, untitled 0.8381 -> 0.8413, SciFact and Reuters unchanged within a
# question; at 0.25 SciFact lost 0.009, and at full weight (a pair as a plain term) 0.007.
PAIR_WEIGHT = 0.1
PAIRS_VERSION = 1  # recorded with an index's chunking: an index without pairs in its postings is built again


def word_pairs(terms: Sequence[str]) -> list[str]:
    """The pairs of consecutive terms, each as one term ("tidal power": no analysed term has a space)."""
    return [f"{a} {b}" for a, b in zip(terms, terms[1:], strict=False)]


def posting_terms(terms: Sequence[str]) -> list[str]:
    """What a chunk's postings hold for its analysed ``terms``: each term, then each consecutive pair
    (its BM25 length counts the terms only)."""
    return [*terms, *word_pairs(terms)]


def query_terms(query: str) -> tuple[list[str], list[str]]:
    """A question's BM25 terms and its consecutive term pairs."""
    terms = analyze_query(query)
    return terms, word_pairs(terms)


def term_weights(terms: Sequence[str], pairs: Sequence[str] = ()) -> dict[str, float]:
    """How much each query term's BM25 counts: a term once per time the question says it, a pair
    ``PAIR_WEIGHT`` of that (every store scores a question with these)."""
    weights: dict[str, float] = dict(Counter(terms))
    for pair, repeats in Counter(pairs).items():
        weights[pair] = weights.get(pair, 0.0) + PAIR_WEIGHT * repeats
    return weights


def bm25_idf(df: np.ndarray, n: int) -> np.ndarray:
    """Lucene's idf: ``ln(1 + (N - df + 0.5) / (df + 0.5))`` (bm25s's "lucene" variant)."""
    df = np.asarray(df, np.float64)
    return np.log1p((n - df + 0.5) / (df + 0.5))


class TermPostings:
    """One segment's lexical part: raw term frequencies, so BM25 is scored at query time with the
    statistics of the whole index (``CorpusStats``), not of the segment.

    A precomputed BM25 weight (what bm25s stores) bakes in the idf and average length of the texts it
    was built from; an index split into segments, with deleted rows, would then score a passage
    differently depending on how it happens to be split. Term frequencies and chunk lengths do not
    depend on anything else, so a search over several segments gives exactly the scores of one
    merged index. Files (in ``folder``): ``terms.json`` (the vocabulary, in row order),
    ``indptr.npy`` (int64, a row per term), ``chunks.npy`` (int32, segment-local chunk rows, ascending
    within a term) and ``tf.npy`` (float32), and ``lengths.npy`` (int32, terms per chunk).
    """

    def __init__(self, vocab: dict[str, int], indptr: np.ndarray, chunks: np.ndarray, tf: np.ndarray,
                 lengths: np.ndarray) -> None:
        self.vocab, self.indptr, self.chunks, self.tf, self.lengths = vocab, indptr, chunks, tf, lengths

    @property
    def size(self) -> int:
        return len(self.lengths)

    @classmethod
    def build(cls, texts: Sequence[str], pairs: bool = True) -> TermPostings:
        """The postings of ``texts`` (row ``i`` = chunk ``i``), analysed as every index is: its terms
        and (``pairs``) its consecutive term pairs. A chunk's length counts its terms only, so the
        words' BM25 is what it is without pairs."""
        vocab: dict[str, int] = {}
        term_ids: list[int] = []
        lengths = np.zeros(len(texts), np.int32)
        held = np.zeros(len(texts), np.int64)  # postings of each row: terms, then pairs
        for i, text in enumerate(texts):
            terms = analyze(text)
            lengths[i] = len(terms)
            every = posting_terms(terms) if pairs else terms
            held[i] = len(every)
            term_ids += [vocab.setdefault(t, len(vocab)) for t in every]
        rows = np.repeat(np.arange(len(texts), dtype=np.int64), held)
        return cls.from_pairs(vocab, np.asarray(term_ids, np.int64), rows, np.ones(len(rows), np.float32), lengths)

    @classmethod
    def from_pairs(cls, vocab: dict[str, int], terms: np.ndarray, rows: np.ndarray, tf: np.ndarray,
                   lengths: np.ndarray) -> TermPostings:
        """Postings from (term, chunk row, frequency) triples; repeated pairs are summed."""
        n = max(len(lengths), 1)
        key = terms.astype(np.int64) * n + rows.astype(np.int64)
        unique, inverse = np.unique(key, return_inverse=True)
        counts = np.bincount(inverse.reshape(-1), weights=tf, minlength=len(unique)).astype(np.float32)
        indptr = np.searchsorted(unique // n, np.arange(len(vocab) + 1)).astype(np.int64)
        return cls(vocab, indptr, (unique % n).astype(np.int32), counts, np.asarray(lengths, np.int32))

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(term ids, chunk rows, frequencies) of every posting: what a merge reads."""
        terms = np.repeat(np.arange(len(self.indptr) - 1, dtype=np.int64), np.diff(self.indptr))
        return terms, self.chunks.astype(np.int64), self.tf

    def write(self, folder: Path) -> list[str]:
        """Save into ``folder``; returns the files written (relative to ``folder``'s parent)."""
        folder.mkdir(parents=True, exist_ok=True)
        terms = sorted(self.vocab, key=self.vocab.__getitem__)
        (folder / "terms.json").write_text(json.dumps(terms, ensure_ascii=False))
        for name, array in (("indptr", self.indptr), ("chunks", self.chunks), ("tf", self.tf),
                            ("lengths", self.lengths)):
            np.save(folder / f"{name}.npy", array)
        return [f"{folder.name}/{f}" for f in ("terms.json", "indptr.npy", "chunks.npy", "tf.npy", "lengths.npy")]

    @classmethod
    def load(cls, folder: Path) -> TermPostings:
        terms = json.loads((folder / "terms.json").read_text())
        indptr, chunks, tf, lengths = (map_array(folder / f"{name}.npy") for name in ("indptr", "chunks", "tf", "lengths"))
        if len(indptr) != len(terms) + 1 or len(chunks) != len(tf) or int(indptr[-1]) != len(chunks):
            raise ValueError(f"the term postings in {folder} are inconsistent")
        return cls({t: i for i, t in enumerate(terms)}, indptr, chunks, tf, lengths)

    def rows_of(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """The chunk rows holding ``term`` and its frequency in each (empty when absent)."""
        row = self.vocab.get(term)
        if row is None:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        a, b = int(self.indptr[row]), int(self.indptr[row + 1])
        return self.chunks[a:b], self.tf[a:b]


@dataclass(frozen=True)
class CorpusStats:
    """What BM25 needs from the whole index: live chunks and their mean length."""

    chunks: int
    mean_length: float


def bm25_postings(segments: Sequence[tuple[TermPostings, int, np.ndarray | None]], terms: Sequence[str],
                  stats: CorpusStats, row_lengths: np.ndarray | None = None, row_live: np.ndarray | None = None,
                  pairs: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """The BM25 weight of every (chunk row, query term) posting of some segments, each given with the
    row its chunks start at and its live rows (None: all live), as (rows, weights): a chunk's score is
    the sum of its weights (a term repeated in the query counts again). Scored with the whole index's
    ``stats`` and document frequencies (live rows of every segment), not a segment's.

    Only the postings are gathered term by term and segment by segment; the rest is one pass over
    them. ``row_lengths`` and ``row_live``, every row's length and liveness over all the segments
    (a view keeps them), save gathering those segment by segment too. ``pairs``: the question's
    consecutive term pairs (``query_terms``), each weighing ``PAIR_WEIGHT`` of a term."""
    norm = BM25_K1 * (1 - BM25_B)
    slope = BM25_K1 * BM25_B / max(stats.mean_length, 1e-9)
    counts = term_weights(terms, pairs)
    rows: list[np.ndarray] = []
    tf: list[np.ndarray] = []
    offsets: list[int] = []
    sizes: list[int] = []
    which: list[int] = []  # the term of each gathered block
    lengths: list[np.ndarray] = []
    alive: list[np.ndarray] = []
    for t, term in enumerate(counts):
        for postings, offset, live in segments:
            r, f = postings.rows_of(term)
            if len(r):
                rows.append(r)
                tf.append(f)
                offsets.append(offset)
                sizes.append(len(r))
                which.append(t)
                if row_lengths is None:
                    lengths.append(postings.lengths[r])
                if row_live is None:
                    alive.append(np.ones(len(r), bool) if live is None else live[r])
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    hit = np.concatenate(rows).astype(np.int64) + np.repeat(np.asarray(offsets, np.int64), sizes)
    term_of = np.repeat(np.asarray(which, np.int64), sizes)
    live_hit = row_live[hit] if row_live is not None else np.concatenate(alive)
    df = np.bincount(term_of, weights=live_hit, minlength=len(counts))
    times = np.fromiter(counts.values(), np.float64, len(counts))
    idf = np.where(df > 0, times * bm25_idf(df, stats.chunks), 0.0)  # a term no live chunk holds: no weight
    f = np.concatenate(tf).astype(np.float32)
    length = row_lengths[hit] if row_lengths is not None else np.concatenate(lengths)
    # idf x tf in float32, over a float64 length term: the same roundings as bm25s's stored weights,
    # so an index upgraded from bm25s (format 4 and older) scores every chunk to the bit as before.
    weights = idf.astype(np.float32)[term_of] * f / (norm + slope * length.astype(np.float64) + f)
    return hit, weights
