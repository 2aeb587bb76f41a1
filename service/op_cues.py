"""Operation cues: words and notation that signal a solving operation, in any benchmark or document.

A classifier trained on one benchmark's words learns that benchmark's topics; these
cues name the operation itself (``how many ways`` → counting, ``remainder`` →
number theory), so an item from a benchmark no pool item came from, or a
worked problem in a pretraining document, carries the same marker as the pool
items that share its operation. Each cue maps to one operation id of
``prompts/taxonomy-v1.yaml`` (the operation list shared by evaluation items and
documents). A benchmark's own category field, when it has one (MATH ``subject``,
also read from ids like ``test/number_theory/12.json``), adds the operations that
category is about.

Markers are plain tokens (``xcue<operation>``, ``xcat<operation>``) added to the
text the k-NN and student labelers read; they never decide a label by themselves.
"""

from __future__ import annotations

import re

#: operation id → pattern of cues (case-insensitive).
CUES: dict[str, re.Pattern[str]] = {op: re.compile(p, re.I) for op, p in {
    "counting_combinatorics": r"how many (different |distinct )?(ways|arrangements|orders|combinations|subsets|"
                              r"paths|committees|outcomes|sequences|permutations)|\\binom|\\choose|\bpermutations?\b|"
                              r"\bcombinations?\b|\barrange(ments?)?\b|\bcommittee\b|\bdistinguishable\b",
    "probability_statistics": r"\bprobabilit(y|ies)\b|\bexpected value\b|\brandom(ly)?\b|\bdice?\b|\bcoins?\b|"
                              r"\bmean\b|\bmedian\b|\bstandard deviation\b|\bvariance\b|\bodds\b",
    "number_theory": r"\bremainder\b|\bdivisib(le|ility)\b|\bdivisors?\b|\bprimes?\b|\bmod(ulo)?\b|\\pmod|"
                     r"\bgcd\b|\blcm\b|greatest common (divisor|factor)|least common multiple|\bdigits?\b|"
                     r"\bbase[- ]\d+\b|_\{?\d\}?\b|\bintegers? \w+ such that\b|\bfactorial\b",
    "geometry_measurement": r"\btriangles?\b|\bcircles?\b|\bradius\b|\bdiameter\b|\bperimeter\b|\barea\b|"
                            r"\bvolume\b|\bangles?\b|\bpolygon\b|\bsquare units\b|\bhypotenuse\b|\\angle|\\triangle|"
                            r"\bparallelogram\b|\brectangle\b|\bcoordinates?\b|\bsphere\b|\bcylinder\b|\[asy\]",
    "algebraic_manipulation": r"\bsolve for\b|\bequations?\b|\bpolynomials?\b|\broots?\b|\bsimplify\b|"
                              r"\bexpand\b|\bfactor(ize)?\b|\bf\(x\)|\bquadratic\b|\bvariables?\b|\bfunction\b|"
                              r"[a-z]\^2|\\log|\bsystem of\b|\binequalit(y|ies)\b",
    "arithmetic": r"\$\d|\bdollars?\b|\bcents?\b|\bpercent\b|\d\\?%|\bin total\b|\bcosts?\b|"
                  r"\bper (hour|day|week|month|year)\b|\bhow much\b|\btimes as (many|much)\b|\bevaluate\b|"
                  r"\bcompute\b|\bhow many .{0,40}\b(left|more|total|altogether)\b|^[\d\s()+\-*/=]+$",
    "temporal_reasoning": r"\b(mm/dd/yyyy|yesterday|tomorrow|o'clock|calendar)\b|\b\d{1,2}(am|pm)\b|"
                          r"\b(january|february|march|april|may|june|july|august|september|october|november|"
                          r"december)\b",
    "spatial_reasoning": r"\bturn (left|right|around)\b|\bsteps? (forward|backward|left|right)\b|"
                         r"\b(north|south|east|west)\b|\bstarting point\b",
    "state_tracking": r"\bswap(s|ped)?\b|\btrade(s|d)?\b|\bswitch partners\b|\bat the end of\b",
    "logical_deduction": r"\b(leftmost|rightmost|second from the (left|right)|oldest|newest)\b|\btells the truth\b|"
                         r"\blies\b|\bpremises?\b|\bdeductively\b|\bfixed order\b|\bparagraphs each describe\b",
    "algorithm_execution": r"\bsort the following\b|\balphabetically\b|\bparenthes[ie]s are closed\b|"
                           r"\b(not|and|or) \( ?(true|false)\b|\b(true|false) (and|or)\b",
    "linguistic_analysis": r"\badjective order\b|\bantecedent\b|\bpronoun\b|\bsarcastic\b|\btranslation\b|"
                           r"\bhumorous edit\b|\bgrammatical\b",
    "factual_recall": r"\bmovies?\b|\bfilms?\b|\bplausible\b|\bwho (was|is)\b|\bcapital of\b",
    "causal_reasoning": r"\bcaused?\b|\bintentionally\b|\bbecause of\b",
    "reading_comprehension": r"\btable\b|\bpassage\b|\baccording to\b",
    "case_analysis": r"\bcases?\b|\bcasework\b|\bconsider (each|all)\b",
    "pattern_induction": r"\bsequence\b|\bpattern\b|\bnext term\b|\bterms? of\b|\brecursive(ly)?\b",
}.items()}

