"""Pretraining shards: streaming readers, dedup index, truncation, the student, and label-shard end to end
(real Redis, real RQ worker processes, a localhost judge server)."""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import time
import tracemalloc
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from slicelab.calibration.gate import load_gate
from slicelab.service.errors import ConfigError, InputFormatError
from slicelab.service.shard_index import DedupIndex, build_index, row_key, split_key
from slicelab.service.shard_store import ShardRunStore
from slicelab.service.shards import content_hash, iter_batches, normalize, shard_format, text_problem, truncate
from slicelab.service.student import ShardStudent, load_student, measure, save_student
from tests.conftest import run_cli
from tests.shard_judge import MARKER, RuleJudgeServer, make_docs, rule_labels, write_gold

BAD_LINES = ["", '{"id": "empty", "text": "   "}', "{not json", '{"id": "num", "text": 42}', '["a list"]']


def write_jsonl(path: Path, docs: list[dict], extra_lines=()) -> Path:
    body = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs) + "".join(x + "\n" for x in extra_lines)
    data = body.encode("utf-8")
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    elif path.name.endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return path


def write_parquet(path: Path, docs: list[dict], row_group_size: int = 1000) -> Path:
    pq.write_table(pa.Table.from_pylist(docs), path, row_group_size=row_group_size)
    return path


def read_all(path, **kw):
    return [r for batch in iter_batches(str(path), **kw) for r in batch]


# --------------------------------------------------------------------------- readers


@pytest.mark.parametrize("name", ["s.jsonl", "s.jsonl.gz", "s.jsonl.zst", "s.parquet", "memory://shards/s.jsonl"])
def test_every_shard_format_gives_the_same_rows_and_ranges(tmp_path, name):
    docs = make_docs(30)
    if name.startswith("memory://"):
        import fsspec

        with fsspec.open(name, "wb") as f:
            f.write("".join(json.dumps(d) + "\n" for d in docs).encode() + "\n".join(BAD_LINES).encode() + b"\n")
        path = name
    elif name.endswith(".parquet"):
        path = write_parquet(tmp_path / name, docs + [{"id": "empty", "text": "  ", "source": None, "url": None},
                                                      {"id": "none", "text": None, "source": None, "url": None}],
                             row_group_size=7)
    else:
        path = write_jsonl(tmp_path / name, docs, BAD_LINES)
    rows = read_all(path, batch_rows=4)
    assert [r.row for r in rows] == list(range(len(rows)))
    assert [r.text for r in rows[:30]] == [d["text"] for d in docs] and rows[3].id == docs[3]["id"]
    rejected = {r.row: r.reason for r in rows if r.text is None}
    assert set(rejected) == set(range(30, len(rows))) and all(rejected.values())
    if name.endswith(".jsonl") or name.endswith(".zst"):
        assert [r.reason.split(":")[0] for r in rows[30:]] == [
            "blank line", "empty text field 'text'", "invalid JSON", "text field 'text' is not a string (got int)",
            "not a JSON object (got list)"]
    # a row range, as a job reads it (Parquet starts at the row group holding `start`)
    part = read_all(path, start=9, end=23, batch_rows=5)
    assert [r.row for r in part] == list(range(9, 23)) and part[0].text == docs[9]["text"]


def test_uncompressed_jsonl_seeks_to_a_recorded_offset(tmp_path):
    docs = make_docs(20)
    path = write_jsonl(tmp_path / "s.jsonl", docs)
    rows = read_all(path)
    assert all(r.offset is not None for r in rows)
    jumped = read_all(path, start=12, end=15, seek=(10, rows[10].offset))
    assert [r.id for r in jumped] == [d["id"] for d in docs[12:15]]
    assert all(r.offset is None for r in read_all(write_jsonl(tmp_path / "s.jsonl.gz", docs)))


