"""lint-training-config on realistic tokenizer configs, and diagnose citing its findings."""

from __future__ import annotations

import json
import shutil

import pytest

from slicelab.service.comparison import compare
from slicelab.service.errors import ConfigError
from slicelab.service.mapping import diagnose
from slicelab.service.results import load_results
from slicelab.service.training_lint import lint_training_config
from tests.conftest import DATA, run_cli
from tests.loop_data import COT, MATH_OUTPUTS, STRONG, WEAK, bbh_labels, math_labels
from tests.runon_data import runon_bbh

CONFIGS = DATA / "training_config"
BASE, INSTRUCT = CONFIGS / "qwen2.5-7b-base-sft", CONFIGS / "qwen2.5-7b-instruct"


def test_pad_equal_to_eos_and_a_template_without_eos_are_flagged():
    lint = lint_training_config(BASE)
    assert lint["tokens"] == {"eos": "<|endoftext|>", "pad": "<|endoftext|>", "turn_end": "<|im_end|>"}
    by_id = {f["id"]: f for f in lint["findings"]}
    assert set(by_id) == {"pad-is-eos", "chat-template-without-eos"}
    pad = by_id["pad-is-eos"]
    assert pad["severity"] == "error" and "23530" in pad["message"]
    assert pad["evidence"] == {"field": "pad_token", "pad_token": "<|endoftext|>", "eos_token": "<|endoftext|>"}
    assert "'<|im_end|>'" in by_id["chat-template-without-eos"]["message"]
    assert any(f.endswith("qwen2_full_sft.yaml") for f in lint["files"])


def test_the_instruct_tokenizer_is_clean():
    lint = lint_training_config(INSTRUCT)
    assert lint["findings"] == [] and lint["tokens"]["eos"] == "<|im_end|>"


def test_training_yaml_overrides_and_eos_masking(tmp_path):
    d = tmp_path / "qwen-axolotl"
    shutil.copytree(INSTRUCT, d)
    (d / "axolotl.yaml").write_text(
        "base_model: Qwen/Qwen2.5-7B-Instruct\nspecial_tokens:\n  pad_token: \"<|im_end|>\"\n"
        "datasets:\n  - path: data/math_cot.jsonl\n    type: chat_template\n    roles_to_train: [assistant]\n"
        "    train_on_eos: none\n")
    by_id = {f["id"]: f for f in lint_training_config(d)["findings"]}
    assert set(by_id) == {"pad-is-eos", "eos-not-in-loss"}
    assert by_id["pad-is-eos"]["evidence"]["field"] == "special_tokens (training YAML)"
    assert by_id["eos-not-in-loss"]["evidence"]["field"] == "datasets[0].train_on_eos"
    with pytest.raises(ConfigError, match="no tokenizer_config.json or special_tokens_map.json"):
        lint_training_config(tmp_path)
    (d / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="tokenizer_config.json: not a readable JSON file"):
        lint_training_config(d)


def test_diagnose_cites_the_finding_for_a_termination_verdict_only(tmp_path):
    path, run = runon_bbh(tmp_path / "runon.jsonl", finish_reason=True)
    lint = lint_training_config(BASE)
    result = diagnose(compare(bbh_labels(), load_results([path]), COT, run), training_findings=lint)
    assert result["verdict"] == "non_data" and result["training_config"]["cited"]
    assert "pad-is-eos (error)" in result["summary"]
    cond = result["fired_rules"][0]["conditions"][-1]
    assert cond["predicate"] == "training_config" and cond["evidence"]["findings"] == lint["findings"]
    # a finding without a termination symptom is reported, not a verdict
    data = diagnose(compare(math_labels(), load_results([MATH_OUTPUTS]), STRONG, WEAK), training_findings=lint)
    assert data["verdict"] == "broad_regression" and not data["training_config"]["cited"]
    assert data["training_config"]["note"].startswith("reported only")


def test_cli_lint_text_json_and_diagnose(tmp_path):
    r = run_cli("lint-training-config", str(BASE), timeout_s=120)
    assert r.returncode == 1 and "error pad-is-eos" in r.stdout and "evidence:" in r.stdout
    r = run_cli("lint-training-config", str(BASE), "--json", timeout_s=120)
    assert r.returncode == 1 and {f["id"] for f in json.loads(r.stdout)["findings"]} >= {"pad-is-eos"}
    r = run_cli("lint-training-config", str(INSTRUCT), timeout_s=120)
    assert r.returncode == 0 and "no finding" in r.stdout
    r = run_cli("lint-training-config", str(tmp_path), timeout_s=120)
    assert r.returncode == 2 and "no tokenizer_config.json" in r.stderr and "Traceback" not in r.stderr

    labels = tmp_path / "bbh_labels.parquet"
    bbh_labels().to_parquet(labels)
    path, run = runon_bbh(tmp_path / "runon.jsonl", finish_reason=False)
    out = tmp_path / "diagnosis.json"
    r = run_cli("diagnose", "--labels", str(labels), "--results", str(path), "--baseline", COT, "--candidate", run,
                "-o", str(out), "--training-config", str(BASE), timeout_s=180)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["verdict"] == "non_data" and d["fired_rules"][0]["id"] == "answer-then-runon"
    assert d["training_config"]["cited"] and "training config pad-is-eos (error)" in r.stdout
    # the reports show the finding and how the new failures ended, with example ids
    for page in (out.with_suffix(".html"), out.with_suffix(".md")):
        text = page.read_text(encoding="utf-8")
        assert "Training configuration" in text and "pad-is-eos" in text
        assert "Failure mode detail" in text and "answer_then_runon" in text
        assert d["failure_modes"]["detail_examples"]["answer_then_runon"][0]["sample_id"] in text
