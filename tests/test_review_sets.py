"""Review sets: a calibration record's items and a new benchmark's seed items, reviewed and exported as gold."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from slicelab.calibration.gold import BUNDLED, BUNDLED_ALL, GOLD, load_gold
from slicelab.calibration.review import disagreements
from slicelab.calibration.review_sets import (create_calibration_review, create_seed_review, decisions, export_gold,
                                              list_reviews, load_review, progress, reviews_dir, save_decision)
from slicelab.calibration.seed import pairs
from slicelab.service.errors import ConfigError, RecordError
from slicelab.service.taxonomy import load_taxonomy
from tests.conftest import DATA, run_cli
from tests.judge_server import JudgeServer


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A module-wide SLICELAB_HOME with the bundled eval record (the seed prefill's selection) built once."""
    from slicelab.calibration.offline import bundled_record

    path = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLICELAB_HOME", str(path))
        bundled_record("eval", n_boot=50)
        yield path


@pytest.fixture(scope="module")
def record(home, _redis_server):
    """A calibration record of the test judge on 8 held-out items of the bundled eval gold set."""
    from slicelab.calibration.run import run_calibration
    from slicelab.service.judge import judge_spec

    with JudgeServer() as srv:
        spec = judge_spec(judge_url=srv.base_url, judge_model="test-judge")
        return run_calibration(BUNDLED["eval"], spec, _redis_server, limit=8, inline=True, lobo=False, n_boot=50)


@pytest.fixture(scope="module")
def review(record):
    return create_calibration_review(record)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A new benchmark's samples: BIG-Bench Hard one per task and MATH-500 problems, every third answer wrong."""
    rows = [json.loads(line) for name in ("bbh_one_per_task.jsonl", "math500_answer_shapes.jsonl")
            for line in (DATA / name).read_text().splitlines() if line.strip()]
    for k, row in enumerate(rows):
        if k % 3 == 0:
            row |= {"model_output": "Working through it, the answer is 7.", "correct": False}
    path = tmp_path_factory.mktemp("bench") / "bench.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _labels(review, item_id):
    return next(it for it in review.items if it.id == item_id).prefill


def test_calibration_review_holds_the_heldout_items_most_disagreement_first(record, review):
    assert review.source == "calibration" and review.record_id == record["id"] and review.labeler == "judge"
    assert review.axes == [a.name for a in load_taxonomy().axes("eval")]
    assert sorted(it.id for it in review.items) == sorted(it["id"] for it in record["items"])
    scores = [it.disagreement for it in review.items]
    assert scores == sorted(scores, reverse=True) and "judge" in review.rule
    # the integer part counts the axes where the judge differs from gold, as the CSV review loop counts them
    per_item = Counter(d["item_id"] for d in disagreements(record))
    gold = load_gold(BUNDLED["eval"])
    for it in review.items:
        assert int(it.disagreement) == per_item[it.id]
        assert f"judge≠gold on {per_item[it.id]} ax" in it.reason
        assert it.gold == it.prefill == gold.labels[GOLD][it.id]
        assert it.annotators == {a: gold.labels[a][it.id] for a in ("annotator_a", "annotator_b")}
        assert it.question == gold.items[it.id].question and it.fields["id"] == it.id
        assert not set(it.fields) & {*review.axes, "annotator"}
        assert set(it.labelers) == {"judge", "knn", "student", "cues", "shape"}
        assert it.labelers["judge"]["labels"] == next(r["judge"] for r in record["items"] if r["id"] == it.id)
        assert all(0.0 <= c <= 1.0 for c in it.labelers["knn"]["confidence"].values() if c is not None)
        assert set(it.labelers["shape"]["labels"]) == set(review.axes)  # None on the axes the rules leave out
    assert load_review(review.id) == review
    assert review.id in [r["id"] for r in list_reviews()]


