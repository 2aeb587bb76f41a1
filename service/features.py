"""Hashed word n-gram features for the student: fast enough to label thousands of documents per second a core.

:class:`HashedNgrams` is a stateless transformer (nothing to fit, so its columns
never depend on the corpus): lower-cased word tokens (``\\w\\w+``, the tokens of
scikit-learn's default ``token_pattern``) and adjacent token pairs, hashed into
``n_features`` columns, counted, rows L2-normalized — the features of
``HashingVectorizer(ngram_range=(1, 2), alternate_sign=False)`` up to the hash function:

- unigram column: ``mix(crc32(token)) % n_features``;
- bigram column: the two unigram hashes combined (``a * 0x9E3779B97F4A7C15 + b``,
  then mixed) ``% n_features``, the n-gram hashing of Vowpal Wabbit and fastText;
- ``mix`` is the splitmix64 finalizer (Steele, Lea & Flood 2014).

Why not ``HashingVectorizer`` itself: it hashes every n-gram string in a
per-feature Python loop (about 0.5 µs a feature, ~900 features per 512-token
document), and importing scikit-learn costs a worker ~150 MiB. Here each distinct
token is hashed once (a per-process memo keeps the frequent ones) and bigrams are
computed with numpy.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix, diags

#: Word tokens: runs of 2+ word characters (the same tokens as ``(?u)\b\w\w+\b``).
WORD = re.compile(r"\w\w+")
#: Distinct tokens whose hash a process remembers (bounded; about 100 bytes each).
MEMO_SIZE = 200_000
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer (uint64 in, uint64 out)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class HashedNgrams:
    """Hashed word unigram (+ bigram) counts, L2-normalized rows (a stateless scikit-learn-style transformer).

    Args:
        n_features: number of columns (a power of two keeps ``%`` cheap; any positive int works).
        bigrams: also hash adjacent token pairs.
    """

    def __init__(self, n_features: int = 2 ** 20, bigrams: bool = True):
        self.n_features = n_features
        self.bigrams = bigrams

    def fit(self, X: Any = None, y: Any = None) -> HashedNgrams:
        """Nothing to learn; returns self."""
        return self

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_memo"}

    def _token_hashes(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        """Unigram hashes of every token of every text (one flat uint64 array) and the text boundaries.

        A token's hash is the splitmix64 mix of the CRC-32 of its UTF-8 bytes (CRC-32 is in C in
        the standard library; the mix spreads its bits over the columns).
        """
        memo = self.__dict__.setdefault("_memo", {})
        get = memo.get
        flat: list[int] = []
        tokens: list[str] = []
        bounds = [0]
        for text in texts:
            toks = WORD.findall(text.lower())
            tokens += toks
            flat += [get(t, -1) for t in toks]
            bounds.append(len(flat))
        h = np.asarray(flat, dtype=np.int64)
        for i in np.flatnonzero(h < 0):
            t = tokens[i]
            v = memo.get(t)
            if v is None:
                v = zlib.crc32(t.encode("utf-8", "surrogatepass"))
                if len(memo) < MEMO_SIZE:
                    memo[t] = v
            h[i] = v
        with np.errstate(over="ignore"):
            return _mix(h.astype(np.uint64)), bounds

    def transform(self, texts: list[str]) -> csr_matrix:
        """Sparse float64 matrix ``(len(texts), n_features)``; a text without tokens gives an empty row."""
        n_docs = len(texts)
        h, bounds = self._token_hashes(texts)
        if not len(h):
            return csr_matrix((n_docs, self.n_features))
        bounds_a = np.asarray(bounds)
        counts = np.diff(bounds_a)
        rows = np.repeat(np.arange(n_docs), counts)
        cols = h % np.uint64(self.n_features)
        if self.bigrams and len(h) > 1:
            same_doc = rows[:-1] == rows[1:]
            with np.errstate(over="ignore"):
                bi = _mix(h[:-1] * _GOLDEN + h[1:])[same_doc] % np.uint64(self.n_features)
            rows = np.concatenate([rows, rows[:-1][same_doc]])
            cols = np.concatenate([cols, bi])
        X = csr_matrix((np.ones(len(cols)), (rows, cols.astype(np.int64))), shape=(n_docs, self.n_features))
        X.sum_duplicates()
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return (diags(1.0 / norms) @ X).tocsr()

    def fit_transform(self, texts: list[str], y: Any = None) -> csr_matrix:
        """Same as :meth:`transform` (there is nothing to fit)."""
        return self.transform(texts)
