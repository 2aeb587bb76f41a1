"""One use case behind every door: the CLI and the REST API label the same file to the same table."""

from __future__ import annotations

import json
import shutil

import pandas as pd
from fastapi.testclient import TestClient
from redis import Redis
from rq import Queue, SimpleWorker

from slicelab.calibration.gold import BUNDLED
from slicelab.service.api import Settings, create_app, parse_keys
from slicelab.service.judge import judge_spec
from slicelab.service.output import read_table
from tests.conftest import ROOT, run_cli

BBH = ROOT / "tests" / "data" / "bbh_one_per_task.jsonl"
KEY = {"Authorization": "Bearer k"}
#: Columns that describe one run rather than the labels: the run key and per-call timings.
PER_RUN = {"run_key", "judge_latency_s", "cache_hit"}


def test_cli_and_rest_label_the_same_file_to_the_same_labels_and_columns(tmp_path, redis_url, judge_server,
                                                                        monkeypatch):
    home = tmp_path / "home"
    env = {"SLICELAB_HOME": str(home), "REDIS_URL": redis_url}
    judge = ["--judge-url", judge_server.base_url, "--judge-model", "test-judge"]
    # a calibration of this judge: per axis, a labeler that passed the gate labels it
    cal = run_cli("calibrate", "--gold", str(BUNDLED["eval"]), *judge, env=env)
    assert cal.returncode == 0, cal.stderr
    record = json.loads(next((home / "calibrations").glob("cal-*/record.json")).read_text())
    assert set(record["selection"].values()) - {"judge"}, "the test needs an axis labeled by a cheap labeler"
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(BBH, data / "bbh.jsonl")

    cli_out = tmp_path / "cli.parquet"
    lab = run_cli("label-benchmark", str(data / "bbh.jsonl"), "-o", str(cli_out), *judge, "--no-cache", env=env)
    assert lab.returncode == 0, lab.stderr
    cli = read_table(cli_out)

    monkeypatch.setenv("SLICELAB_HOME", str(home))
    settings = Settings(api_keys=parse_keys(["k"]), data_root=data, redis_url=redis_url,
                        judge=judge_spec(judge_url=judge_server.base_url, judge_model="test-judge"))
    api = TestClient(create_app(settings))
    r = api.post("/v1/jobs", headers=KEY, json={"path": "bbh.jsonl"})
    assert r.status_code == 202, r.text
    conn = Redis.from_url(redis_url)
    SimpleWorker([Queue("slicelab", connection=conn)], connection=conn).work(burst=True)
    r = api.get(f"/v1/jobs/{r.json()['id']}/results", headers=KEY)
    assert r.status_code == 200, r.text
    rest_path = tmp_path / "rest.parquet"
    rest_path.write_bytes(r.content)
    rest = read_table(rest_path)

    assert list(rest.columns) == list(cli.columns)
    assert len(cli) == len(rest) == 27 and set(cli["status"]) == {"labeled"}
    assert set(cli["calibration_id"]) == set(rest["calibration_id"]) == {record["id"]}
    for axis, labeler in record["selection"].items():
        if record["verdicts"][axis] == "pass":
            assert set(rest[f"labeler_{axis}"]) <= {labeler, "knn", "judge"}  # a cascade asks the judge below its threshold
    same = [c for c in cli.columns if c not in PER_RUN]
    assert any(c.startswith("gate_") for c in same) and any(c.startswith("labeler_") for c in same)
    pd.testing.assert_frame_equal(cli[same], rest[same], check_dtype=False)
