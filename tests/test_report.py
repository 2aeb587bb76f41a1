"""Calibration report (HTML/JSON/Markdown, opened in headless Chromium) and the disagreement review loop.

Records are made by the real ``run_calibration`` (real Redis, real RQ worker, the localhost
test judge server); the eval record uses a judge that answers gold for most items, a wrong
task type for some and unparseable text for a few, so every part of the report has content.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from redis import Redis
from sklearn.metrics import accuracy_score, cohen_kappa_score
from typer.testing import CliRunner

from slicelab.calibration.gate import GateConfig, Threshold, verdict
from slicelab.calibration.gold import BUNDLED, GOLD, load_gold
from slicelab.calibration.metrics import INVALID
from slicelab.calibration.records import load_record
from slicelab.calibration.report import write_report
from slicelab.calibration.review import COLUMNS, default_out_path, export_disagreements, import_review
from slicelab.calibration.run import run_calibration
from slicelab.service.errors import ConfigError, RecordError
from slicelab.service.taxonomy import load_taxonomy
from tests.judge_server import JudgeServer

EVAL_GOLD, DOC_GOLD = BUNDLED["eval"], BUNDLED["document"]
LIMIT = 12


class MostlyRightJudge(JudgeServer):
    """Answers the gold labels of the item in the prompt, except: every 3rd item gets a wrong
    task_type (and output_constraint), every 5th gets text that is not JSON (a judge failure)."""

    def __init__(self) -> None:
        super().__init__()
        gold = load_gold(EVAL_GOLD)
        self.by_question = {item.question: (n, gold.labels[GOLD][i]) for n, (i, item) in enumerate(gold.items.items())}
        self.task_ids = load_taxonomy().axis("eval", "task_type").ids

    def reply(self, body: dict) -> tuple[int, dict]:
        status, payload = super().reply(body)
        prompt = body["messages"][-1]["content"]
        found = [(len(q), v) for q, v in self.by_question.items() if q in prompt]
        if not found:
            return status, payload
        n, labels = max(found, key=lambda f: f[0])[1]
        props = body["response_format"]["json_schema"]["schema"]["properties"]
        out = {k: v for k, v in labels.items() if k in props}
        if "failure_mode" in props and out.get("failure_mode") is None:
            out["failure_mode"] = "wrong_reasoning"
        if n % 3 == 0:
            out["task_type"] = self.task_ids[(self.task_ids.index(out["task_type"]) + 1) % len(self.task_ids)]
            out["output_constraint"] = "boolean_token" if out["output_constraint"] != "boolean_token" else "integer"
        text = "I cannot decide." if n % 5 == 1 else json.dumps(out)
        payload["choices"][0]["message"]["content"] = text
        return status, payload


def _calibrate(gold_path: Path, srv: JudgeServer, redis_url: str, home: Path) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLICELAB_HOME", str(home))
        mp.setenv("REDIS_URL", redis_url)
        Redis.from_url(redis_url).flushdb()
        try:
            return run_calibration(gold_path, {"backend": "openai", "base_url": srv.base_url, "model": "test-judge",
                                               "transport_retries": 0}, redis_url, workers=1, limit=LIMIT, n_boot=200)
        finally:
            Redis.from_url(redis_url).flushdb()


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("slicelab-home")


@pytest.fixture(scope="module")
def eval_record(_redis_server, home) -> dict:
    """A real eval calibration record (12 held-out items, varied judge answers)."""
    with MostlyRightJudge() as srv:
        return _calibrate(EVAL_GOLD, srv, _redis_server, home)


@pytest.fixture(scope="module")
def doc_record(_redis_server, home) -> dict:
    """A real document calibration record (constant-answer judge)."""
    with JudgeServer() as srv:
        return _calibrate(DOC_GOLD, srv, _redis_server, home)


@pytest.fixture(scope="module")
def eval_report(eval_record, tmp_path_factory) -> dict[str, Path]:
    return write_report(eval_record, tmp_path_factory.mktemp("report"))


# --------------------------------------------------------------------------- the report files


def test_record_has_agreement_and_failures(eval_record):
    """The fixture judge gives non-trivial agreement and some judge failures (so the checks below mean something)."""
    assert eval_record["split"]["n_heldout"] == LIMIT
    assert sum(v for k, v in eval_record["status_counts"].items() if k != "labeled") >= 1
    kappa = eval_record["axes"]["task_type"]["judge"]["cohen_kappa"]
    assert kappa is not None and 0.0 < kappa < 1.0


def test_write_report_html_json_md(eval_record, eval_report, home):
    page = eval_report["html"].read_text(encoding="utf-8")
    axes = list(eval_record["axes"])
    for axis in axes:
        assert axis in page
    assert "Gate summary" in page and page.index("Gate summary") < page.index("Per-axis agreement")
    assert "--allow-ungated" in page  # 12 items < min_n 30: every axis fails
    for axis, v in eval_record["verdicts"].items():
        assert re.search(rf"<strong>{axis}</strong> <span class=\"verdict {v}\">{v}</span>", page), axis
    assert eval_record["axes"]["task_type"]["verdict"]["reason"].replace("<", "&lt;") in page
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(axes) + 1  # one confusion matrix per axis + the coverage curve
    import base64
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in images)
    # self-contained: no scripts, no external resources
    assert "<script" not in page.lower()
    assert not re.search(r'(src|href)="(?!data:)', page) and "url(" not in page and "@import" not in page
    # judge failures are listed with their status; raw output is escaped in <pre>
    failed = [it for it in eval_record["items"] if it["status"] != "labeled"]
    assert failed and f"status: {failed[0]['status']}" in page
    assert "<pre>I cannot decide.</pre>" in page or "<pre></pre>" in page

    assert json.loads(eval_report["json"].read_text(encoding="utf-8")) == load_record_from(home, eval_record["id"])
    assert json.loads(eval_report["json"].read_text(encoding="utf-8")) == json.loads(json.dumps(eval_record))

    md = eval_report["md"].read_text(encoding="utf-8")
    assert "| axis | n | judge κ [95% CI] |" in md
    for axis in axes:
        assert re.search(rf"^\| {axis}( \(primary op\.\))? \| {eval_record['axes'][axis]['n']} \|", md, re.M), axis
    assert "data:image" not in md


def load_record_from(home: Path, record_id: str) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLICELAB_HOME", str(home))
        return load_record(record_id)


def test_report_escapes_item_text_and_shows_undefined_reasons(eval_record, tmp_path):
    record = json.loads(json.dumps(eval_record))
    item = next(it for it in record["items"] if it["judge"]["task_type"] != it["gold"]["task_type"])
    item["text"] = "<script>alert(1)</script> & <b>bold</b>"
    item["raw_output"] = '</pre><img src="http://evil.example/x.png">'
    record["axes"]["task_type"]["judge"]["cohen_kappa"] = None
    record["axes"]["task_type"]["judge"]["cohen_kappa_ci"] = None
    record["axes"]["task_type"]["judge"]["undefined"] = {"cohen_kappa": "expected agreement p_e = 1 (test)"}
    record["leave_one_benchmark_out"]["sources"].append("<i>src</i>")
    page = write_report(record, tmp_path)["html"].read_text(encoding="utf-8")
    assert "<i>src</i>" not in page and "&lt;i&gt;src&lt;/i&gt;" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert 'src="http' not in page and "&lt;/pre&gt;&lt;img" in page
    assert 'title="expected agreement p_e = 1 (test)">—<sup>' in page
    assert "expected agreement p_e = 1 (test)" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_report_rejects_nan_before_writing(eval_record, tmp_path):
    record = json.loads(json.dumps(eval_record))
    record["seconds_per_label"] = float("nan")
    with pytest.raises(ValueError):
        write_report(record, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_document_record_report(doc_record, tmp_path):
    paths = write_report(doc_record, tmp_path)
    page = paths["html"].read_text(encoding="utf-8")
    for axis in ("domain", "document_format", "reasoning_depth", "demonstrated_operations", "education_level"):
        assert axis in page
    assert "(ordinal)" in page  # ordered axes use ordinal Krippendorff alpha
    assert json.loads(paths["json"].read_text(encoding="utf-8")) == json.loads(json.dumps(doc_record))


# --------------------------------------------------------------------------- labelers, selection, leave-one-benchmark-out

#: Keys a record lacks when it was made before per-axis labeler selection.
NEW_TOP_KEYS = ("labelers", "selection", "judge_verdicts", "leave_one_benchmark_out", "per_benchmark")
NEW_AXIS_KEYS = ("labelers", "selected", "judge_verdict")


def _section(page: str, css: str) -> str:
    table = re.search(rf'<table class="{css}">.*?</table>', page, re.S)
    assert table, css
    return table.group(0)


def _cells(row: str) -> list[tuple[str, str]]:
    """(class, inner html) of every <td> of a row."""
    return re.findall(r'<td(?: class="([^"]*)")?[^>]*>(.*?)</td>', row, re.S)


def _kappa_text(m: dict, kind: str) -> str:
    m = m["primary"] if kind == "operations" else m
    lo, hi = m["cohen_kappa_ci"]
    return f"κ {m['cohen_kappa']:.2f} [{lo:.2f}, {hi:.2f}]"


def test_labelers_per_axis_table(eval_record, eval_report):
    page = eval_report["html"].read_text(encoding="utf-8")
    # leave-one-benchmark-out is the headline: what to expect on a benchmark with no gold items
    assert page.index("Gate summary") < page.index("Leave-one-benchmark-out") < page.index("Labelers per axis") \
        < page.index("Per-axis agreement")
    table = _section(page, "labelers")
    head = re.findall(r"<th>(.*?)</th>", table, re.S)
    names = list(eval_record["labelers"]["seconds_per_label"])
    assert set(names) == {"judge", "knn", "student", "cascade", "shape", "cues"}
    heads = [re.sub(r"<[^>]+>", " ", h) for h in head]
    cols = {n: next(k for k, h in enumerate(heads) if h.startswith(n + " ")) for n in names}
    assert "ceiling" in heads[-2] and "share of items" in heads[-1]
    assert all("/label" in heads[k] for k in cols.values())  # seconds per label in the header
    rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], re.S)
    assert len(rows) == len(eval_record["axes"])
    share = eval_record["labelers"]["cascade"]["share_to_judge"]
    for (axis, m), row in zip(eval_record["axes"].items(), rows):
        cells = _cells(row)
        assert cells[0][1].startswith(axis)
        selected = [k for k, (cls, _) in enumerate(cells) if "sel" in cls.split()]
        assert selected == [cols[m["selected"]]], axis  # exactly the selected labeler is marked
        assert '<span class="tag">selected</span>' in cells[selected[0]][1]
        for name in names:
            if name not in m["labelers"]:  # shape and cues label some axes only
                assert "not measured" in cells[cols[name]][1], (axis, name)
                continue
            assert _kappa_text(m["labelers"][name], m["kind"]) in cells[cols[name]][1], (axis, name)
        assert cells[-1][1] == f"{share[axis]:.0%}"
    assert f"{share['any_axis']:.0%} of items to the judge" in page
    # the gate summary names the selected labeler and the judge-alone verdict of every axis
    for axis, m in eval_record["axes"].items():
        assert re.search(rf"<strong>{axis}</strong> <span class=\"verdict \w+\">\w+</span> selected labeler "
                         rf"<span class=\"lab\">{m['selected']}</span>", page), axis
    assert page.count("LLM judge alone:") == len(eval_record["axes"])

    md = eval_report["md"].read_text(encoding="utf-8")
    assert "## Labelers per axis" in md and "| axis | n | judge, LLM judge" in md
    for axis, m in eval_record["axes"].items():
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {axis}") and "(selected)" in ln)
        assert f"**{_kappa_text(m['labelers'][m['selected']], m['kind'])}; acc." in line
        assert line.count("(selected)") == 1
        assert f"- **{axis}**: **{m['verdict']['verdict']}** with **{m['selected']}** (selected)" in md


def test_leave_one_benchmark_out_table(eval_record, eval_report):
    lobo = eval_record["leave_one_benchmark_out"]
    assert lobo and len(lobo["sources"]) >= 2
    page = eval_report["html"].read_text(encoding="utf-8")
    assert "on a new benchmark" in page and "no exemplar comes from the item&#x27;s benchmark" in page
    table = _section(page, "lobo")
    rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], re.S)
    assert len(rows) == len(eval_record["axes"])
    for (axis, m), row in zip(eval_record["axes"].items(), rows):
        cells = [c for _, c in _cells(row)]
        assert cells[0].startswith(axis)
        for k, name in enumerate(("knn", "student")):
            sm = lobo[name][axis]
            n, kappa, acc = cells[1 + 4 * k: 4 + 4 * k]
            assert n == str(sm["n"])
            assert kappa == f"{sm['kappa']:.2f} [{sm['kappa_ci_low']:.2f}, {sm['kappa_ci_high']:.2f}]"
            assert acc == f"{sm['accuracy']:.2f}"
    for name in ("knn", "student"):
        assert f"<li>{name} on a new benchmark: κ " in page
    md = eval_report["md"].read_text(encoding="utf-8")
    assert "## Leave-one-benchmark-out" in md and "| axis | knn, n | knn, κ [95% CI], new benchmark |" in md


def test_record_has_each_benchmarks_own_agreement(eval_record, eval_report):
    from slicelab.calibration.run import benchmark_family

    pb, gold = eval_record["per_benchmark"], load_gold(EVAL_GOLD)
    held = [it["id"] for it in eval_record["items"]]
    assert {b: e["n_heldout"] for b, e in pb.items() if e["n_heldout"]} \
        == dict(Counter(benchmark_family(gold.sources[i]) for i in held))
    assert set(pb) == set(eval_record["leave_one_benchmark_out"]["sources"])
    checked = 0
    for axis, m in eval_record["axes"].items():
        assert sum(e["axes"][axis]["n"] for e in pb.values()) == m["n"], axis
        for bench, e in pb.items():
            a = e["axes"][axis]
            assert a["labeler"] == m["selected"]
            if m["selected"] != "judge" or m["kind"] == "operations" or a["kappa"] is None:
                continue
            # the judge's modal labels of the record's items, judge failures as the invalid class
            items = [it for it in eval_record["items"] if benchmark_family(gold.sources[it["id"]]) == bench
                     and it["gold"].get(axis) is not None]
            truth = [it["gold"][axis] for it in items]
            judged = [it["judge"][axis] if it["judge"][axis] is not None else INVALID for it in items]
            assert a["kappa"] == pytest.approx(cohen_kappa_score(truth, judged)), (bench, axis)
            assert a["lobo_kappa"] is None  # the judge is never left out
            checked += 1
    assert checked >= 1
    page = eval_report["html"].read_text(encoding="utf-8")
    assert 'class="per-benchmark"' in page and "too few held-out items to judge" in page  # 12 held-out items in all


def _regate(record: dict, gate: GateConfig) -> dict:
    """The record with its verdicts redone under another gate (same selection), by the real gate code."""
    record = json.loads(json.dumps(record))
    for axis, m in record["axes"].items():
        single = (lambda x: x["primary"] if m["kind"] == "operations" else x)
        m["verdict"] = verdict(single(m["labelers"][m["selected"]]), gate.threshold(axis))
        m["judge_verdict"] = verdict(single(m["judge"]), gate.threshold(axis))
        record["verdicts"][axis] = m["verdict"]["verdict"]
        record["judge_verdicts"][axis] = m["judge_verdict"]["verdict"]
    record["gate"] = gate.model_dump()
    return record


def test_gate_summary_says_where_cheaper_labeler_passes_and_where_nothing_does(eval_record, tmp_path):
    def low(m, kind):
        return (m["primary"] if kind == "operations" else m)["cohen_kappa_ci"][0]

    axes = eval_record["axes"]
    # an axis where a non-judge labeler has a better lower kappa bound than the judge (the cascade at least)
    cheap_axis = max(axes, key=lambda a: max(low(m, axes[a]["kind"]) for n, m in axes[a]["labelers"].items()
                                             if n != "judge") - low(axes[a]["judge"], axes[a]["kind"]))
    m = axes[cheap_axis]
    best = max(low(x, m["kind"]) for n, x in m["labelers"].items() if n != "judge")
    assert best > low(m["judge"], m["kind"]) and m["selected"] != "judge"
    bound = (best + low(m["judge"], m["kind"])) / 2
    few_axis, high_axis = [a for a in axes if a != cheap_axis][:2]
    rule = dict(metric="cohen_kappa_ci_low", bound=bound, min_n=5)
    gate = GateConfig(version=9, default=Threshold(**rule),
                      axes={few_axis: Threshold(**rule | {"min_n": 1000}), high_axis: Threshold(**rule | {"bound": 1.01})})
    record = _regate(eval_record, gate)
    assert record["verdicts"][cheap_axis] == "pass" and record["judge_verdicts"][cheap_axis] == "fail"
    passing = [n for n, x in m["labelers"].items() if n != "judge" and low(x, m["kind"]) >= bound]
    paths = write_report(record, tmp_path)
    page, md = (paths[k].read_text(encoding="utf-8") for k in ("html", "md"))

    flag = f"The LLM judge alone fails this axis, but {', '.join(passing)} (cheaper) pass"
    li = re.search(rf"<li><strong>{cheap_axis}</strong>.*?</li>", page, re.S).group(0)
    assert flag in li and '<span class="alone">LLM judge alone: <span class="verdict fail">fail</span>' in li
    # shape passes task_type and output_constraint too: the sentence may list several axes
    assert "The LLM judge alone fails " in page and f"{cheap_axis} (passed by {', '.join(passing)})" in page
    assert flag in md and "The LLM judge alone fails " in md and f"{cheap_axis} (passed by" in md
    for axis, tail in ((few_axis, ": with this few held-out items none can"), (high_axis, ".")):
        li = re.search(rf"<li><strong>{axis}</strong>.*?</li>", page, re.S).group(0)
        assert f'<span class="flag none">No labeler passes this axis{tail}' in li, axis
    assert re.search(rf"No labeler passes [^.]*{few_axis}", page) and re.search(rf"No labeler passes [^.]*{high_axis}", md)
    # the summary table shows both verdicts
    row = next(r for r in re.findall(r"<tr>(.*?)</tr>", _section(page, "summary"), re.S) if f">{cheap_axis}<" in r)
    assert row.endswith('<td><span class="verdict fail">fail</span></td>'
                        f'<td><span class="verdict pass">pass</span> <span class="lab">{m["selected"]}</span></td>')


def _old_format(record: dict) -> dict:
    """The record as it was before per-axis labeler selection (the new keys dropped)."""
    old = json.loads(json.dumps(record))
    for key in NEW_TOP_KEYS:
        del old[key]
    del old["split"]["exemplars"]
    for m in old["axes"].values():
        for key in NEW_AXIS_KEYS:
            del m[key]
    return old


def test_old_format_record_still_renders(eval_record, tmp_path):
    old = _old_format(eval_record)
    paths = write_report(old, tmp_path)
    page, md = (paths[k].read_text(encoding="utf-8") for k in ("html", "md"))
    assert "predates per-axis labeler selection" in page and "predates per-axis labeler selection" in md
    assert '<table class="labelers">' not in page and "Leave-one-benchmark-out" not in page
    assert "selected labeler" not in page and "LLM judge alone" not in page
    assert "predates per-benchmark agreement" in page and 'class="per-benchmark"' not in page
    for axis, v in old["verdicts"].items():
        assert re.search(rf"<strong>{axis}</strong> <span class=\"verdict {v}\">{v}</span> LLM judge \(the only", page)
    head = re.findall(r"<th>(.*?)</th>", _section(page, "summary"))
    assert head[-1] == "verdict" and "judge alone" not in head
    assert "| axis | n | judge κ [95% CI] |" in md and "(selected)" not in md
    assert json.loads(paths["json"].read_text(encoding="utf-8")) == old


def test_exemplars_from_another_file_and_no_lobo(eval_record, tmp_path):
    record = json.loads(json.dumps(eval_record))
    record["split"]["exemplars"] = {"path": "/data/<pool>.jsonl", "sha256": "ab" * 32}
    record["leave_one_benchmark_out"] = None
    page = write_report(record, tmp_path)["html"].read_text(encoding="utf-8")
    assert "every gold item evaluated" in page and "/data/&lt;pool&gt;.jsonl (sha256 abababababab…)" in page
    assert "Not computed: the exemplar pool comes from another file (/data/&lt;pool&gt;.jsonl)" in page
    assert '<table class="lobo">' not in page and '<table class="labelers">' in page


# --------------------------------------------------------------------------- independent recomputation


def test_task_type_metrics_recomputed_with_sklearn(eval_record):
    axis = load_taxonomy().axis("eval", "task_type")
    items = [it for it in eval_record["items"] if it["gold"]["task_type"] is not None]
    y_true = [it["gold"]["task_type"] for it in items]
    y_pred = [it["judge"]["task_type"] if it["judge"]["task_type"] is not None else INVALID for it in items]
    labels = axis.ids + [INVALID]
    judge = eval_record["axes"]["task_type"]["judge"]
    assert judge["n"] == len(items) == LIMIT
    assert judge["n_invalid"] == y_pred.count(INVALID) >= 1
    assert judge["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    assert judge["cohen_kappa"] == pytest.approx(cohen_kappa_score(y_true, y_pred, labels=labels), abs=1e-12)


# --------------------------------------------------------------------------- headless Chromium


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def test_report_renders_in_headless_chromium(eval_record, eval_report, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium binary on PATH (CI installs Debian's chromium; locally: apt-get install chromium)")
    html_path = eval_report["html"].resolve()
    shot = tmp_path / "report.png"
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2400"]
    subprocess.run(flags + [f"--screenshot={shot}", html_path.as_uri()], capture_output=True, timeout=180, check=False)
    assert shot.is_file() and shot.stat().st_size > 50_000

    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 2400)
        rgb = im.convert("RGB").resize((320, 600))
        colors = rgb.getcolors(maxcolors=320 * 600)
    assert len(colors) > 50  # text, tables, badges, heatmap: far from a blank page
    assert max(n for n, _ in colors) < 0.97 * 320 * 600  # not (almost) one colour

    dom = subprocess.run(flags + ["--dump-dom", html_path.as_uri()], capture_output=True, text=True,
                         timeout=180, check=False).stdout
    table = re.search(r'<table class="summary">.*?</table>', dom, re.S)
    assert table, dom[:500]
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(0), re.S)
    for axis, verdict in eval_record["verdicts"].items():
        row = next((r for r in rows if f">{axis}<" in r or f">{axis} (primary op.)<" in r), None)
        assert row is not None, axis
        assert f">{verdict}</span>" in row
    labelers = re.search(r'<table class="labelers">.*?</table>', dom, re.S)
    assert labelers and len(re.findall(r'<td class="[^"]*\bsel\b', labelers.group(0))) == len(eval_record["axes"])
    assert re.search(r'<table class="lobo">', dom)


# --------------------------------------------------------------------------- review loop


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)


@pytest.fixture
def gold_copy(tmp_path) -> Path:
    path = tmp_path / "gold" / "eval_gold_v1.jsonl"
    path.parent.mkdir()
    shutil.copyfile(EVAL_GOLD, path)
    return path


def test_export_disagreements(eval_record, tmp_path):
    out = tmp_path / "review.csv"
    n = export_disagreements(eval_record, out)
    rows = _read_csv(out)
    assert n == len(rows) > 0
    assert list(rows[0]) == COLUMNS
    assert all(r["decision"] == "" and r["corrected_label"] == "" for r in rows)
    assert [float(r["confidence"]) for r in rows] == sorted((float(r["confidence"]) for r in rows), reverse=True)
    by_id = {it["id"]: it for it in eval_record["items"]}
    for r in rows:
        item = by_id[r["item_id"]]
        assert r["text"] == item["text"]
        gold = item["gold"][r["axis"]]
        assert r["gold_label"] == ("|".join(gold) if isinstance(gold, list) else gold)
        judged = item["judge"][r["axis"]]
        assert r["judge_label"] == (INVALID if judged is None else "|".join(judged) if isinstance(judged, list)
                                    else judged)
        assert r["gold_label"] != r["judge_label"]
    # every judge failure disagrees on every axis it is scored on
    failed = [it["id"] for it in eval_record["items"] if it["status"] != "labeled"]
    assert {r["axis"] for r in rows if r["item_id"] == failed[0]} >= {"task_type", "solving_operations"}
    assert any("|" in r["gold_label"] for r in rows if r["axis"] == "solving_operations")


def test_review_loop_writes_new_gold_version(eval_record, gold_copy, tmp_path):
    csv_path = tmp_path / "review.csv"
    export_disagreements(eval_record, csv_path)
    rows = _read_csv(csv_path)
    single = next(r for r in rows if r["axis"] == "task_type" and r["judge_label"] != INVALID)
    ops = next(r for r in rows if r["axis"] == "solving_operations" and r["item_id"] != single["item_id"])
    judged = next(r for r in rows if r["item_id"] not in (single["item_id"], ops["item_id"]))
    single.update(decision="gold wrong", corrected_label=single["judge_label"])
    new_ops = ["arithmetic", "logical_deduction"] if ops["gold_label"] != "arithmetic|logical_deduction" else ["factual_recall"]
    ops.update(decision=" Gold Wrong ", corrected_label="|".join(new_ops))
    judged.update(decision="judge wrong")
    _write_csv(csv_path, rows)
    before = gold_copy.read_bytes()

    out = import_review(csv_path, gold_copy)

    assert out == gold_copy.with_name("eval_gold_v2.jsonl") and out.is_file()
    assert gold_copy.read_bytes() == before  # old version untouched
    old_lines, new_lines = before.decode().splitlines(), out.read_text(encoding="utf-8").splitlines()
    assert len(old_lines) == len(new_lines)
    changed = {}
    for old, new in zip(old_lines, new_lines):
        if old != new:
            o, n = json.loads(old), json.loads(new)
            assert o["annotator"] == n["annotator"] == "gold"
            changed[o["id"]] = {k for k in o if o[k] != n[k]}
    assert changed == {single["item_id"]: {"task_type"}, ops["item_id"]: {"solving_operations"}}
    new_gold, old_gold = load_gold(out), load_gold(gold_copy)
    assert new_gold.labels[GOLD][single["item_id"]]["task_type"] == single["judge_label"]
    assert new_gold.labels[GOLD][ops["item_id"]]["solving_operations"] == new_ops
    assert new_gold.labels["annotator_a"] == old_gold.labels["annotator_a"]
    assert new_gold.labels[GOLD][judged["item_id"]] == old_gold.labels[GOLD][judged["item_id"]]

    # never overwrite: the default v2 now exists, an explicit existing path, or the old file itself
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        import_review(csv_path, gold_copy)
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        import_review(csv_path, gold_copy, out)
    with pytest.raises(ConfigError, match="must not replace"):
        import_review(csv_path, gold_copy, gold_copy)
    assert gold_copy.read_bytes() == before
    v3 = import_review(csv_path, gold_copy, tmp_path / "elsewhere.jsonl")
    assert v3.read_bytes() == out.read_bytes()


def _bad_review(path: Path, item_id: str, bad: dict[str, str]) -> None:
    """Line 1 header; line 2–3 a row whose text spans two lines; line 4 a fine row; line 5 the bad row."""
    rows = [dict.fromkeys(COLUMNS, "") | {"item_id": item_id, "axis": "task_type", "text": "first\nsecond",
                                           "decision": "judge wrong"},
            dict.fromkeys(COLUMNS, "") | {"item_id": item_id, "axis": "background_condition", "decision": ""},
            dict.fromkeys(COLUMNS, "") | {"item_id": item_id, "axis": "task_type"} | bad]
    _write_csv(path, rows)


@pytest.mark.parametrize("bad, field, allowed", [
    ({"decision": "gold wrong", "corrected_label": "essay_writing"}, "corrected_label", "numeric_answer"),
    ({"decision": "maybe", "corrected_label": ""}, "decision", "'gold wrong', 'judge wrong' or empty"),
    ({"decision": "gold wrong", "corrected_label": ""}, "corrected_label", "multiple_choice"),
    ({"decision": "judge wrong", "corrected_label": "numeric_answer"}, "corrected_label", "gold wrong"),
    ({"decision": "gold wrong", "axis": "colour", "corrected_label": "red"}, "axis", "task_type"),
    ({"decision": "gold wrong", "axis": "solving_operations", "corrected_label": "arithmetic|bogus"},
     "corrected_label", "logical_deduction"),
    ({"decision": "gold wrong", "axis": "solving_operations",
      "corrected_label": "arithmetic|logical_deduction|factual_recall|state_tracking"}, "corrected_label", "1–3"),
])
def test_bad_review_rows_raise_and_write_nothing(gold_copy, tmp_path, bad, field, allowed):
    item_id = next(iter(load_gold(gold_copy).items))
    csv_path = tmp_path / "review.csv"
    _bad_review(csv_path, item_id, bad)
    before = gold_copy.read_bytes()
    with pytest.raises(RecordError) as exc:
        import_review(csv_path, gold_copy)
    assert exc.value.line == 5 and exc.value.field == field
    assert str(exc.value).startswith(f"line 5: field {field!r}: ") and allowed in str(exc.value)
    assert not default_out_path(gold_copy).exists()
    assert gold_copy.read_bytes() == before


def test_review_of_another_gold_version_is_refused(eval_record, gold_copy, tmp_path):
    csv_path = tmp_path / "review.csv"
    export_disagreements(eval_record, csv_path)
    rows = _read_csv(csv_path)
    row = next(r for r in rows if r["axis"] == "task_type" and r["judge_label"] != INVALID)
    row.update(decision="gold wrong", corrected_label=row["judge_label"], gold_label="binary_judgment"
               if row["gold_label"] != "binary_judgment" else "numeric_answer")
    _write_csv(csv_path, rows)
    with pytest.raises(RecordError, match="another gold version") as exc:
        import_review(csv_path, gold_copy)
    assert exc.value.field == "gold_label"


def test_default_out_path():
    assert default_out_path(Path("/x/eval_gold_v1.jsonl")) == Path("/x/eval_gold_v2.jsonl")
    assert default_out_path(Path("/x/doc_gold_v9.jsonl")) == Path("/x/doc_gold_v10.jsonl")
    assert default_out_path(Path("/x/mine.jsonl")) == Path("/x/mine_v2.jsonl")


# --------------------------------------------------------------------------- CLI


def test_cli_calibration_commands(eval_record, home, gold_copy, tmp_path, monkeypatch):
    from slicelab.service.cli import app

    monkeypatch.setenv("SLICELAB_HOME", str(home))
    runner = CliRunner()
    res = runner.invoke(app, ["calibration", "report", eval_record["id"]])
    assert res.exit_code == 0, res.output
    folder = home / "calibrations" / eval_record["id"]
    assert res.stdout.split() == [str(folder / f"report.{ext}") for ext in ("html", "json", "md")]

    csv_path = tmp_path / "review.csv"
    res = runner.invoke(app, ["calibration", "export-disagreements", eval_record["id"], "-o", str(csv_path)])
    assert res.exit_code == 0, res.output
    rows = _read_csv(csv_path)
    rows[0].update(decision="judge wrong")
    _write_csv(csv_path, rows)
    res = runner.invoke(app, ["calibration", "import-review", str(csv_path), "--gold", str(gold_copy),
                              "-o", str(tmp_path / "new.jsonl")])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(tmp_path / "new.jsonl")

    rows[0].update(decision="nope")
    _write_csv(csv_path, rows)
    res = runner.invoke(app, ["calibration", "import-review", str(csv_path), "--gold", str(gold_copy)])
    assert res.exit_code == 2 and "line 2" in res.output and "decision" in res.output

    res = runner.invoke(app, ["calibration", "report", "cal-missing"])
    assert res.exit_code == 2 and "no calibration record" in res.output
