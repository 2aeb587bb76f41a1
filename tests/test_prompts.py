"""Every file under prompts/ loads, renders, and speaks only the taxonomy's label ids."""

from __future__ import annotations

import re

import pytest
import yaml

from slicelab.prompts import PROMPTS_DIR
from slicelab.service.judge.base import parse_reply, response_format
from slicelab.service.prompts import load_template, render_messages, request_hash, template_paths
from slicelab.service.samples import Document, EvalSample
from slicelab.service.taxonomy import Taxonomy, load_taxonomy
from tests.conftest import DATA

ALL_FILES = sorted(p for p in PROMPTS_DIR.rglob("*.yaml"))
SAMPLE = EvalSample(id="s/1", benchmark="bbh", task="t", question="Is 7 prime?\nOptions:\n(A) Yes\n(B) No",
                    reference_answer="(A)", model_output="So the answer is (B).", correct=False)
DOC = Document(id="d/1", text="We prove that there are infinitely many primes. Suppose ...", source="test")


def test_every_prompt_file_is_covered():
    assert {p.name for p in ALL_FILES} >= {"taxonomy-v1.yaml", "eval-label-v1.yaml", "document-label-v1.yaml"}


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_prompt_file_loads_renders_and_validates(path):
    tax = load_taxonomy()
    if path.name.startswith("taxonomy"):
        t = Taxonomy(path)
        for kind in ("eval", "document"):
            for fm in (False, True):
                schema = t.json_schema(kind, with_failure_mode=fm)
                assert schema["additionalProperties"] is False
        return
    if path.name.startswith("mapping-rules"):
        from slicelab.service.mapping import load_rules

        assert load_rules(path).rules
        return
    tmpl = load_template(str(path))
    item = SAMPLE if tmpl.kind == "eval" else DOC
    for fm in ((False, True) if tmpl.kind == "eval" else (False,)):
        messages = render_messages(tmpl, tax, item, with_failure_mode=fm)
        assert [m["role"] for m in messages] == ["system", "user"]
        # the item comes last, after the static part
        assert (item.question if tmpl.kind == "eval" else item.text)[:20] in messages[1]["content"]
        assert messages[1]["content"].rstrip().endswith("Labels:")
        # every id the template names exists in the taxonomy
        named = set(re.findall(r"^- ([a-z_]+):", messages[0]["content"], re.M))
        known = {label.id for a in tax.axes(tmpl.kind) for label in a.labels}
        assert named and named <= known
        model = tax.label_model(tmpl.kind, with_failure_mode=fm)
        example = {a.name: ([a.ids[0]] if a.kind == "operations" else a.ids[0])
                   for a in tax.axes(tmpl.kind) if fm or not a.only_when}
        labels, status, err = parse_reply(__import__("json").dumps(example), "stop", model)
        assert status == "labeled", err
        assert request_hash(messages, response_format(model))


def test_system_prompt_is_static_across_items():
    tax, tmpl = load_taxonomy(), load_template("eval-label")
    other = SAMPLE.model_copy(update={"id": "s/2", "question": "Sort: b a", "correct": True})
    a = render_messages(tmpl, tax, SAMPLE, with_failure_mode=True)
    b = render_messages(tmpl, tax, other)
    assert a[0] == b[0]  # byte-identical static prefix: prefix caches reuse it
    assert a[1] != b[1]


def test_taxonomy_ids_match_the_spec_exactly():
    """No invented ids: the YAML's ids per axis equal the spec's."""
    spec = (DATA / "taxonomy-v1.md").read_text(encoding="utf-8")
    tax = load_taxonomy()
    sections = re.split(r"^### ", spec, flags=re.M)
    for kind in ("eval", "document"):
        for axis in tax.axes(kind):
            if axis.name == "demonstrated_operations":
                continue  # the spec reuses §1.3's ids
            name = "solving_operation" if axis.name == "solving_operations" else axis.name
            section = next(s for s in sections if s.split("\n", 1)[0].split(" ", 1)[-1].startswith(name))
            body = section.split("\n", 1)[1].split("\n---")[0].split("\n## ")[0]
            ids = re.findall(r"^\| `([a-z_]+)` \|", body, re.M) or re.findall(r"`([a-z_]+)`", body)
            assert set(axis.ids) == set(ids), (axis.name, set(axis.ids) ^ set(ids))
    doc_ops = tax.axis("document", "demonstrated_operations").ids
    assert doc_ops == tax.axis("eval", "solving_operations").ids


def test_label_model_dedupes_and_bounds_operations():
    model = load_taxonomy().label_model("eval")
    base = {"background_condition": "pure_math", "task_type": "numeric_answer", "output_constraint": "integer"}
    got = model.model_validate(base | {"solving_operations": ["arithmetic", "arithmetic", "number_theory"]})
    assert got.solving_operations == ["arithmetic", "number_theory"]
    with pytest.raises(Exception):
        model.model_validate(base | {"solving_operations": []})
    with pytest.raises(Exception):
        model.model_validate(base | {"solving_operations": ["arithmetic", "case_analysis", "number_theory", "state_tracking"]})
    with pytest.raises(Exception):
        model.model_validate(base | {"solving_operations": ["arithmetic"], "task_type": "essay"})


def test_taxonomy_provenance_and_bad_file(tmp_path):
    tax = load_taxonomy()
    assert tax.provenance() == {"taxonomy_name": "slicelab-taxonomy", "taxonomy_version": "v1",
                                "taxonomy_hash": tax.content_hash}
    data = yaml.safe_load((PROMPTS_DIR / "taxonomy-v1.yaml").read_text())
    data["eval"]["axes"][0]["labels"].append({"id": "pure_math", "meaning": "dup"})
    bad = tmp_path / "t.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(Exception, match="repeats label ids"):
        Taxonomy(bad)


def test_unknown_template_names_the_available_ones():
    with pytest.raises(Exception, match="available: document-label, eval-label"):
        load_template("nope")
    assert len(template_paths()) >= 2
