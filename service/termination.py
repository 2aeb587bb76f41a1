"""Which outputs of a run stopped at its length cap when the source did not record ``finish_reason``.

A model that does not emit end-of-sequence writes until the generation limit, so its outputs
pile up at the longest length the run allows. Without ``finish_reason`` the cap is found from:

1. the declared limit: ``max_tokens`` in the run's set-up (:mod:`service.setup`) and per-output
   ``output_tokens`` (an output with ``output_tokens >= max_tokens`` is at the cap);
2. else the spike at the maximum of the run's output-length distribution (``output_chars``):
   with ``M`` the longest output, the outputs within ``tolerance`` (5%) of ``M`` are at the cap
   when there are at least ``max(3, 2% of the run)`` of them and their density is at least twice
   that of the next ``2 × tolerance`` below (at least twice as many outputs in half the width), and
   at least half of them end mid-sentence (not on ``.``, ``!``, ``?``, a closing bracket or quote).
   Natural stopping lengths thin out towards the maximum; a cap gathers many outputs just under it.

Outputs with a ``finish_reason`` keep it; this only fills the unknown ones. Sources spell the
reason in several ways; :func:`normalize_finish_reason` brings them to ``stop`` / ``length``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

#: Finish reasons as sources spell them (lower case) -> ``stop`` or ``length``.
FINISH_REASONS = {"stop": "stop", "eos": "stop", "end_turn": "stop", "stop_sequence": "stop", "length": "length",
                  "max_tokens": "length", "model_length": "length"}
#: Outputs within this share of the longest one count as at the cap (the spike).
TOLERANCE = 0.05
#: The spike needs at least this many outputs, and this share of the run.
MIN_AT_CAP, MIN_SHARE = 3, 0.02


def normalize_finish_reason(v: Any) -> str | None:
    """A source's finish reason as slicelab spells it.

    The value as text, stripped and lower-cased, mapped through :data:`FINISH_REASONS` (``eos``,
    ``end_turn``, ``stop_sequence`` -> ``stop``; ``max_tokens``, ``model_length`` -> ``length``);
    other values are kept. None for None, NaN or a blank value.
    """
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    s = str(v).strip().lower()
    return FINISH_REASONS.get(s, s) or None


def length_capped(run: pd.DataFrame, setup: dict[str, Any] | None = None, *, tolerance: float = TOLERANCE
                  ) -> tuple[pd.Series, dict[str, Any]]:
    """Per output of one run: stopped at the length cap (True), not (False), or unknown (None).

    Args:
        run: ``DataFrame[finish_reason, output_chars, output_tokens?]``, the rows of one run
            (:func:`service.results.load_results`).
        setup: the run's set-up fields (``max_tokens`` is used with ``output_tokens``).
        tolerance: share of the longest output within which outputs form the spike.

    Returns:
        ``(Series[bool | None] aligned with run.index, evidence)``: evidence names the ``method``
        (``finish_reason``, ``declared_max_tokens``, ``length_spike`` or None), and for the spike
        ``max_chars``, ``threshold_chars``, ``n_at_cap``, ``n_just_below``, ``n`` (and ``reason`` when none).
    """
    finish = run["finish_reason"] if "finish_reason" in run else pd.Series(None, index=run.index)
    known = finish.notna()
    out = pd.Series([None] * len(run), index=run.index, dtype=object)
    out[known] = finish[known].astype(str).str.lower().eq("length")
    unknown = ~known
    if not unknown.any():
        return out, {"method": "finish_reason"}
    cap = (setup or {}).get("max_tokens")
    tokens = run["output_tokens"] if "output_tokens" in run else None
    if isinstance(cap, (int, float)) and tokens is not None and tokens[unknown].notna().any():
        has = unknown & tokens.notna()
        out[has] = tokens[has].astype(float) >= float(cap)
        return out, {"method": "declared_max_tokens", "max_tokens": cap, "n_at_cap": int(out[has].sum())}
    lengths = run.loc[unknown, "output_chars"].dropna().astype(float) if "output_chars" in run else pd.Series([])
    if lengths.empty:
        return out, {"method": None}
    top = float(lengths.max())
    threshold = (1 - tolerance) * top
    n_at = int((lengths >= threshold).sum())
    n_below = int(((lengths >= (1 - 3 * tolerance) * top) & (lengths < threshold)).sum())
    evidence = {"method": "length_spike", "max_chars": int(top), "threshold_chars": int(threshold),
                "n_at_cap": n_at, "n_just_below": n_below, "n": int(len(lengths)), "tolerance": tolerance}
    need = max(MIN_AT_CAP, MIN_SHARE * len(lengths))
    top_ids = lengths.index[lengths >= threshold]
    cut = int(sum(_ends_mid_sentence(t) for t in run.loc[top_ids, "output"])) if "output" in run else n_at
    evidence["n_ending_mid_sentence"] = cut
    if n_at < need or n_at < 2 * n_below or 2 * cut < n_at:
        return out, {**evidence, "method": None,
                     "reason": f"{n_at} outputs within {tolerance:.0%} of the longest ({cut} ending mid-sentence) and "
                               f"{n_below} in the {2 * tolerance:.0%} below; a cap needs at least {round(need)}, twice "
                               "the density and most of them cut mid-sentence"}
    out[lengths.index] = lengths >= threshold
    return out, evidence


def _ends_mid_sentence(text: object) -> bool:
    """True when the text does not end on terminal punctuation, a closing bracket, quote or math delimiter."""
    if not isinstance(text, str) or not text.strip():
        return False
    return not re.search(r"""[.!?)\]}"'*$]\s*\Z|\\\]\s*\Z""", text)
