"""label-shard keeps one text per id: a later row with the same id and another text is rejected_input."""

from __future__ import annotations

import uuid

from slicelab.service.shard_index import NOT_FOUND, DedupIndex, build_index, row_key
from tests.conftest import run_cli
from tests.shard_judge import RuleJudgeServer, make_docs, write_gold
from tests.test_shards import _gate_file, _read_parts, _shard_infos, write_jsonl, write_parquet


def shards_with_reused_ids(tmp_path):
    docs = make_docs(12)
    a = write_jsonl(tmp_path / "a.jsonl", docs[:6] + [
        {"id": docs[2]["id"], "text": "An entirely different text that reuses an earlier id."},  # line 7
        {"id": docs[3]["id"], "text": docs[3]["text"]},  # the same id with the same text: a plain duplicate
    ])
    b = write_parquet(tmp_path / "b.parquet", docs[6:] + [
        {"id": docs[0]["id"], "text": "Another document under the id of a.jsonl line 1.", "source": None, "url": None}])
    return docs, a, b


def test_index_rejects_a_reused_id_with_another_text_and_keeps_it_out_of_the_sample(tmp_path):
    docs, a, b = shards_with_reused_ids(tmp_path)
    summary = build_index(tmp_path / "index", _shard_infos(a, b), text_field="text", id_field="id",
                          judge_sample=100, seed=0, batch_rows=4)
    assert (summary["n_rejected"], summary["n_distinct"], summary["n_duplicates"]) == (2, 12, 1)
    idx = DedupIndex(tmp_path / "index")
    keys = [row_key(0, r) for r in range(8)] + [row_key(1, r) for r in range(7)]
    import numpy as np

    dup = idx.id_duplicate_of(np.array(keys, dtype=np.uint64))
    assert int(dup[6]) == row_key(0, 2) and int(dup[14]) == row_key(0, 0)
    assert all(d == NOT_FOUND for i, d in enumerate(dup) if i not in (6, 14))
    assert not {row_key(0, 6), row_key(1, 6)} & {int(k) for k in idx.sample}  # never sent to the judge


def test_label_shard_gives_the_second_text_under_an_id_rejected_input(tmp_path, redis_url):
    docs, a, b = shards_with_reused_ids(tmp_path)
    out = tmp_path / "out"
    gold = write_gold(tmp_path / "gold.jsonl", make_docs(40, offset=135))
    with RuleJudgeServer() as srv:
        p = run_cli("label-shard", str(a), str(b), "-o", str(out), "--judge-sample", "12", "--workers", "1",
                    "--gold", str(gold), "--gate", str(_gate_file(tmp_path, 20)), "--n-boot", "50",
                    "--queue", f"shards-ids-{uuid.uuid4().hex[:6]}", "--judge-url", srv.base_url,
                    "--judge-model", "t", env={"SLICELAB_HOME": str(tmp_path / "home")}, timeout_s=300)
        assert p.returncode == 0, p.stderr
        judged = [r["messages"][-1]["content"] for r in srv.requests]
    assert not any("entirely different text" in m or "Another document under" in m for m in judged)
    df = _read_parts(out).set_index(["shard_index", "row"])
    assert len(df) == 15
    second = df.loc[(0, 6)]
    assert second["status"] == "rejected_input"
    assert second["error"] == f"duplicate id {docs[2]['id']!r} with another text (first at line 3 of a.jsonl)"
    assert df.loc[(1, 6)]["error"] == f"duplicate id {docs[0]['id']!r} with another text (first at line 1 of a.jsonl)"
    assert df.loc[(0, 7)]["status"] == "duplicate"
    assert (df["status"] == "rejected_input").sum() == 2