def test_unknown_or_missing_shards_are_refused(tmp_path):
    for name in ("a.txt", "a.csv.gz", "a.parquet.gz"):
        with pytest.raises(InputFormatError, match="allowed endings|compressed inside"):
            shard_format(name)
    assert shard_format("s3://bucket/x/part-0001.jsonl.zst") == ("jsonl", "zstd")
    (tmp_path / "p.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputFormatError, match="not a readable Parquet"):
        read_all(tmp_path / "p.parquet")
    write_parquet(tmp_path / "q.parquet", [{"body": "x"}])
    with pytest.raises(InputFormatError, match="no column 'text'.*body"):
        read_all(tmp_path / "q.parquet")


def _peak_while_streaming(path, batch_rows):
    tracemalloc.start()
    n = most = 0
    for batch in iter_batches(str(path), batch_rows=batch_rows):
        most = max(most, len(batch))
        n += len(batch)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return n, most, peak


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_streaming_holds_one_batch_whatever_the_shard_size(tmp_path, suffix):
    small = write_jsonl(tmp_path / f"small{suffix}", make_docs(300))
    big = write_jsonl(tmp_path / f"big{suffix}", make_docs(3000))  # ~3 MB of text
    n_small, most, peak_small = _peak_while_streaming(small, 50)
    n_big, most_big, peak_big = _peak_while_streaming(big, 50)
    assert (n_small, n_big) == (300, 3000) and most == most_big == 50
    assert peak_big < 1.5 * peak_small + 256 * 1024, (peak_small, peak_big)
    assert peak_big < big.stat().st_size / 4


def _arrow_peak(path, batch_rows):
    pool = pa.default_memory_pool()
    base, most = pool.bytes_allocated(), 0
    for batch in iter_batches(str(path), batch_rows=batch_rows):
        assert len(batch) <= batch_rows
        most = max(most, pool.bytes_allocated() - base)
    return most


def test_parquet_is_read_by_record_batches(tmp_path):
    docs = make_docs(3000)
    small = _arrow_peak(write_parquet(tmp_path / "small.parquet", docs[:500], row_group_size=250), 100)
    big = _arrow_peak(write_parquet(tmp_path / "big.parquet", docs, row_group_size=250), 100)
    assert big < 1.5 * small + 256 * 1024, (small, big)  # one row group at a time, never the file
    assert big < sum(len(d["text"]) for d in docs) / 4


# --------------------------------------------------------------------------- text rules


def test_content_hash_ignores_case_whitespace_and_unicode_composition():
    a = "Caf\u00e9  au\tLAIT\n\n costs 3 €"
    b = "cafe\u0301 au lait costs 3 €  "
    assert normalize(a) == normalize(b) == "café au lait costs 3 €"
    assert content_hash(a) == content_hash(b) and len(content_hash(a)) == 20
    assert content_hash(a) != content_hash(a + ".")


def test_text_problems_name_the_reason():
    assert text_problem(None) == "missing text field 'text'"
    assert text_problem(3, "body") == "text field 'body' is not a string (got int)"
    assert text_problem(" \n ") == "empty text field 'text'"
    assert "NUL" in text_problem("abc\x00def")
    assert "control characters" in text_problem("\x01\x02\x03\x04 ab")
    assert "surrogate" in text_problem("bad \ud800 text é")
    assert text_problem("fine text, naïve café") is None


def test_truncation_keeps_head_and_tail_within_the_budget_and_records_the_cut():
    text = " ".join(f"w{i}" for i in range(3000))  # ~17k characters
    kept, cut = truncate(text, 100)  # 400 characters
    assert len(kept) <= 400 and cut == len(text) - len(kept) + len("\n…\n")
    head, tail = kept.split("\n…\n")
    assert text.startswith(head) and text.endswith(tail) and head.startswith("w0 w1")
    assert len(head) > 2 * len(tail)  # 3/4 of the budget from the head
    assert truncate(kept, 100) == (kept, 0)  # cutting twice changes nothing
    assert truncate("short", 100) == ("short", 0)


# --------------------------------------------------------------------------- dedup index


def _shard_infos(*paths):
    return [{"path": str(p), "format": shard_format(str(p))[0], "compression": shard_format(str(p))[1]}
            for p in paths]


def test_index_finds_first_occurrences_within_and_across_shards(tmp_path):
    docs = make_docs(40)
    a = write_jsonl(tmp_path / "a.jsonl", docs[:20] + [{"id": "dupA", "text": docs[4]["text"].upper() + "  "}],
                    ['{"id": "bad", "text": ""}'])
    b = write_parquet(tmp_path / "b.parquet", docs[20:] + [{"id": "dupB", "text": docs[7]["text"], "source": None,
                                                            "url": None}])
    summary = build_index(tmp_path / "index", _shard_infos(a, b), text_field="text", id_field="id",
                          judge_sample=15, seed=3, batch_rows=8)
    assert summary["n_rows"] == [22, 21]
    assert (summary["n_rejected"], summary["n_documents"], summary["n_distinct"], summary["n_duplicates"]) == (1, 42, 40, 2)
    idx = DedupIndex(tmp_path / "index")
    h = idx.hashes(0, 0, 22)
    first = idx.first_keys(h[:21])
    assert list(first[:20]) == [row_key(0, r) for r in range(20)]  # each its own first occurrence
    assert first[20] == row_key(0, 4) and h[21] == b""  # in-shard duplicate; the rejected row has no hash
    hb = idx.hashes(1, 20, 21)
    assert split_key(idx.first_keys(hb)[0]) == (0, 7) and idx.row_id(row_key(0, 7)) == docs[7]["id"]
    # the judge sample: distinct documents only, seeded, the same again for the same seed
    assert len(idx.sample) == 15 and list(idx.sample) == sorted(idx.sample)
    dup_keys = {row_key(0, 20), row_key(1, 20), row_key(0, 21)}
    assert not dup_keys & set(int(k) for k in idx.sample)
    again = build_index(tmp_path / "index2", _shard_infos(a, b), text_field="text", id_field="id",
                        judge_sample=15, seed=3)
    build_index(tmp_path / "index3", _shard_infos(a, b), text_field="text", id_field="id",
                        judge_sample=15, seed=4)
    assert again["n_sample"] == 15
    assert list(DedupIndex(tmp_path / "index2").sample) == list(idx.sample)
    assert list(DedupIndex(tmp_path / "index3").sample) != list(idx.sample)
    assert idx.seek(0, 19) == (0, 0) and idx.seek(1, 5) is None  # offsets for plain JSONL only


# --------------------------------------------------------------------------- the student


@pytest.fixture(scope="module")
def trained():
    docs = make_docs(80)
    student = ShardStudent().fit([d["text"] for d in docs], [rule_labels(d["text"]) for d in docs])
    return student


def test_hashed_ngrams_count_the_tokens_hashing_vectorizer_counts():
    from sklearn.feature_extraction.text import HashingVectorizer

    from slicelab.service.features import HashedNgrams

    texts = [d["text"] for d in make_docs(20)] + ["", "a", "Naïve café, naïve CAFÉ!"]
    ours = HashedNgrams(n_features=2 ** 20, bigrams=False).transform(texts)
    theirs = HashingVectorizer(n_features=2 ** 20, alternate_sign=False, norm="l2").transform(texts)
    # same tokens, same counts; only the hash function differs (so compare each row's sorted values)
    for i in range(len(texts)):
        assert np.allclose(np.sort(ours[i].data), np.sort(theirs[i].data))
    both = HashedNgrams(n_features=2 ** 20).transform(texts)
    again = HashedNgrams(n_features=2 ** 20).transform(texts)  # a fresh instance: no state, same columns
    assert abs(both - again).max() == 0 and both.shape == (23, 2 ** 20)
    assert both[20].nnz == both[21].nnz == 0 and both[0].nnz > ours[0].nnz
    assert np.allclose(np.asarray(both.multiply(both).sum(axis=1)).ravel()[:20], 1.0)
    assert both[22].nnz == 4  # naïve, café, "naïve café" (counted twice), "café naïve"


def test_stacked_scorer_gives_logistic_regression_probabilities():
    from sklearn.linear_model import LogisticRegression

    from slicelab.service.student import StudentSettings, _fit, _Scorer

    docs = make_docs(40)
    student = ShardStudent()
    X = student.features([d["text"] for d in docs])
    for y in ([rule_labels(d["text"])["document_format"] for d in docs], [i % 2 == 0 for i in range(40)]):
        lin = _fit(X, y, StudentSettings())
        scorer = _Scorer({"axis": lin}, 2 ** 20)
        ours = lin.proba(scorer.scores(X)[:, scorer.cols[("axis", None)]])
        used = np.flatnonzero(np.diff(X.tocsc().indptr))
        ref = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced").fit(X[:, used], y)
        assert np.allclose(ours, ref.predict_proba(X[:, used]), atol=1e-9)


def test_student_learns_the_learnable_axis_and_the_gate_refuses_the_rest(tmp_path, trained):
    gold_docs = make_docs(40, offset=100)
    gate = load_gate(_gate_file(tmp_path, min_n=20))
    result = measure(trained, [d["text"] for d in gold_docs], [rule_labels(d["text"]) for d in gold_docs], gate,
                     n_boot=200)
    assert result["domain"]["verdict"]["verdict"] == "pass" and result["domain"]["summary"]["kappa"] == 1.0
    for axis in ("document_format", "reasoning_depth", "education_level", "demonstrated_operations"):
        assert result[axis]["verdict"]["verdict"] == "fail", axis
    labels, probs = trained.predict([d["text"] for d in gold_docs[:4]])
    assert [lab["domain"] for lab in labels] == [rule_labels(d["text"])["domain"] for d in gold_docs[:4]]
    assert all(0.0 <= p <= 1.0 for pr in probs for p in pr.values())
    assert all(isinstance(lab["demonstrated_operations"], list) for lab in labels)


def test_saved_student_loads_by_hash_and_refuses_changed_bytes(tmp_path, monkeypatch, trained):
    monkeypatch.setenv("SLICELAB_HOME", str(tmp_path / "home"))
    digest, folder = save_student(trained, {"axes_passed": ["domain"]})
    again, _ = save_student(trained, {"axes_passed": ["domain"]})
    assert again == digest and folder.name == digest and len(digest) == 16  # the hash is of the bytes
    from slicelab.service import student as student_mod

    student_mod._LOADED.clear()
    loaded, meta = load_student(digest)
    texts = [d["text"] for d in make_docs(5, offset=50)]
    assert loaded.predict(texts) == trained.predict(texts)
    assert meta["hash"] == digest and meta["axes_passed"] == ["domain"] and meta["taxonomy_version"] == "v1"
    with pytest.raises(ConfigError, match=f"known: {digest}"):
        load_student("0" * 16)
    student_mod._LOADED.clear()
    with open(folder / "student.joblib", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(ConfigError, match="do not match hash"):
        load_student(digest)
    student_mod._LOADED.clear()


# --------------------------------------------------------------------------- label-shard end to end


def _gate_file(tmp_path: Path, min_n: int) -> Path:
    path = tmp_path / f"gate-{min_n}.yaml"
    path.write_text(f"version: 1\ndefault: {{metric: cohen_kappa_ci_low, bound: 0.6, min_n: {min_n}}}\n")
    return path


def _read_parts(out: Path) -> pd.DataFrame:
    return ShardRunStore(out).read_parts()


def test_label_shard_end_to_end(tmp_path, redis_url):
    docs = make_docs(130)
    long_text = " ".join(f"word{i}" for i in range(2000)) + f" {MARKER}" * 30
    docs[10]["text"] = long_text
    a = write_jsonl(tmp_path / "a.jsonl.gz", docs[:60] + [{"id": "dupA", "text": docs[3]["text"].upper()}], BAD_LINES[:3])
    b = write_parquet(tmp_path / "b.parquet", docs[60:100] + [{"id": "dupB", "text": docs[5]["text"] + "\n",
                                                                "source": None, "url": None}], row_group_size=16)
    c = write_jsonl(tmp_path / "c.jsonl.zst", docs[100:] + [{"id": "dupC", "text": docs[70]["text"]}])
    gold = write_gold(tmp_path / "gold.jsonl", make_docs(40, offset=135))
    out = tmp_path / "out"
    env = {"SLICELAB_HOME": str(tmp_path / "home")}
    args = ["label-shard", str(a), str(b), str(c), "-o", str(out), "--judge-sample", "70", "--heldout-frac", "0.4",
            "--gold", str(gold), "--gate", str(_gate_file(tmp_path, 20)), "--rows-per-job", "25",
            "--route-below", "0.78", "--n-boot", "200", "--queue", f"shards-test-{uuid.uuid4().hex[:6]}",
            "--workers", "2"]
    with RuleJudgeServer() as srv:
        p = run_cli(*args, "--judge-url", srv.base_url, "--judge-model", "t", env=env, timeout_s=300)
        assert p.returncode == 0, p.stderr
        requests = [r["messages"][-1]["content"] for r in srv.requests]
        # a re-run finds every part done: no job, no judge call
        p2 = run_cli(*args, "--judge-url", srv.base_url, "--judge-model", "t", env=env, timeout_s=300)
        assert p2.returncode == 0, p2.stderr
        assert len(srv.requests) == len(requests) and "(resumed)" in " ".join(p2.stderr.split())
    df = _read_parts(out)
    # every input row exactly once, with one status
    assert len(df) == 64 + 41 + 31
    assert not df.duplicated(["shard_index", "row"]).any()
    assert df.groupby("shard_index")["row"].apply(lambda r: sorted(r) == list(range(len(r)))).all()
    assert set(df["status"]) <= {"labeled", "duplicate", "rejected_input", "unlabeled"}
    by_id = df.set_index("id")
    # duplicates within and across shards point to their first occurrence and are never judged
    assert by_id.loc["dupA", "status"] == "duplicate" and by_id.loc["dupA", "duplicate_of"] == docs[3]["id"]
    assert (by_id.loc["dupB", "duplicate_of"], by_id.loc["dupB", "duplicate_of_shard_index"]) == (docs[5]["id"], 0)
    assert by_id.loc["dupC", "duplicate_of"] == docs[70]["id"] and by_id.loc["dupC", "duplicate_of_row"] == 10
    assert by_id.loc["dupA", "content_sha1"] == by_id.loc[docs[3]["id"], "content_sha1"]
    assert by_id.loc[["dupA", "dupB", "dupC"], "domain"].isna().all()
    sent = Counter(requests)
    assert max(sent.values()) == 1, "a document went to the judge twice"
    assert len(requests) == df["in_judge_sample"].sum() + df["routed"].sum()
    # rejected rows say why
    rej = df[df["status"] == "rejected_input"]
    assert len(rej) == 3 and {e.split(":")[0] for e in rej["error"]} == {"blank line", "empty text field 'text'",
                                                                         "invalid JSON"}
    # the long document was cut to the budget, the cut recorded
    row = by_id.loc[docs[10]["id"]]
    assert row["truncated_chars"] == truncate(long_text, 512)[1] > len(long_text) - 2048
    assert row["n_chars"] == len(long_text) and row["tokens"] == -(-len(long_text) // 4)
    # two-tier labeling: the judge sample, then the student on the axis it passed, routed rows to the judge
    student = json.loads((out / "student.json").read_text())
    assert student["axes_student"] == ["domain"]
    sample = df[df["in_judge_sample"]]
    assert len(sample) == 70 and (sample["labeler_domain"] == "judge").all()
    rest = df[(df["status"] == "labeled") & ~df["in_judge_sample"]]
    assert len(rest) == 130 - 70
    routed = rest[rest["routed"]]
    kept = rest[~rest["routed"]]
    assert (routed["student_prob_domain"] < 0.78).all() and (routed["labeler_domain"] == "judge").all()
    assert (kept["student_prob_domain"] >= 0.78).all() and (kept["labeler_domain"] == "student").all()
    assert len(kept) > 0 and len(routed) > 0
    assert (kept["domain"] == [rule_labels(t)["domain"] for t in _texts(docs, kept["id"])]).all()
    assert kept["document_format"].isna().all() and kept["labeler_document_format"].isna().all()
    assert (kept["student_hash"] == student["hash"]).all()
    # parts, markers, summary
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status_counts"] == df["status"].value_counts().to_dict()
    assert len(list((out / "parts").glob("*.parquet"))) == len(list((out / "markers").glob("*.done"))) == 7
    assert pd.read_parquet(out / "parts").shape[0] == len(df)  # the parts folder is one Parquet dataset


def _texts(docs, ids):
    by = {d["id"]: d["text"] for d in docs}
    return [by[i] for i in ids]


def test_student_eval_and_list_commands(tmp_path, trained, monkeypatch):
    monkeypatch.setenv("SLICELAB_HOME", str(tmp_path / "home"))
    digest, _ = save_student(trained, {"axes_passed": ["domain"]})
    gold = write_gold(tmp_path / "gold.jsonl", make_docs(40, offset=100))
    env = {"SLICELAB_HOME": str(tmp_path / "home")}
    p = run_cli("student", "eval", digest, "--gold", str(gold), "--gate", str(_gate_file(tmp_path, 20)),
                "--n-boot", "100", "--json", env=env, timeout_s=120)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert got["hash"] == digest and got["axes"]["domain"]["verdict"]["verdict"] == "pass"
    assert got["axes"]["document_format"]["verdict"]["verdict"] == "fail"
    p = run_cli("student", "list", env=env, timeout_s=120)
    assert p.returncode == 0 and digest in p.stdout
    p = run_cli("student", "eval", "feedfeedfeedfeed", env=env, timeout_s=120)
    assert p.returncode == 2 and digest in p.stderr and "Traceback" not in p.stderr


def test_another_run_in_the_same_folder_is_refused(tmp_path):
    from slicelab.service.shard_runner import ShardOptions, plan_shard_run

    shard = write_jsonl(tmp_path / "s.jsonl", make_docs(5))
    out = tmp_path / "out"
    judge = {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "t"}
    store, resumed = plan_shard_run([str(shard)], out, ShardOptions(judge_sample=3), judge, "h")
    assert not resumed and store.exists()
    assert plan_shard_run([str(shard)], out, ShardOptions(judge_sample=3), judge, "h")[1] is True
    with pytest.raises(ConfigError, match="holds another run .*options"):
        plan_shard_run([str(shard)], out, ShardOptions(judge_sample=4), judge, "h")
    with pytest.raises(ConfigError, match="--route-below"):
        plan_shard_run([str(shard)], tmp_path / "o2", ShardOptions(route_below=1.5), judge, "h")
    with pytest.raises(ConfigError, match="needs --student"):
        plan_shard_run([str(shard)], tmp_path / "o3", ShardOptions(judge_sample=0), judge, "h")


def _kill_tree(proc: subprocess.Popen) -> None:
    parent = psutil.Process(proc.pid)
    for child in parent.children(recursive=True):
        child.send_signal(signal.SIGKILL)
    parent.send_signal(signal.SIGKILL)
    proc.wait()


def test_killed_workers_and_rerun_leave_every_row_exactly_once(tmp_path, redis_url, trained, monkeypatch):
    """Route every document to a slow judge so label jobs take seconds; kill a worker mid-job (the command
    replaces it), then kill the whole command with its workers, re-run, and check the rows."""
    import time

    from tests.test_queue import _wait_for, cli

    monkeypatch.setenv("SLICELAB_HOME", str(tmp_path / "home"))
    digest, _ = save_student(trained, {"axes_passed": ["domain"]})
    docs = make_docs(36, suffix=" [[slow]]")
    shard = write_jsonl(tmp_path / "s.jsonl", docs + [docs[0] | {"id": "dup"}])
    out = tmp_path / "out"
    markers = out / "markers"
    with RuleJudgeServer(slow_s=0.25) as srv:
        args = ("label-shard", str(shard), "-o", str(out), "--judge-sample", "0", "--student", digest,
                "--route-below", "1.0", "--rows-per-job", "4", "--workers", "1",
                "--queue", f"shards-kill-{uuid.uuid4().hex[:6]}", "--judge-url", srv.base_url, "--judge-model", "t")
        p = cli(*args, env={"SLICELAB_HOME": str(tmp_path / "home")})
        assert _wait_for(lambda: len(list(markers.glob("*.done"))) >= 1, 120), "no label job finished"
        assert _wait_for(lambda: len(psutil.Process(p.pid).children()) == 1, 30)
        psutil.Process(p.pid).children()[0].send_signal(signal.SIGKILL)  # a worker dies mid-job
        n_before = len(srv.requests)
        assert _wait_for(lambda: len(srv.requests) > n_before + 2, 60), "the dead worker was not replaced"
        _kill_tree(p)  # then the command and its workers die
        done = len(list(markers.glob("*.done")))
        assert 1 <= done < 10
        time.sleep(0.3)
        p = cli(*args, env={"SLICELAB_HOME": str(tmp_path / "home")})
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
    df = _read_parts(out)
    assert len(df) == 37 and not df.duplicated(["shard_index", "row"]).any()
    assert sorted(df["row"]) == list(range(37))
    assert df.set_index("id").loc["dup", "status"] == "duplicate"
    labeled = df[df["status"] == "labeled"]
    assert len(labeled) == 36 and labeled["routed"].all() and (labeled["labeler_domain"] == "judge").all()
    assert not list((out / "parts").glob(".*tmp*"))  # no half part left behind
    assert len(list(markers.glob("*.done"))) == 10


@pytest.mark.faults
def test_shard_run_survives_a_redis_restart_mid_run(tmp_path, trained, monkeypatch):
    """Crash the run's embedded redis-server (SIGKILL) while label jobs run and start it again on the
    same folder: the command waits, enqueues every job without a marker anew, and finishes with every
    row exactly once."""
    from slicelab.service.redis_conn import start_embedded, stop_embedded
    from tests.test_faults import _crash_redis
    from tests.test_queue import _wait_for, cli

    monkeypatch.setenv("SLICELAB_HOME", str(tmp_path / "home"))
    digest, _ = save_student(trained, {"axes_passed": ["domain"]})
    docs = make_docs(36, suffix=" [[slow]]")
    shard = write_jsonl(tmp_path / "s.jsonl", docs)
    out = tmp_path / "out"
    markers = out / "markers"
    redis_dir = tmp_path / "redis"
    url = start_embedded(redis_dir)
    try:
        with RuleJudgeServer(slow_s=0.25) as srv:
            p = cli("label-shard", str(shard), "-o", str(out), "--judge-sample", "0", "--student", digest,
                    "--route-below", "1.0", "--rows-per-job", "4", "--workers", "2", "--judge-url", srv.base_url,
                    "--judge-model", "t", env={"SLICELAB_HOME": str(tmp_path / "home"), "REDIS_URL": url})
            assert _wait_for(lambda: len(list(markers.glob("*.done"))) >= 2, 120), "no label job finished"
            _crash_redis(url)
            stop_embedded(url)  # forget the dead server
            done_at_crash = len(list(markers.glob("*.done")))
            time.sleep(2.0)  # the command notices and waits
            assert start_embedded(redis_dir) == url
            stdout, stderr = p.communicate(timeout=300)
    finally:
        stop_embedded(url)
    assert p.returncode == 0, stderr
    assert done_at_crash < 9  # the crash happened mid-run
    assert "Redis does not answer" in stderr
    df = _read_parts(out)
    assert len(df) == 36 and not df.duplicated(["shard_index", "row"]).any()
    assert sorted(df["row"]) == list(range(36)) and set(df["status"]) == {"labeled"}
    assert len(list(markers.glob("*.done"))) == 9


def test_a_shard_with_nothing_to_label_still_gives_every_row(tmp_path, redis_url):
    shard = write_jsonl(tmp_path / "bad.jsonl", [], BAD_LINES)
    out = tmp_path / "out"
    p = run_cli("label-shard", str(shard), "-o", str(out), "--judge-sample", "5", "--workers", "1",
                "--queue", f"shards-empty-{uuid.uuid4().hex[:6]}", "--judge-url", "http://127.0.0.1:9/v1",
                "--judge-model", "t", "--json", env={"SLICELAB_HOME": str(tmp_path / "home")}, timeout_s=120)
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)  # --json: stdout holds the summary only
    assert summary["status_counts"] == {"rejected_input": 5} and summary["student_hash"] is None
    df = _read_parts(out)
    assert list(df["row"]) == list(range(5)) and set(df["status"]) == {"rejected_input"}
