"""Near-duplicates of evaluation items in training data: word 13-gram containment.

The n-grams are those of the GPT-3 contamination analysis (Brown et al. 2020, "Language
Models are Few-Shot Learners", Appendix C): word 13-grams of normalised text, and an
evaluation item shorter than 13 words counts as one n-gram of its own length. Text is
normalised first: lower-cased, split into runs of letters and digits (punctuation, LaTeX
markup symbols and whitespace dropped), so ``$\\frac{3x-2}{x-2}$`` reads ``frac 3x 2 x 2``.

GPT-3 flags any shared 13-gram. On math text that flags stock phrasing ("where m and n
are relatively prime positive integers, find m + n", Asymptote ``label`` lines, a
polynomial written out): 3 of the 128 MATH/GSM8K train items in
``tests/data/loop/instruction_pool.jsonl`` share one to five 13-grams with a MATH-500
problem without copying it. So a training item is flagged when the 13-grams it shares
with one evaluation item cover at least :data:`MIN_SHARE` of that item's distinct
13-grams (containment, Broder 1997, "On the resemblance and containment of documents");
those false positives cover at most 0.094, a copy 1.0.

What it finds: verbatim copies and lightly edited ones (a changed number or an inserted
clause leave most 13-word windows intact). What it cannot find: paraphrases, and an
evaluation item under 13 words once any of its words changed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: Words per n-gram (GPT-3, Appendix C).
NGRAM = 13
#: Least share of an evaluation item's distinct n-grams a training item must contain to be flagged.
MIN_SHARE = 0.25
#: Words of matched text quoted as evidence.
EXCERPT_WORDS = NGRAM
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str | None) -> list[str]:
    """Normalised words of a text (lower case, runs of ``[a-z0-9]``)."""
    return _WORD.findall((text or "").lower())


@dataclass
class Leak:
    """One training item that overlaps an evaluation item."""

    item_id: str
    eval_id: str
    shared_ngrams: int
    share: float
    excerpt: str

    def to_dict(self) -> dict[str, object]:
        return {"item_id": self.item_id, "eval_id": self.eval_id, "shared_ngrams": self.shared_ngrams,
                "share": round(self.share, 4), "excerpt": self.excerpt}


class EvalNgramIndex:
    """The word n-grams of a set of evaluation items, for containment look-ups.

    Args:
        items: ``(eval_id, text)`` pairs.
        n: n-gram length in words (default :data:`NGRAM`).
        min_share: least contained share of an evaluation item's distinct n-grams that flags
            (default :data:`MIN_SHARE`; 0 flags any overlap, the GPT-3 rule).

    Raises:
        ValueError: ``n`` < 1 or ``min_share`` outside [0, 1].
    """

    def __init__(self, items: Iterable[tuple[str, str]], n: int = NGRAM, min_share: float = MIN_SHARE):
        if n < 1 or not 0 <= min_share <= 1:
            raise ValueError(f"need n >= 1 and 0 <= min_share <= 1, got n={n}, min_share={min_share}")
        self.n, self.min_share = n, min_share
        self.grams: dict[tuple[str, ...], list[str]] = {}
        self.sizes: dict[str, int] = {}
        for eval_id, text in items:
            w = words(text)
            if not w or eval_id in self.sizes:
                continue
            grams = {tuple(w)} if len(w) < n else {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}
            self.sizes[eval_id] = len(grams)
            for g in grams:
                self.grams.setdefault(g, []).append(eval_id)
        self.lengths = sorted({len(g) for g in self.grams}, reverse=True)

    @property
    def n_items(self) -> int:
        return len(self.sizes)

    def find(self, item_id: str, text: str | None) -> Leak | None:
        """The evaluation item whose n-grams ``text`` contains the largest share of, if that share flags."""
        w = words(text)
        hits: dict[str, int] = {}
        first: dict[str, int] = {}
        for size in self.lengths:
            seen = set()
            for i in range(len(w) - size + 1):
                g = tuple(w[i:i + size])
                if g in seen:
                    continue
                seen.add(g)
                for eval_id in self.grams.get(g, ()):
                    hits[eval_id] = hits.get(eval_id, 0) + 1
                    first.setdefault(eval_id, i)
        if not hits:
            return None
        eval_id = max(hits, key=lambda e: (hits[e] / self.sizes[e], e))
        share = hits[eval_id] / self.sizes[eval_id]
        if share < self.min_share:
            return None
        start = first[eval_id]
        return Leak(item_id, eval_id, hits[eval_id], share, " ".join(w[start:start + EXCERPT_WORDS]))


def find_leaks(items: Iterable[tuple[str, str]], index: EvalNgramIndex) -> list[Leak]:
    """Every training item (``(id, text)`` pairs) that overlaps an evaluation item of ``index``."""
    return [leak for item_id, text in items if (leak := index.find(item_id, text)) is not None]


def eval_index(path: str | Path, n: int = NGRAM, min_share: float = MIN_SHARE) -> EvalNgramIndex:
    """Index the questions of an evaluation file (any :mod:`service.readers` format).

    Raises:
        ConfigError: the file has no readable evaluation item.
        InputFormatError: the file is missing or its format is unknown.
    """
    from slicelab.service.errors import ConfigError
    from slicelab.service.readers import read_eval_samples
    from slicelab.service.samples import Rejected

    index = EvalNgramIndex(((s.id, s.question) for s in read_eval_samples(path) if not isinstance(s, Rejected)),
                           n, min_share)
    if index.n_items == 0:
        raise ConfigError(f"--dedupe-against {path}: no readable evaluation item (a question field is needed)")
    return index


def check_leakage(items: Iterable[tuple[str, str]], eval_file: str | Path, n: int = NGRAM,
                  min_share: float = MIN_SHARE) -> tuple[list[Leak], dict[str, object]]:
    """Check training items (``(id, text)`` pairs) against an evaluation file.

    Returns:
        ``(leaks, summary)``; ``summary`` names the method and threshold and holds ``ngram``,
        ``min_share``, ``eval_file``, ``n_eval_items``, ``n_flagged`` and ``flagged`` (the leaks as dicts).

    Raises:
        ConfigError, InputFormatError: see :func:`eval_index`.
    """
    index = eval_index(eval_file, n, min_share)
    leaks = find_leaks(items, index)
    return leaks, {"method": f"word {n}-grams (GPT-3, Brown et al. 2020, App. C; the whole evaluation item when "
                             f"shorter); flagged when an item contains >= {min_share:.0%} of one evaluation item's "
                             f"distinct {n}-grams",
                   "ngram": n, "min_share": min_share, "eval_file": str(eval_file), "n_eval_items": index.n_items,
                   "n_flagged": len(leaks), "flagged": [lk.to_dict() for lk in leaks]}