def test_bad_ids_axes_and_labels_are_refused_and_nothing_is_written(review):
    item = review.items[0]
    for bad in ("../calibrations", "rev-1-zzzzzz", "", "rev-20250101T000000-abc"):
        with pytest.raises(RecordError, match="review id"):
            save_decision(bad, item.id, {"task_type": "short_answer"}, "alice")
    with pytest.raises(RecordError, match="rev-20990101T000000-abcdef"):
        load_review("rev-20990101T000000-abcdef")
    with pytest.raises(RecordError, match="'no-such-item'"):
        save_decision(review.id, "no-such-item", {"task_type": "short_answer"}, "alice")
    with pytest.raises(ConfigError, match="axis 'colour'"):
        save_decision(review.id, item.id, {"colour": "red"}, "alice")
    with pytest.raises(ConfigError, match="task_type: unknown label 'essay_question'; allowed: "):
        save_decision(review.id, item.id, {"task_type": "essay_question"}, "alice")
    with pytest.raises(ConfigError, match="solving_operations: unknown label.*'juggling'"):
        save_decision(review.id, item.id, {"solving_operations": ["arithmetic", "juggling"]}, "alice")
    with pytest.raises(ConfigError, match="reviewer 'gold'"):
        save_decision(review.id, item.id, {"task_type": item.prefill["task_type"]}, "gold")
    right = next(it for it in review.items if not (it.correct is False and it.model_output is not None))
    with pytest.raises(ConfigError, match="failure_mode applies only to an answer scored wrong"):
        save_decision(review.id, right.id, {"failure_mode": "reasoning_error"}, "alice")
    assert decisions(review.id) == {} and progress(review.id)["n_reviewed"] == 0


def test_the_latest_decision_wins_and_export_writes_a_new_gold_version(review, record, home):
    tax = load_taxonomy()
    first, second = review.items[0], review.items[1]
    task_ids = tax.axis("eval", "task_type").ids
    other = next(t for t in task_ids if t != first.prefill["task_type"])
    ops = [next(o for o in tax.axis("eval", "solving_operations").ids if o not in first.prefill["solving_operations"])]
    save_decision(review.id, first.id, {"task_type": first.prefill["task_type"]}, "alice")
    now = save_decision(review.id, first.id, {"task_type": other, "solving_operations": ops}, "alice")
    assert now["task_type"]["label"] == other and now["solving_operations"]["label"] == ops
    save_decision(review.id, second.id, dict(second.prefill), "alice")  # confirmed as it was
    save_decision(review.id, second.id, {"output_constraint": second.prefill["output_constraint"]}, "bob")
    lines = (reviews_dir() / review.id / "decisions.jsonl").read_text().splitlines()
    assert len(lines) == 3 + len(second.prefill) + 1 and all(json.loads(x)["at"] for x in lines)
    assert decisions(review.id)[first.id]["task_type"]["label"] == other
    assert decisions(review.id)[second.id]["output_constraint"]["reviewer"] == "bob"
    assert progress(review.id) == {"n_items": 8, "n_reviewed": 2, "n_complete": 1, "n_changed": 2}
    # a line cut short by a crash is ignored when read and cut off by the next save
    log = reviews_dir() / review.id / "decisions.jsonl"
    with log.open("a") as f:
        f.write('{"item_id": "' + first.id + '", "axis": "task_')
    assert decisions(review.id)[first.id]["task_type"]["label"] == other
    save_decision(review.id, second.id, {"output_constraint": second.prefill["output_constraint"]}, "bob")
    assert [json.loads(x)["reviewer"] for x in log.read_text().splitlines()[-2:]] == ["bob", "bob"]

    path = export_gold(review.id, "alice")
    assert path.parent == reviews_dir() / review.id and path.name == "gold_alice_1.jsonl"
    old, new = load_gold(BUNDLED["eval"]), load_gold(path)
    assert sorted(new.items) == sorted(old.items)
    want = first.prefill | {"task_type": other, "solving_operations": ops}
    assert new.labels[GOLD][first.id] == new.labels["alice"][first.id] == want
    assert new.labels[GOLD][second.id] == new.labels["alice"][second.id] == second.prefill
    assert sorted(new.labels["alice"]) == sorted([first.id, second.id])
    assert all(new.labels[GOLD][i] == old.labels[GOLD][i] for i in old.items if i != first.id)
    assert new.labels["annotator_a"] == old.labels["annotator_a"]
    # a second export never overwrites the first; an existing -o is refused; the exports are recorded
    before = path.read_bytes()
    again = export_gold(review.id, "alice")
    assert again.name == "gold_alice_2.jsonl" and path.read_bytes() == before
    with pytest.raises(ConfigError, match="exists; refusing to overwrite"):
        export_gold(review.id, "alice", path)
    assert [e["path"] for e in load_review(review.id).exports] == [str(path), str(again)]
    with pytest.raises(ConfigError, match="no decision by reviewer 'carol'.*alice, bob"):
        export_gold(review.id, "carol")


