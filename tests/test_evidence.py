"""Evidence in the compare / diagnose reports: example outputs, finish_reason and length per run,
calibration state; the HTML looked at in headless Chromium."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import pytest

from slicelab.service.evidence import LENGTH_BINS, run_profile, tail
from slicelab.service.reports import write_report
from slicelab.service.results import load_results
from tests.conftest import run_cli
from tests.loop_data import BBH_OUTPUTS, COT, bbh_labels, truncated_bbh


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """``compare`` and ``diagnose`` through the CLI on 30% of the real BBH CoT outputs cut off before the answer."""
    tmp = tmp_path_factory.mktemp("ev")
    path, run = truncated_bbh(tmp / "truncated.jsonl")
    labels = tmp / "labels.parquet"
    df = bbh_labels().copy()
    df["gate_output_constraint"] = "fail"
    df.to_parquet(labels)
    args = ["--labels", str(labels), "--results", str(path), "--baseline", COT, "--candidate", run, "--examples", "2"]
    r = run_cli("compare", *args, "-o", str(tmp / "compare.json"), timeout_s=180)
    assert r.returncode == 0, r.stderr
    d = run_cli("diagnose", *args, "--allow-ungated", "-o", str(tmp / "diagnosis.json"), timeout_s=180)
    assert d.returncode == 0, d.stderr
    return tmp, run, r.stdout, d.stdout


def test_tail_and_run_profile():
    assert tail("abc", 5) == "abc" and tail("x" * 10 + "end", 3) == "…end" and tail(None) is None
    res = load_results([BBH_OUTPUTS])
    prof = run_profile(res)
    assert prof["n"] == 1080 and sum(prof["output_chars"]["counts"]) == 1080
    assert prof["output_chars"]["edges"] == list(LENGTH_BINS)
    lengths = res["output"].str.len()
    assert prof["output_chars"]["counts"][0] == int((lengths < LENGTH_BINS[1]).sum())
    assert prof["output_chars"]["max"] == int(lengths.max())


def test_compare_json_carries_examples_distributions_and_calibration(reports):
    tmp, run, stdout, _ = reports
    cmp = json.loads((tmp / "compare.json").read_text())
    ev = cmp["evidence"]
    assert ev["n_examples"] == 2
    assert ev["runs"][run]["finish_reason"] == {"stop": 1080 - 27 * 12, "length": 27 * 12}  # 30% of 40 per task
    assert cmp["overall"]["n10"] <= 27 * 12
    assert ev["runs"][COT]["finish_reason"] == {"stop": 1080}
    assert sum(ev["runs"][run]["output_chars"]["counts"]) == 1080
    assert ev["runs"][run]["output_chars"]["median"] < ev["runs"][COT]["output_chars"]["median"]
    examples = cmp["failure_modes"]["examples"]["non_termination"]
    assert len(examples) == 2
    for x in examples:
        assert x["baseline_correct"] and not x["candidate_correct"] and x["candidate_finish_reason"] == "length"
        assert len(x["candidate_output_tail"]) <= 301 and "So the answer is" not in x["candidate_output_tail"]
    cal = {a["axis"]: a for a in ev["calibration"]["axes"]}
    assert cal["output_constraint"] == {"axis": "output_constraint", "gate": "fail", "used": False,
                                        "labelers": {"knn": 1080}}
    assert not ev["calibration"]["allow_ungated"]
    assert ev["join"]["n_matched"] == 1080 and "join: 1080 labeled samples" in stdout


def test_reports_show_examples_distributions_and_calibration_state(reports):
    tmp, run, _, diag_stdout = reports
    d = json.loads((tmp / "diagnosis.json").read_text())
    assert d["verdict"] == "non_data" and d["evidence"]["calibration"]["allow_ungated"]
    for stem in ("compare", "diagnosis"):
        md = (tmp / f"{stem}.md").read_text()
        page = (tmp / f"{stem}.html").read_text()
        for text in ("## Calibration state", "## finish_reason per run", "## Output length per run (characters)",
                     "## Examples per failure mode: non_termination", "| length |", "█"):
            assert text in md, (stem, text)
        assert "<h2>Calibration state</h2>" in page and "<h2>Output length per run (characters)</h2>" in page
        assert "| output_constraint | fail |" in md
        assert ("--allow-ungated was used" in md) == (stem == "diagnosis")
        lost = json.loads((tmp / "compare.json").read_text())["failure_modes"]["examples"]["non_termination"]
        assert all(x["sample_id"] in md and x["sample_id"] in page for x in lost)


def test_html_reports_escape_sample_ids_and_output_excerpts(reports, tmp_path):
    """A sample id and an output tail that hold markup come out escaped in the compare and diagnose pages."""
    tmp, _, _, _ = reports
    evil = '<script>alert("x")</script> & <b>bold</b>'
    cmp = json.loads((tmp / "compare.json").read_text())
    cmp["failure_modes"]["examples"]["non_termination"][0] |= {"sample_id": evil, "candidate_output_tail": evil}
    d = json.loads((tmp / "diagnosis.json").read_text())
    pages = [write_report("compare", cmp, tmp_path / "compare")["html"],
             write_report("diagnose", d, tmp_path / "diagnosis", comparison=cmp)["html"]]
    for path in pages:
        page = path.read_text(encoding="utf-8")
        assert "<script" not in page and "<b>" not in page, path.name
        assert f"<td>{html.escape(evil)}</td>" in page and f"] {html.escape(evil)}</td>" in page, path.name


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


def test_diagnosis_html_renders_with_its_evidence_in_headless_chromium(reports):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium binary on PATH (CI installs Debian's chromium; locally: apt-get install chromium)")
    tmp, run, _, _ = reports
    page = (tmp / "diagnosis.html").resolve()
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             f"--user-data-dir={tmp / 'profile'}", "--window-size=1280,4000"]
    shot = tmp / "diagnosis.png"
    subprocess.run(flags + [f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=180, check=False)
    assert shot.is_file() and shot.stat().st_size > 50_000
    dom = subprocess.run(flags + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180,
                         check=False).stdout
    headings = re.findall(r"<h2>(.*?)</h2>", dom)
    assert {"Calibration state", "finish_reason per run", "Output length per run (characters)",
            "Examples per failure mode: non_termination", "Is the drop localised?"} <= set(headings)
    fin = re.search(r"<h2>finish_reason per run</h2>.*?</table>", dom, re.S).group(0)
    assert re.search(r"<td>length</td><td class=\"n\">0</td><td class=\"n\">\d+</td>", fin)