#: background_condition id → pattern of cues of the world a question is set in (case-sensitive where names matter).
BACKGROUND_CUES: dict[str, re.Pattern[str]] = {bg: re.compile(p) for bg, p in {
    # money (\$5 in LaTeX, $5 in plain text, never the $1$ of inline math), units, people, places
    "everyday_world": r"\\\$\s?\d|(?<![\\$])\$\d[\d,]*(?:\.\d+)?(?![\d.,]*\$)|"
                      r"(?i:\b(dollars?|cents?|buys?|sells?|store|shop|pays?|costs?|minutes?|hours?|miles?|"
                      r"pounds?|feet|inches|friends?|family|school|students?|teacher|each week|every day)\b)",
    "pure_math": r"\\frac|\\sqrt|\\\(|\$[^$\n]{0,80}[\^_=][^$\n]{0,80}\$|(?i:\b(polynomial|integers?|real numbers?|"
                 r"function|equation|triangle|circle|prime|digits?|polygon|angles?|sphere|cube|radius|volume|"
                 r"probability|dice)\b)",
    "formal_symbolic": r"\b(True|False)\b (and|or)\b|\bnot \(|(?i:\b(deductively|premises?|parenthes[ie]s|boolean|"
                       r"svg path|dyck)\b)",
    "language_linguistics": r"(?i:\b(sentence|antecedent|pronoun|adjective order|translation|humorous edit|sarcastic|"
                            r"alphabetically)\b)",
    "arts_media_sports": r"(?i:\b(movies?|films?|artists?|bands?|songs?|albums?|basketball|soccer|football|hockey|"
                         r"baseball|tennis|golf)\b)|\b(NBA|NFL|NHL|MLB)\b",
    "natural_science": r"(?i:\b(physics|chemical|molecules?|atoms?|species|velocity|energy|gravity|organisms?)\b)",
}.items()}


def cued_background(text: str) -> str:
    """The background_condition whose cues ``text`` holds most (ties: the order of :data:`BACKGROUND_CUES`).

    Mathematics cues count double in text with LaTeX or inline math (``$``, ``\\``): there,
    invented objects and units in a puzzle are still pure mathematics. With no cue at all:
    ``everyday_world``.
    """
    scores = {bg: len(p.findall(text)) for bg, p in BACKGROUND_CUES.items()}
    if "$" in text or "\\" in text:
        scores["pure_math"] *= 2
    best = max(scores, key=lambda bg: scores[bg])
    return best if scores[best] > 0 else "everyday_world"


