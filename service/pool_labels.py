"""Label items in-process with a labeler trained on a bundled gold pool (no LLM, no queue).

The k-NN and student labelers (:mod:`service.labelers`) learn from the exemplar-pool
split of the bundled gold set of the items' kind. The table they produce has the
columns of a ``label-benchmark`` run (:func:`service.output.labeled_row`) plus the
``gate_<axis>`` columns of :func:`service.slices.apply_gate`; without a calibration
record every axis is ``ungated``, so slicing these labels needs ``--allow-ungated``
(and says so in its output) unless a record is passed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from service.errors import ConfigError
from service.samples import Document, EvalSample, Rejected

#: Labelers this module can train, by name.
LABELERS = ("knn", "student")


def make_labeler(kind: str, labeler: str = "knn", *, seed: int = 0):
    """A k-NN or student labeler trained on the pool split of the bundled gold set of ``kind``.

    Raises:
        ConfigError: unknown ``kind`` or ``labeler`` (the message lists the allowed names).
    """
    from calibration.gold import BUNDLED, GOLD, load_gold
    from service.labelers import KNNLabeler, StudentLabeler

    if kind not in BUNDLED:
        raise ConfigError(f"kind: unknown item kind {kind!r}; allowed: {', '.join(BUNDLED)}")
    if labeler not in LABELERS:
        raise ConfigError(f"labeler: unknown labeler {labeler!r}; allowed: {', '.join(LABELERS)}")
    gold = load_gold(BUNDLED[kind])
    pool, _ = gold.split(seed=seed)
    cls = KNNLabeler if labeler == "knn" else StudentLabeler
    return cls([gold.items[i] for i in pool], {i: gold.labels[GOLD][i] for i in pool},
               pool_settings={"gold": BUNDLED[kind].name, "seed": seed})


def label_items(items: list[EvalSample | Document | Rejected], *, kind: str, labeler: str = "knn",
                record: dict[str, Any] | None = None, seed: int = 0) -> pd.DataFrame:
    """Label items with a pool labeler; one output row per item (rejected inputs included).

    Args:
        items: samples or documents (and :class:`Rejected` records from the readers).
        kind: ``"eval"`` or ``"document"``.
        labeler: ``"knn"`` or ``"student"``.
        record: a calibration record (``{"id", "verdicts": {axis: pass|fail}}``) whose
            verdicts become the ``gate_<axis>`` columns; None leaves every axis ``ungated``.

    Returns:
        The labeled table (``service.output`` columns, ``calibration_id``, ``gate_<axis>``).
    """
    from service.output import labeled_row, rejected_row
    from service.slices import apply_gate
    from service.store import code_version
    from service.taxonomy import load_taxonomy

    tax = load_taxonomy()
    lab = make_labeler(kind, labeler, seed=seed)
    prov = {**tax.provenance(), "code_version": code_version(), "run_key": f"pool-{labeler}-{lab.config_hash()}"}
    rows = [rejected_row(i, tax, kind, prov) if isinstance(i, Rejected) else labeled_row(i, lab.label(i), tax, prov)
            for i in items]
    return apply_gate(pd.DataFrame(rows), record, tax, kind)


def label_file(path: str | Path, output: str | Path, *, kind: str, labeler: str = "knn",
               limit: int | None = None, benchmark: str | None = None) -> pd.DataFrame:
    """Read a benchmark or document file (any :mod:`service.readers` format), label it, write Parquet/JSONL.

    Args:
        benchmark: benchmark name for eval records that carry none (e.g. ``"bbh"``); the
            labelers use it as a similarity cue.

    Returns:
        The table written to ``output`` (format from its suffix).
    """
    from service.output import check_output, write_table
    from service.readers import read_documents, read_eval_samples

    output = Path(output)
    fmt = check_output(output, None, Path(path))
    items = (read_eval_samples(path, limit=limit, benchmark=benchmark) if kind == "eval"
             else read_documents(path, limit=limit))
    df = label_items(list(items), kind=kind, labeler=labeler)
    write_table(df, output, fmt)
    return df
