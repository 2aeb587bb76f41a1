"""The calibration report's tables, as (header, rows of :class:`~calibration.report_content.Cell`):
per-axis agreement, labelers per axis, leave-one-benchmark-out, operation sets, per class,
coverage and confusion. A header line break separates a column name from its smaller subtitle.

Every value comes from the record; nothing is recomputed. Rendered by the templates of
:mod:`calibration.report`.
"""

from __future__ import annotations

from slicelab.calibration.report_content import (LABELER_WORDS, NO_ANNOTATORS, Cell, axis_labelers, axis_title,
                                                 cascade_info, has_selection, judge_verdict, labeler_metrics,
                                                 labeler_names, metric_cell, metric_ci_cell, number, rater_metrics,
                                                 seconds_per_label, seconds_text, selected_labeler)

#: A table: its header and rows of cells.
Table = tuple[list[str], list[list[Cell]]]

#: Header of the per-axis agreement table (records with labeler selection).
SUMMARY_HEAD = ["axis", "n", "judge κ [95% CI]", "judge accuracy [95% CI]", "judge macro-F1",
                "annotator κ (ceiling)", "majority acc.", "majority κ", "nearest-exemplar κ",
                "nearest-exemplar acc.", "Krippendorff α (all raters)", "invalid", "judge alone",
                "gate verdict\nselected labeler"]
#: Columns of SUMMARY_HEAD drawn as verdict badges (a second line: the labeler).
SUMMARY_VERDICTS = (12, 13)


def summary_head(record: dict) -> tuple[list[str], tuple[int, ...]]:
    """The per-axis agreement header and its verdict columns (one verdict for records without selection)."""
    if has_selection(record):
        return SUMMARY_HEAD, SUMMARY_VERDICTS
    return SUMMARY_HEAD[:-2] + ["verdict"], (len(SUMMARY_HEAD) - 2,)


def summary_rows(record: dict) -> list[list[Cell]]:
    """Per axis: n, the judge's κ / accuracy / macro-F1, the ceiling, baselines, Krippendorff α, invalid
    labels and the verdicts (judge alone and gate verdict with the selected labeler, or one verdict)."""
    rows = []
    for axis, m in record.get("axes", {}).items():
        judge, ann = rater_metrics(m, "judge"), rater_metrics(m, "annotators")
        maj, near = rater_metrics(m, "majority"), rater_metrics(m, "nearest_exemplar")
        ka = m.get("krippendorff_alpha") or {}
        alpha = (Cell(f"{ka['alpha']:.2f} ({ka.get('level', '?')})") if ka.get("alpha") is not None
                 else Cell(f"— ({ka.get('level', '?')})", ka.get("reason") or "not computed"))
        n_invalid = (m.get("judge") or {}).get("n_invalid")
        rows.append([
            Cell(axis_title(axis, m), num=False), Cell(str(m.get("n", "—"))),
            metric_ci_cell(judge, "cohen_kappa"), metric_ci_cell(judge, "accuracy"), metric_cell(judge, "macro_f1"),
            metric_cell(ann, "cohen_kappa", why=NO_ANNOTATORS),
            metric_cell(maj, "accuracy"), metric_cell(maj, "cohen_kappa"),
            metric_cell(near, "cohen_kappa"), metric_cell(near, "accuracy"),
            alpha, Cell("—" if n_invalid is None else str(n_invalid)),
        ])
        if has_selection(record):
            rows[-1] += [Cell(judge_verdict(record, axis, m).get("verdict", "?"), num=False),
                         Cell(f"{(m.get('verdict') or {}).get('verdict', '?')}\n{selected_labeler(record, axis, m)}",
                              num=False)]
        else:
            rows[-1].append(Cell((m.get("verdict") or {}).get("verdict", "?"), num=False))
    return rows


def _labeler_cell(metrics: dict | None, kind: str | None, selected: bool, alt: dict | None = None) -> Cell:
    """κ [95% CI], accuracy and the alt-test (winning rate ω, advantage probability ρ) of one labeler on one axis
    (primary operation on operation axes)."""
    m = None if metrics is None else (metrics.get("primary", metrics) if kind == "operations" else metrics)
    if m is None:
        return Cell("not measured", "this labeler was not measured on this axis", num=False)
    kappa = metric_ci_cell(m, "cohen_kappa")
    acc = metric_cell(m, "accuracy")
    notes = [c.note for c in (kappa, acc) if c.note]
    text = f"κ {kappa.text}\nacc. {acc.text}"
    if alt:
        text += f"\nalt-test ω {number(alt.get('winning_rate'))}, ρ {number(alt.get('advantage_probability'))}"
    return Cell(text, "; ".join(dict.fromkeys(notes)) or None, mark=selected)