def background_markers(text: str) -> str:
    """Marker tokens (``xbg<background>``, once per cue found) for the background cues in ``text``."""
    marks = []
    for bg, pattern in BACKGROUND_CUES.items():
        marks += [f"xbg{bg.replace('_', '')}"] * min(3, len(pattern.findall(text)))
    return " ".join(marks)


#: MATH ``subject`` (lower case, spaces or underscores) → the operations it is about.
CATEGORY_OPS: dict[str, tuple[str, ...]] = {
    "algebra": ("algebraic_manipulation",),
    "intermediate_algebra": ("algebraic_manipulation",),
    "precalculus": ("algebraic_manipulation", "geometry_measurement"),
    "prealgebra": ("arithmetic",),
    "number_theory": ("number_theory",),
    "counting_and_probability": ("counting_combinatorics", "probability_statistics"),
    "counting_&_probability": ("counting_combinatorics", "probability_statistics"),
    "geometry": ("geometry_measurement",),
}
_ID_SUBJECT = re.compile(r"(?:^|[-:/_])(intermediate_algebra|counting_and_probability|number_theory|precalculus|"
                         r"prealgebra|algebra|geometry)(?=[-/]\d)")


#: Weight of one cue match per operation (arithmetic cues are common in every word problem: half weight).
WEIGHTS = {"arithmetic": 0.5}
#: Score a benchmark category adds to each of its operations.
CATEGORY_SCORE = 3.0
#: Cues of a worked solution in a document (an answer line, a boxed result, chains of equalities).
_WORKED = re.compile(r"\bsolution\b|\banswer\s*[:=]|\\boxed|####|\btherefore\b|=.*=|\bwe (get|have|obtain)\b", re.I)


def op_scores(text: str, category: str | None = None) -> dict[str, float]:
    """Per operation id, the weighted count of its cues in ``text`` plus its category's score (0 when none)."""
    scores = {op: WEIGHTS.get(op, 1.0) * len(p.findall(text)) for op, p in CUES.items()}
    for op in CATEGORY_OPS.get(category or "", ()):
        scores[op] += CATEGORY_SCORE
    return scores


def cued_operations(text: str, category: str | None = None, *, max_items: int = 3,
                    default: str | None = "arithmetic") -> list[str]:
    """Operations ``text`` cues, strongest first (ties: the order of :data:`CUES`).

    The primary is the highest score; others follow when their score is at least 2 and half
    the primary's. With no cue at all, ``default`` when the text holds a digit, else nothing.
    """
    scores = op_scores(text, category)
    top = max(scores.values())
    if top <= 0:
        return [default] if default and re.search(r"\d", text) else []
    ranked = sorted((op for op in scores if scores[op] > 0), key=lambda op: -scores[op])
    return [ranked[0], *[op for op in ranked[1:] if scores[op] >= max(2.0, top / 2)]][:max_items]


def shows_work(text: str) -> bool:
    """Whether a document carries out a solution (answer line, boxed result, chained equalities)."""
    return bool(_WORKED.search(text))


def category_of(item_id: str, extra: dict | None = None) -> str | None:
    """The benchmark's own category of an item: ``extra["subject"]``, or a MATH subject in its id
    (``test/number_theory/12.json``, ``mathtrain-number_theory-7073``)."""
    subject = (extra or {}).get("subject")
    if isinstance(subject, str) and subject.strip():
        return re.sub(r"\s+", "_", subject.strip().lower())
    m = _ID_SUBJECT.search(item_id or "")
    return m.group(1) if m else None


def cue_markers(text: str, category: str | None = None) -> str:
    """Marker tokens for the operations ``text`` cues (``xcue<op>``), and those of its ``category`` (``xcat<op>``)."""
    ops = [op for op, pattern in CUES.items() if pattern.search(text)]
    marks = [f"xcue{op.replace('_', '')}" for op in ops]
    marks += [f"xcat{op.replace('_', '')}" for op in CATEGORY_OPS.get(category or "", ())]
    return " ".join(marks)
