"""One set of flags: the same option has the same name, meaning and default in every command;
old spellings still work and warn on stderr."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from slicelab.service.cli import app
from slicelab.service.errors import SlicelabError
from slicelab.service.shard_store import ShardRunStore
from tests.conftest import run_cli
from tests.shard_judge import RuleJudgeServer, make_docs

GATE = Path(__file__).resolve().parent.parent / "calibration" / "gate.yaml"
GOLD = Path(__file__).resolve().parent.parent / "calibration" / "gold" / "eval_gold_v1.jsonl"


def _options(command) -> dict[str, object]:
    """``--name`` → the click parameter, for every option of a command."""
    return {o: p for p in command.params for o in getattr(p, "opts", [])}


def _commands() -> dict[str, object]:
    root = typer.main.get_command(app)
    return {name: cmd for name, cmd in root.commands.items()}


def test_workers_default_is_one_everywhere():
    found = {name: _options(cmd)["--workers"].default for name, cmd in _commands().items()
             if "--workers" in _options(cmd)}
    assert set(found) >= {"label-benchmark", "resume", "label-shard", "calibrate"}
    assert set(found.values()) == {1}


def test_one_name_for_the_gate_file_and_json_prints_on_stdout():
    for name, cmd in _commands().items():
        opts = _options(cmd)
        assert "--gate-file" not in opts or opts["--gate-file"].hidden, name
        if "--json" in opts and not opts["--json"].hidden:
            assert opts["--json"].is_flag and "on stdout" in opts["--json"].help, name
    assert "--gate" in _options(_commands()["calibrate"])


@pytest.fixture
def captured(monkeypatch):
    """``slicelab calibrate`` with its use case replaced: the keyword arguments it got, then exit 2."""
    from slicelab.service.usecases import calibrate

    got: dict = {}

    def fake_run(gold, judge, **kw):
        got.update(kw, judge=judge)
        raise SlicelabError("stopped by the test")

    monkeypatch.setattr(calibrate, "run", fake_run)
    return got


@pytest.mark.parametrize("old, value, new, key, expected", [
    ("--gate-file", str(GATE), "--gate", "gate", GATE),
    ("--json", "t.json", "--table-json", "table_json", Path("t.json")),
    ("--samples", "5", "--self-consistency", "self_consistency", 5),
    ("--temperature", "0.9", "--sc-temperature", "sc_temperature", 0.9),
])
def test_calibrate_old_spellings_work_and_warn(captured, old, value, new, key, expected):
    res = CliRunner().invoke(app, ["calibrate", "--gold", str(GOLD), old, value])
    assert res.exit_code == 2 and "stopped by the test" in res.stderr
    assert captured[key] == expected
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {old}") and f"deprecated and will be removed; use {new}" in warnings[0]


def test_calibrate_new_spellings_do_not_warn(captured):
    res = CliRunner().invoke(app, ["calibrate", "--gold", str(GOLD), "--gate", str(GATE), "--table-json", "t.json",
                                   "--self-consistency", "3", "--sc-temperature", "0.5"])
    assert res.exit_code == 2 and "warning" not in res.stderr
    assert (captured["gate"], captured["table_json"], captured["self_consistency"], captured["sc_temperature"]) == \
        (GATE, Path("t.json"), 3, 0.5)


def _shard(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in make_docs(n)))
    return path


def _label_shard(shard: Path, out: Path, srv, tmp_path: Path, *extra: str):
    return run_cli("label-shard", str(shard), "-o", str(out), "--judge-sample", "6", "--workers", "1",
                   "--queue", f"shards-flags-{uuid.uuid4().hex[:6]}", "--judge-url", srv.base_url,
                   "--judge-model", "t", "--json", *extra, env={"SLICELAB_HOME": str(tmp_path / "home")},
                   timeout_s=300)


def test_label_shard_limit_judge_backend_and_label_cache(tmp_path, redis_url):
    shard = _shard(tmp_path / "s.jsonl", 20)
    with RuleJudgeServer() as srv:
        p = _label_shard(shard, tmp_path / "a", srv, tmp_path, "--limit", "12", "--judge-backend", "openai")
        assert p.returncode == 0, p.stderr
        summary = json.loads(p.stdout)
        assert summary["rows"] == 12 and summary["index"]["n_rows"] == [12]  # --limit: the first 12 rows
        assert sorted(ShardRunStore(tmp_path / "a").read_parts()["row"]) == list(range(12))
        manifest = ShardRunStore(tmp_path / "a").manifest()
        assert manifest["judge"]["backend"] == "openai" and manifest["options"]["limit"] == 12
        n_calls = len(srv.requests)
        assert n_calls >= 6
        # the same documents again: every judge label comes from the Redis label cache
        p = _label_shard(shard, tmp_path / "b", srv, tmp_path, "--limit", "12")
        assert p.returncode == 0, p.stderr
        assert len(srv.requests) == n_calls
        # --no-cache: every sample document costs a judge call again
        p = _label_shard(shard, tmp_path / "c", srv, tmp_path, "--limit", "12", "--no-cache")
        assert p.returncode == 0, p.stderr
        assert len(srv.requests) == 2 * n_calls
        assert ShardRunStore(tmp_path / "c").manifest()["options"]["cache"] is False


def test_shard_options_without_limit_or_no_cache_keep_their_run_key():
    from dataclasses import asdict

    from slicelab.service.shard_runner import ShardOptions

    recorded = ShardOptions(judge_sample=3).recorded()
    assert "limit" not in recorded and "cache" not in recorded  # the run key of an older run is unchanged
    assert recorded == {k: v for k, v in asdict(ShardOptions(judge_sample=3)).items() if k not in ("limit", "cache")}
    got = ShardOptions(limit=5, cache=False).recorded()
    assert (got["limit"], got["cache"]) == (5, False)


def test_label_shard_refuses_an_unknown_judge_backend(tmp_path):
    shard = _shard(tmp_path / "s.jsonl", 4)
    p = run_cli("label-shard", str(shard), "-o", str(tmp_path / "out"), "--judge-backend", "nosuch",
                "--judge-url", "http://127.0.0.1:9/v1", env={"SLICELAB_HOME": str(tmp_path / "home")},
                timeout_s=120)
    assert p.returncode == 2 and "nosuch" in p.stderr