def labelers_table(record: dict) -> Table | None:
    """Rows = axes, columns = labelers (κ [CI], accuracy; the selected one marked), the ceiling,
    and the cascade's share of items sent to the judge. None for records that predate selection."""
    if not has_selection(record):
        return None
    names = labeler_names(record)
    share = cascade_info(record).get("share_to_judge") or {}
    head = ["axis", "n",
            *(f"{n}\n{LABELER_WORDS.get(n, n)}\n{seconds_text(seconds_per_label(record, n))}" for n in names),
            "annotators A vs B\nceiling"]
    if "cascade" in names:
        head.append("cascade → judge\nshare of items")
    rows = []
    for axis, m in record.get("axes", {}).items():
        sel = selected_labeler(record, axis, m)
        labs = axis_labelers(m)
        row = [Cell(axis_title(axis, m), num=False), Cell(str(m.get("n", "—")))]
        alt = m.get("alt_test") or {}
        row += [_labeler_cell(labs.get(n), m.get("kind"), n == sel, alt.get(n)) for n in names]
        ann = rater_metrics(m, "annotators")
        row.append(metric_ci_cell(ann, "cohen_kappa", why=NO_ANNOTATORS) if ann is not None
                   else Cell("—", NO_ANNOTATORS))
        row[-1].text = f"κ {row[-1].text}"
        if "cascade" in names:
            row.append(Cell(f"{share[axis]:.0%}") if share.get(axis) is not None
                       else Cell("—", "not in the record"))
        rows.append(row)
    return head, rows


#: Cheap labelers shown first in the leave-one-benchmark-out table.
LOBO_LABELERS = ("knn", "student")


def _lobo(record: dict) -> dict | None:
    lobo = record.get("leave_one_benchmark_out")
    return lobo if isinstance(lobo, dict) else None


def lobo_table(record: dict) -> Table | None:
    """Per axis and cheap labeler: n, κ [CI], accuracy when the item's own source is never in the pool;
    beside it the same labeler's κ on the held-out split (pool and items sharing sources)."""
    lobo = _lobo(record)
    if lobo is None:
        return None
    names = [n for n in LOBO_LABELERS if isinstance(lobo.get(n), dict)]
    names += [n for n, v in lobo.items() if n not in names and n != "sources" and isinstance(v, dict)]
    head = ["axis"]
    for n in names:
        head += [f"{n}\nn", f"{n}\nκ [95% CI], new benchmark", f"{n}\naccuracy", f"{n}\nκ on held-out split"]
    axes = record.get("axes", {})
    order = list(axes) + [a for n in names for a in lobo[n] if a not in axes]
    order = list(dict.fromkeys(order))
    rows = []
    for axis in order:
        m = axes.get(axis, {})
        row = [Cell(axis_title(axis, m), num=False)]
        for n in names:
            sm = lobo[n].get(axis)
            if sm is None:
                row += [Cell("—", "not in the record")] * 4
                continue
            row.append(Cell(str(sm.get("n", "—"))))
            if sm.get("kappa") is None:
                row.append(Cell("—", "Cohen's kappa undefined on these predictions"))
            elif sm.get("kappa_ci_low") is None or sm.get("kappa_ci_high") is None:
                row.append(Cell(f"{sm['kappa']:.2f} [—]", "interval undefined"))
            else:
                row.append(Cell(f"{sm['kappa']:.2f} [{sm['kappa_ci_low']:.2f}, {sm['kappa_ci_high']:.2f}]"))
            row.append(Cell(number(sm.get("accuracy"))) if sm.get("accuracy") is not None else Cell("—", "undefined"))
            row.append(metric_cell(labeler_metrics(m, n), "cohen_kappa", why="not measured on the held-out split"))
        rows.append(row)
    return head, rows