def test_seed_review_picks_for_coverage_then_disagreement(bench, home):
    review = create_seed_review(bench, n=10, benchmark="newbench")
    everything = create_seed_review(bench, n=1000, benchmark="newbench")
    n_rows = len(bench.read_text().splitlines())
    assert len(review.items) == 10 and len(everything.items) == n_rows
    assert review.source == "seed" and review.benchmark == "newbench" and "coverage" in review.rule
    assert review.rule.startswith("10 of 36 items")
    prefill = {it.id: it.prefill for it in everything.items}
    in_order = [json.loads(x)["id"] for x in bench.read_text().splitlines()]

    def covered(ids):
        return len(set().union(*(pairs(prefill[i]) for i in ids)))

    picked = [it.id for it in review.items]
    assert covered(picked) >= covered(in_order[:10])
    assert [it.prefill for it in review.items] == [prefill[i] for i in picked]  # labelers are deterministic
    axes = {a.name: a for a in load_taxonomy().axes("eval")}
    for it in review.items:
        assert it.gold is None and it.annotators == {} and it.benchmark == "newbench" and it.reason
        assert set(it.labelers) == {"knn", "student", "cues", "shape"}
        wrong = it.correct is False
        for name, value in it.prefill.items():
            if axes[name].only_when and not wrong:
                assert value is None
            else:
                assert value is not None and all(v in axes[name].ids for v in (value if isinstance(value, list) else [value]))
    # the greedy picks come first, each adding pairs
    assert review.items[0].reason.startswith("covers ")


def test_seed_export_adds_gold_and_annotator_rows_to_the_bundled_sets(bench, home):
    review = create_seed_review(bench, n=4, benchmark="newbench")
    a, b = review.items[0], review.items[1]
    save_decision(review.id, a.id, dict(a.prefill), "dana")
    save_decision(review.id, b.id, {"task_type": b.prefill["task_type"]}, "dana")
    out = home / "seed_gold.jsonl"
    assert export_gold(review.id, "dana", out) == out
    gold, bundled = load_gold(out), load_gold(BUNDLED_ALL["eval"])
    assert set(gold.items) == set(bundled.items) | {a.id, b.id}
    for it in (a, b):
        assert gold.labels[GOLD][it.id] == gold.labels["dana"][it.id] == it.prefill
        assert gold.sources[it.id] == "newbench"
        assert gold.items[it.id].question == it.question


def test_review_commands(record, bench, home):
    env = {"SLICELAB_HOME": str(home), "COLUMNS": "200"}
    made = run_cli("review", "from-calibration", record["id"], "--labeler", "knn", env=env)
    assert made.returncode == 0, made.stderr
    rid = next(r["id"] for r in list_reviews() if r["source"] == "calibration" and load_review(r["id"]).labeler == "knn")
    assert rid in made.stdout and "axes where knn differs from gold" in " ".join(made.stdout.split())
    listed = run_cli("review", "list", "--json", env=env)
    rows = json.loads(listed.stdout)
    assert listed.returncode == 0 and rows[0]["id"] == list_reviews()[0]["id"] and rid in [r["id"] for r in rows]
    bad = run_cli("review", "export", "rev-nope", "--reviewer", "alice", env=env)
    assert bad.returncode == 2 and "error:" in bad.stderr and "'rev-nope' is not a review id" in bad.stderr
    none = run_cli("review", "export", rid, "--reviewer", "alice", env=env)
    assert none.returncode == 2 and "no decision by reviewer 'alice'" in none.stderr
    item = load_review(rid).items[0]
    save_decision(rid, item.id, {"task_type": item.prefill["task_type"]}, "alice")
    done = run_cli("review", "export", rid, "--reviewer", "alice", env=env)
    assert done.returncode == 0, done.stderr
    assert load_gold(done.stdout.strip()).labels["alice"][item.id] == item.prefill
    seeded = run_cli("review", "seed", str(bench), "--n", "3", "--benchmark", "newbench", env=env)
    assert seeded.returncode == 0, seeded.stderr
    assert "3 eval items (seed)" in " ".join(seeded.stdout.split())
    unknown = run_cli("review", "from-calibration", record["id"], "--labeler", "oracle", env=env)
    assert unknown.returncode == 2 and "labeler 'oracle'" in unknown.stderr and "available: judge" in unknown.stderr


def _copy(review):
    """A new review set with the items of ``review`` and no decisions."""
    from dataclasses import replace

    from slicelab.calibration.review_store import new_review_id, save_review

    copy = replace(review, id=new_review_id(), exports=[])
    while (reviews_dir() / copy.id).exists():
        copy = replace(copy, id=new_review_id())
    save_review(copy)
    return copy


@pytest.mark.parametrize("bad", ["{}", "null", '{"item_id": "x", "axis": "task_type", "label": 3, '
                                               '"reviewer": "a", "at": "t"}', '{"item_id": "x", "axi'])
def test_a_damaged_decision_line_is_named_and_never_hides_other_reviews(review, home, bad):
    damaged, fine = _copy(review), _copy(review)
    item = damaged.items[0]
    for reviewer in ("alice", "bob", "carol"):
        save_decision(damaged.id, item.id, {"task_type": item.prefill["task_type"]}, reviewer)
    log = reviews_dir() / damaged.id / "decisions.jsonl"
    lines = log.read_text().split("\n")
    lines[1] = bad
    log.write_text("\n".join(lines))
    size = log.stat().st_size
    where = rf"line 2: .*{damaged.id}/decisions.jsonl"
    for call in (lambda: decisions(damaged.id), lambda: progress(damaged.id), lambda: export_gold(damaged.id, "alice"),
                 lambda: save_decision(damaged.id, item.id, {"task_type": item.prefill["task_type"]}, "alice")):
        with pytest.raises(RecordError, match=where):
            call()
    assert log.stat().st_size == size  # a refused save appends nothing
    rows = {r["id"]: r for r in list_reviews()}
    assert "line 2" in rows[damaged.id]["error"] and rows[damaged.id]["n_items"] == len(review.items)
    assert rows[fine.id]["error"] is None and rows[fine.id]["n_reviewed"] == 0
    listed = run_cli("review", "list", "--json", env={"SLICELAB_HOME": str(home)})
    assert listed.returncode == 0, listed.stderr
    assert "line 2" in {r["id"]: r for r in json.loads(listed.stdout)}[damaged.id]["error"]


def test_a_complete_last_line_without_its_newline_is_kept(review):
    copy = _copy(review)
    a, b = copy.items[0], copy.items[1]
    save_decision(copy.id, a.id, {"task_type": a.prefill["task_type"]}, "alice")
    log = reviews_dir() / copy.id / "decisions.jsonl"
    log.write_text(log.read_text().rstrip("\n"))
    assert decisions(copy.id)[a.id]["task_type"]["reviewer"] == "alice"
    now = save_decision(copy.id, b.id, {"task_type": b.prefill["task_type"]}, "alice")
    assert now["task_type"]["label"] == b.prefill["task_type"]
    assert set(decisions(copy.id)) == {a.id, b.id} and len(log.read_text().splitlines()) == 2


def test_an_annotator_name_or_a_name_with_a_newline_is_refused(review, home):
    copy = _copy(review)
    item = copy.items[0]
    with pytest.raises(ConfigError, match=r"reviewer 'bob\\n' is not allowed"):
        save_decision(copy.id, item.id, {"task_type": item.prefill["task_type"]}, "bob\n")
    save_decision(copy.id, item.id, {"task_type": item.prefill["task_type"]}, "annotator_a")
    with pytest.raises(ConfigError, match="'annotator_a' is an annotator of the gold set"):
        export_gold(copy.id, "annotator_a")
    assert not list((reviews_dir() / copy.id).glob("gold_*"))
    bad = run_cli("review", "export", copy.id, "--reviewer", "annotator_b", env={"SLICELAB_HOME": str(home)})
    assert bad.returncode == 2 and "'annotator_b' is an annotator of the gold set" in bad.stderr
    # a reviewer's own exported rows are marked, so the same reviewer can review a later version again
    from slicelab.calibration.review_rows import independent_annotators

    save_decision(copy.id, item.id, {"task_type": item.prefill["task_type"]}, "erin")
    path = export_gold(copy.id, "erin")
    assert independent_annotators([path]) == {"annotator_a", "annotator_b"}


def test_the_default_labeler_is_the_judge_else_knn_and_export_counts_the_reviewers_items(review, home):
    from slicelab.calibration.offline import bundled_record

    assert review.labeler == "judge"
    offline = create_calibration_review(bundled_record("eval", n_boot=50))  # a record without a judge
    assert offline.labeler == "knn" and "knn differs from gold" in offline.rule
    copy = _copy(review)
    a, b = copy.items[0], copy.items[1]
    save_decision(copy.id, a.id, {"task_type": a.prefill["task_type"]}, "alice")
    save_decision(copy.id, b.id, {"task_type": b.prefill["task_type"]}, "bob")
    assert progress(copy.id)["n_reviewed"] == 2 and progress(copy.id, "alice")["n_reviewed"] == 1
    done = run_cli("review", "export", copy.id, "--reviewer", "alice", env={"SLICELAB_HOME": str(home)})
    assert done.returncode == 0 and "1 of 8 items reviewed by alice" in " ".join(done.stderr.split())