def lobo_text(record: dict) -> tuple[str, list[str]]:
    """What to expect on a benchmark no exemplar comes from: an explanation, and one line per labeler."""
    lobo = _lobo(record)
    if lobo is None:
        if (record.get("split") or {}).get("exemplars"):
            ex = record["split"]["exemplars"]
            return (f"Not computed: the exemplar pool comes from another file ({ex.get('path', '?')}), so the "
                    "labeler numbers above already measure items whose exemplars come from elsewhere."), []
        return "Not computed for this record.", []
    sources = lobo.get("sources") or []
    intro = (f"Each of the {len(sources)} sources ({', '.join(map(str, sources))}) is held out in turn and its "
             "items are labeled by k-NN and the student trained on the other sources only, so no exemplar comes "
             "from the item's benchmark. That is what to expect from these labelers on a new benchmark; the "
             "held-out split above (pool and items from the same sources) is the optimistic number. Where κ here "
             "is far below the held-out split, the labeler relies on same-benchmark look-alikes: label a new "
             "benchmark on that axis with the LLM judge.")
    axes = record.get("axes", {})
    lines = []
    for n in (k for k, v in lobo.items() if k != "sources" and isinstance(v, dict)):
        ks = [sm["kappa"] for sm in lobo[n].values() if sm and sm.get("kappa") is not None]
        if not ks:
            lines.append(f"{n}: κ undefined on every axis.")
            continue
        split = [k for k in (metric_cell(labeler_metrics(axes.get(a) or {}, n), "cohen_kappa").text for a in lobo[n])
                 if k != "—"]
        line = f"{n} on a new benchmark: κ {min(ks):.2f} to {max(ks):.2f} across axes"
        if split:
            line += f" (held-out split: {min(split, key=float)} to {max(split, key=float)})"
        gated = [a for a in lobo[n] if ((axes.get(a) or {}).get("verdict") or {}).get("metric") == "cohen_kappa_ci_low"]
        if gated:
            reach = []
            for a in gated:
                v, sm = axes[a]["verdict"], lobo[n][a] or {}
                if sm.get("kappa_ci_low") is not None and v.get("bound") is not None \
                        and sm["kappa_ci_low"] >= v["bound"] and sm.get("n", 0) >= (v.get("min_n") or 0):
                    reach.append(a)
            line += (f"; its lower κ bound would meet the gate on {', '.join(reach)}" if reach
                     else "; its lower κ bound would meet the gate on no axis")
        lines.append(line + ".")
    return intro, lines


#: Headers of the operation-set, per-class and coverage tables.
OPS_HEAD = ["axis", "rater", "mean Jaccard", "micro-F1", "macro-F1", "n", "invalid"]


def ops_rows(record: dict) -> list[list[Cell]]:
    """Operation axes: set agreement (mean Jaccard, micro- and macro-F1) of the judge, annotators and baselines."""
    rows = []
    for axis, m in record.get("axes", {}).items():
        if m.get("kind") != "operations":
            continue
        raters = [("judge", m.get("judge")), ("annotators (ceiling)", m.get("annotators")),
                  ("majority", m.get("baselines", {}).get("majority")),
                  ("nearest exemplar", m.get("baselines", {}).get("nearest_exemplar"))]
        for name, d in raters:
            why = NO_ANNOTATORS if name.startswith("annotators") else None
            rows.append([Cell(axis, num=False), Cell(name, num=False), metric_cell(d, "mean_jaccard", why=why),
                         metric_cell(d, "micro_f1", why=why), metric_cell(d, "macro_f1", why=why),
                         Cell(str(d["n"]) if d else "—"), Cell(str(d["n_invalid"]) if d else "—")])
    return rows


PER_CLASS_HEAD = ["class", "precision", "recall", "F1", "support (gold)"]


def per_class_rows(m: dict) -> list[list[Cell]]:
    """The judge's precision, recall, F1 and gold support per class on one axis."""
    judge = rater_metrics(m, "judge") or {}
    return [[Cell(label, num=False), Cell(number(v["precision"])), Cell(number(v["recall"])), Cell(number(v["f1"])),
             Cell(str(v["support"]))] for label, v in (judge.get("per_class") or {}).items()]


COVERAGE_HEAD = ["confidence ≥", "coverage", "items", "judge accuracy"]


def coverage_rows(m: dict) -> list[list[Cell]]:
    """Per confidence threshold: coverage, items and the judge's accuracy on the covered items."""
    return [[Cell(number(p["threshold"])),
             Cell(number(p["coverage"])) if p.get("coverage") is not None else Cell("—", "no items"),
             Cell(str(p["n"])),
             Cell(number(p["accuracy"])) if p.get("accuracy") is not None else Cell("—", "no item this confident")]
            for p in m.get("coverage") or []]


def confusion_table(m: dict) -> Table | None:
    """The judge's confusion matrix on one axis (rows = gold, columns = judge); None without labels."""
    conf = (rater_metrics(m, "judge") or {}).get("confusion") or {}
    if not conf.get("labels"):
        return None
    head = ["gold \\ judge", *conf["labels"]]
    return head, [[Cell(lab, num=False), *(Cell(str(c)) for c in r)] for lab, r in zip(conf["labels"], conf["matrix"])]
