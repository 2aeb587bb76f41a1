"""Tests for calibration.metrics against hand-computed values.

Kappa: kappa = (po - pe) / (1 - pe), po = observed agreement,
pe = sum_k p_true(k) * p_pred(k) (Cohen 1960).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from slicelab.calibration.metrics import (
    EMPTY_SPLIT,
    INVALID,
    NONE_CLASS,
    coverage_curve,
    krippendorff_alpha,
    operation_set_metrics,
    single_label_metrics,
)
from slicelab.service.stats import bootstrap_ci, wilson_interval

_PLAIN = (str, int, float, bool, type(None))


def assert_plain_json(obj) -> str:
    """Result is plain Python (no numpy types), finite, and strict-JSON serialisable."""

    def walk(x, path="$"):
        if isinstance(x, dict):
            for k, v in x.items():
                assert type(k) is str, f"{path}: key {k!r} is {type(k)}"
                walk(v, f"{path}.{k}")
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(v, f"{path}[{i}]")
        else:
            assert type(x) in _PLAIN, f"{path}: {type(x)}"
            if type(x) is float:
                assert math.isfinite(x), f"{path}: {x}"

    walk(obj)
    return json.dumps(obj, allow_nan=False)


# --------------------------------------------------------------------------- single label


def test_binary_kappa_accuracy_f1_by_hand():
    labels = ["yes", "no"]
    y_true = ["yes"] * 6 + ["no"] * 4
    y_pred = ["yes"] * 5 + ["no"] + ["yes"] + ["no"] * 3
    # confusion (rows gold, cols judge): yes: [5, 1]; no: [1, 3]
    # po = (5 + 3) / 10 = 0.8
    # gold marginals yes .6 no .4; judge marginals yes .6 no .4
    # pe = .6*.6 + .4*.4 = .52 ; kappa = (.8 - .52) / (1 - .52) = .28 / .48 = 0.58333
    # F1 yes: P = 5/6, R = 5/6 -> 5/6 ; F1 no: P = 3/4, R = 3/4 -> 3/4
    # macro-F1 = (5/6 + 3/4) / 2 = 19/24 = 0.79167
    r = single_label_metrics(y_true, y_pred, labels, n_boot=200)
    assert_plain_json(r)
    assert r["n"] == 10 and r["n_invalid"] == 0
    assert r["accuracy"] == pytest.approx(0.8)
    assert r["cohen_kappa"] == pytest.approx(0.28 / 0.48)
    assert r["macro_f1"] == pytest.approx(19 / 24)
    assert r["per_class"]["yes"] == pytest.approx(
        {"precision": 5 / 6, "recall": 5 / 6, "f1": 5 / 6, "support": 6}
    )
    assert r["per_class"]["no"] == pytest.approx(
        {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4}
    )
    assert r["confusion"] == {"labels": ["yes", "no"], "matrix": [[5, 1], [1, 3]]}
    assert r["undefined"] == {}
    # accuracy_ci is the Wilson interval of 8/10
    assert r["accuracy_ci"] == pytest.approx(list(wilson_interval(8, 10)))


def test_three_class_kappa_by_hand():
    labels = ["a", "b", "c"]
    y_true = list("aaaabbbccc")
    y_pred = list("aaabbbccca")
    # confusion: a: [3, 1, 0]; b: [0, 2, 1]; c: [1, 0, 2]
    # po = (3 + 2 + 2) / 10 = 0.7
    # gold marginals a .4 b .3 c .3 ; judge marginals a .4 b .3 c .3
    # pe = .16 + .09 + .09 = .34 ; kappa = (.7 - .34) / .66 = 0.545454...
    # F1: a P 3/4 R 3/4 -> .75 ; b P 2/3 R 2/3 -> 2/3 ; c P 2/3 R 2/3 -> 2/3
    # macro-F1 = (.75 + 2/3 + 2/3) / 3 = 0.694444
    r = single_label_metrics(y_true, y_pred, labels, n_boot=200)
    assert_plain_json(r)
    assert r["accuracy"] == pytest.approx(0.7)
    assert r["cohen_kappa"] == pytest.approx(0.36 / 0.66)
    assert r["macro_f1"] == pytest.approx((0.75 + 2 / 3 + 2 / 3) / 3)
    assert r["confusion"]["matrix"] == [[3, 1, 0], [0, 2, 1], [1, 0, 2]]


def test_constant_labels_kappa_undefined():
    # both sides use only "x": po = 1, pe = 1 -> kappa = 0/0, undefined
    r = single_label_metrics(["x"] * 5, ["x"] * 5, ["x", "y"], n_boot=50)
    assert_plain_json(r)
    assert r["accuracy"] == 1.0
    assert r["cohen_kappa"] is None
    assert r["cohen_kappa_ci"] is None
    assert "cohen_kappa" in r["undefined"] and r["undefined"]["cohen_kappa"]
    assert "cohen_kappa_ci" in r["undefined"]
    assert r["macro_f1"] == 1.0
    assert r["confusion"] == {"labels": ["x"], "matrix": [[5]]}


def test_label_one_rater_never_used():
    labels = ["a", "b", "c", "d"]  # "d" used by nobody, "c" never predicted
    y_true = list("aabbc")
    y_pred = list("aabbb")
    # po = 4/5 = .8 ; gold a .4 b .4 c .2 ; judge a .4 b .6 c 0
    # pe = .16 + .24 + 0 = .40 ; kappa = (.8 - .4) / .6 = 2/3
    # F1: a 1 ; b P 2/3 R 1 -> 0.8 ; c P 0/0 -> 0 (zero_division) R 0 -> 0
    # macro over present {a, b, c} = (1 + .8 + 0) / 3 = 0.6 ; "d" is left out
    r = single_label_metrics(y_true, y_pred, labels, n_boot=100)
    assert_plain_json(r)
    assert r["cohen_kappa"] == pytest.approx(2 / 3)
    assert r["macro_f1"] == pytest.approx(0.6)
    assert set(r["per_class"]) == {"a", "b", "c"}
    assert r["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert r["confusion"] == {
        "labels": ["a", "b", "c"],
        "matrix": [[2, 0, 0], [0, 2, 0], [0, 1, 0]],
    }


def test_invalid_predictions_are_a_class():
    labels = ["yes", "no"]
    y_true = ["yes", "yes", "no", "no"]
    y_pred = ["yes", None, "no", "maybe"]  # None and unknown -> __invalid__
    # mapped judge: yes, inv, no, inv ; accuracy = 2/4 = .5
    # kappa over {yes, no, inv}: po = .5 ; gold yes .5 no .5 inv 0 ;
    # judge yes .25 no .25 inv .5 ; pe = .125 + .125 + 0 = .25
    # kappa = (.5 - .25) / .75 = 1/3   (vs 1.0 had the judge not failed)
    # F1: yes P 1 R .5 -> 2/3 ; no 2/3 ; inv P 0 R 0 -> 0 ; macro = (4/3) / 3 = 4/9
    r = single_label_metrics(y_true, y_pred, labels, n_boot=100)
    assert_plain_json(r)
    assert r["n"] == 4 and r["n_invalid"] == 2
    assert r["accuracy"] == pytest.approx(0.5)
    assert r["cohen_kappa"] == pytest.approx(1 / 3)
    assert r["macro_f1"] == pytest.approx(4 / 9)
    assert r["confusion"] == {
        "labels": ["yes", "no", INVALID],
        "matrix": [[1, 0, 1], [0, 1, 1], [0, 0, 0]],
    }
    assert r["per_class"][INVALID] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}

    clean = single_label_metrics(y_true, ["yes", "yes", "no", "no"], labels, n_boot=100)
    assert clean["accuracy"] == 1.0 and clean["cohen_kappa"] == 1.0
    assert r["accuracy"] < clean["accuracy"] and r["cohen_kappa"] < clean["cohen_kappa"]


def test_empty_split():
    r = single_label_metrics([], [], ["a", "b"])
    assert_plain_json(r)
    assert r["n"] == 0 and r["n_invalid"] == 0
    for m in ("accuracy", "accuracy_ci", "cohen_kappa", "cohen_kappa_ci", "macro_f1"):
        assert r[m] is None
        assert r["undefined"][m] == EMPTY_SPLIT
    assert r["per_class"] == {} and r["confusion"] == {"labels": [], "matrix": []}


def test_single_item_has_no_bootstrap_ci():
    r = single_label_metrics(["a"], ["b"], ["a", "b"])
    assert_plain_json(r)
    # po = 0, pe = 1*0 + 0*1 = 0 -> kappa = 0
    assert r["cohen_kappa"] == 0.0
    assert r["cohen_kappa_ci"] is None
    assert r["undefined"]["cohen_kappa_ci"] == "fewer than 2 items"


def test_single_label_input_errors():
    with pytest.raises(ValueError):
        single_label_metrics(["a"], ["a", "b"], ["a", "b"])  # length mismatch
    with pytest.raises(ValueError):
        single_label_metrics(["z"], ["a"], ["a", "b"])  # gold not in labels
    with pytest.raises(ValueError):
        single_label_metrics(["a"], ["a"], ["a", INVALID])  # reserved class


def test_kappa_bootstrap_ci_contains_estimate_and_is_deterministic():
    y_true = list("aaaabbbccc") * 3
    y_pred = list("aaabbbccca") * 3
    r1 = single_label_metrics(y_true, y_pred, ["a", "b", "c"], n_boot=300, seed=7)
    r2 = single_label_metrics(y_true, y_pred, ["a", "b", "c"], n_boot=300, seed=7)
    assert_plain_json(r1)
    lo, hi = r1["cohen_kappa_ci"]
    assert lo <= r1["cohen_kappa"] <= hi
    assert lo < hi
    assert r1["cohen_kappa_ci"] == r2["cohen_kappa_ci"]


# --------------------------------------------------------------------------- bootstrap / Wilson


def test_bootstrap_ci_helper():
    data = np.arange(20, dtype=float)

    def mean(idx):
        return float(np.mean(data[idx]))

    a = bootstrap_ci(mean, 20, n_boot=500, seed=3)
    b = bootstrap_ci(mean, 20, n_boot=500, seed=3)
    assert a == b
    assert a[0] <= 9.5 <= a[1]
    assert all(type(x) is float for x in a)
    assert bootstrap_ci(mean, 1, n_boot=10) is None  # fewer than 2 items
    assert bootstrap_ci(lambda idx: None, 20, n_boot=10) is None  # never defined
    assert bootstrap_ci(lambda idx: float("nan"), 20, n_boot=10) is None


def test_wilson_interval():
    lo, hi = wilson_interval(8, 10)
    try:
        from statsmodels.stats.proportion import proportion_confint
    except ImportError:  # hand value: p = .8, z = 1.95996
        # centre = (.8 + z^2/20) / (1 + z^2/10) = .99207 / 1.38415 = .71674
        # half = z * sqrt(.8*.2/10 + z^2/400) / 1.38415 = .22658 -> (.49016, .94332)
        assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    else:
        for k, n in [(8, 10), (0, 5), (5, 5), (37, 120)]:
            exp = proportion_confint(k, n, alpha=0.05, method="wilson")
            assert wilson_interval(k, n) == pytest.approx(exp, abs=1e-10)
        exp = proportion_confint(8, 10, alpha=0.10, method="wilson")
        assert wilson_interval(8, 10, confidence=0.90) == pytest.approx(exp, abs=1e-10)
    assert (lo, hi) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    assert_plain_json(list(wilson_interval(8, 10)))


# --------------------------------------------------------------------------- operation sets


def test_jaccard_cases():
    labels = ["a", "b", "c", "d"]
    both_empty = operation_set_metrics([[]], [[]], labels, n_boot=10)
    assert both_empty["mean_jaccard"] == 1.0
    # no operation anywhere -> F1 undefined
    assert both_empty["micro_f1"] is None and "micro_f1" in both_empty["undefined"]
    assert both_empty["macro_f1"] is None and "macro_f1" in both_empty["undefined"]
    assert_plain_json(both_empty)

    disjoint = operation_set_metrics([["a", "b"]], [["c"]], labels, n_boot=10)
    assert disjoint["mean_jaccard"] == 0.0
    assert_plain_json(disjoint)

    # {a,b,c} vs {b,c,d}: |∩| = 2, |∪| = 4 -> 0.5
    partial = operation_set_metrics([["a", "b", "c"]], [["b", "c", "d"]], labels, n_boot=10)
    assert partial["mean_jaccard"] == pytest.approx(0.5)
    assert_plain_json(partial)


def test_operation_sets_by_hand():
    labels = ["a", "b", "c", "d"]
    true_sets = [["a", "b"], ["c"], [], ["a"]]
    pred_sets = [["a"], ["d"], [], None]
    # Jaccard: 1/2, 0 (disjoint), 1 (both empty), 0 (invalid) -> mean = 1.5/4 = .375
    # indicator cells: TP = 1 (item1 a); FP = 1 (item2 d); FN = 3 (item1 b, item2 c, item4 a)
    # micro P = 1/2, R = 1/4, F1 = 2*.5*.25/.75 = 1/3
    # macro over present {a,b,c,d}: a TP1 FN1 -> P 1 R .5 F1 2/3 ; b, c, d -> 0
    # macro = (2/3) / 4 = 1/6
    # primary: gold a, c, __none__, a ; judge a, d, __none__, __invalid__ -> accuracy 2/4
    r = operation_set_metrics(true_sets, pred_sets, labels, n_boot=100)
    assert_plain_json(r)
    assert r["n"] == 4 and r["n_invalid"] == 1
    assert r["mean_jaccard"] == pytest.approx(0.375)
    assert r["micro_f1"] == pytest.approx(1 / 3)
    assert r["macro_f1"] == pytest.approx(1 / 6)
    p = r["primary"]
    assert p["n"] == 4 and p["n_invalid"] == 1
    assert p["accuracy"] == pytest.approx(0.5)
    assert p["confusion"]["labels"] == ["a", "c", "d", NONE_CLASS, INVALID]
    # primary kappa over {a,b,c,d,__none__,inv}: po = .5 ;
    # gold a .5 c .25 none .25 ; judge a .25 d .25 none .25 inv .25
    # pe = .125 + 0 + 0 + .0625 = .1875 ; kappa = (.5 - .1875) / .8125 = 0.384615
    assert p["cohen_kappa"] == pytest.approx(0.3125 / 0.8125)


def test_operation_pred_with_unknown_id_is_invalid():
    labels = ["a", "b"]
    r = operation_set_metrics([["a"], ["b"]], [["a"], ["b", "zzz"]], labels, n_boot=50)
    assert_plain_json(r)
    assert r["n_invalid"] == 1
    # item2 invalid -> Jaccard 0, empty set for F1: TP 1 (a), FN 1 (b)
    assert r["mean_jaccard"] == pytest.approx(0.5)
    # micro P = 1, R = .5 -> 2/3 ; macro: a 1, b 0 -> .5
    assert r["micro_f1"] == pytest.approx(2 / 3)
    assert r["macro_f1"] == pytest.approx(0.5)
    assert r["primary"]["confusion"]["labels"] == ["a", "b", INVALID]


def test_operation_sets_empty():
    r = operation_set_metrics([], [], ["a"])
    assert_plain_json(r)
    assert r["n"] == 0 and r["primary"]["n"] == 0
    for m in ("mean_jaccard", "micro_f1", "macro_f1"):
        assert r[m] is None and r["undefined"][m] == EMPTY_SPLIT


# --------------------------------------------------------------------------- Krippendorff


def test_krippendorff_2011_nominal_example_with_missing_data():
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability",
    # section C: 4 observers, 12 units, nominal, missing data -> alpha = 0.743
    table = {
        "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    }
    ratings = {
        rater: {f"u{j + 1:02d}": (None if v is None else str(v)) for j, v in enumerate(row)}
        for rater, row in table.items()
    }
    r = krippendorff_alpha(ratings)
    assert_plain_json(r)
    assert round(r["alpha"], 3) == 0.743
    assert r["n_raters"] == 4 and r["n_items"] == 12
    assert r["n_pairable_items"] == 11  # unit 12 has a single value
    assert r["reason"] is None


def test_krippendorff_perfect_agreement():
    ratings = {
        "a": {"1": "x", "2": "y", "3": "z", "4": "x"},
        "b": {"1": "x", "2": "y", "3": "z", "4": "x"},
    }
    r = krippendorff_alpha(ratings)
    assert_plain_json(r)
    assert r["alpha"] == pytest.approx(1.0)


def test_krippendorff_missing_ratings_by_hand():
    ratings = {
        "A": {"i1": "x", "i2": "y", "i3": "x", "i4": "y"},
        "B": {"i1": "x", "i2": "y", "i3": "y", "i4": None},
        "C": {"i2": "y"},
    }
    # i4 has one value: not pairable. Coincidences (pairs / (m_u - 1)):
    # i1 (m=2): o_xx += 2 ; i2 (m=3): 6 ordered y-y pairs / 2 -> o_yy += 3 ;
    # i3 (m=2): o_xy += 1, o_yx += 1
    # n_x = 3, n_y = 4, n = 7 ; Do = 2/7 ; De = 2 * 3 * 4 / (7 * 6) = 4/7
    # alpha = 1 - (2/7) / (4/7) = 0.5
    r = krippendorff_alpha(ratings)
    assert_plain_json(r)
    assert r["alpha"] == pytest.approx(0.5)
    assert r["n_items"] == 4 and r["n_pairable_items"] == 3 and r["n_raters"] == 3


def test_krippendorff_ordinal_by_hand():
    order = ["low", "mid", "high"]
    ratings = {
        "A": {"1": "low", "2": "mid", "3": "high", "4": "low"},
        "B": {"1": "low", "2": "mid", "3": "high", "4": "mid"},
    }
    # o_ll = o_mm = o_hh = 2, o_lm = o_ml = 1 ; n_l = 3, n_m = 3, n_h = 2, n = 8
    # ordinal delta^2(c,k) = (sum_{g=c..k} n_g - (n_c + n_k)/2)^2:
    #   l-m: (6 - 3)^2 = 9 ; l-h: (8 - 2.5)^2 = 30.25 ; m-h: (5 - 2.5)^2 = 6.25
    # Do = (2 * 9) / 8 = 2.25
    # De = 2 * (3*3*9 + 3*2*30.25 + 3*2*6.25) / (8*7) = 600 / 56
    # alpha = 1 - 2.25 * 56 / 600 = 0.79
    r = krippendorff_alpha(ratings, level="ordinal", value_order=order)
    assert_plain_json(r)
    assert r["alpha"] == pytest.approx(0.79)
    # nominal: Do = 2/8 ; De = (64 - (9 + 9 + 4)) / 56 = .75 -> alpha = 1 - 1/3
    assert krippendorff_alpha(ratings)["alpha"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        krippendorff_alpha(ratings, level="ordinal")  # needs value_order


def test_krippendorff_undefined_cases():
    one_value = krippendorff_alpha({"a": {"1": "x", "2": "x"}, "b": {"1": "x", "2": "x"}})
    one_rater = krippendorff_alpha({"a": {"1": "x", "2": "y"}})
    unpaired = krippendorff_alpha({"a": {"1": "x"}, "b": {"2": "y"}})
    empty = krippendorff_alpha({})
    for r in (one_value, one_rater, unpaired, empty):
        assert_plain_json(r)
        assert r["alpha"] is None and r["reason"]
    assert unpaired["n_items"] == 2 and unpaired["n_pairable_items"] == 0


# --------------------------------------------------------------------------- coverage


def test_coverage_curve():
    correct = [True, True, False, True]
    conf = [0.9, 0.8, 0.7, 0.4]
    curve = coverage_curve(correct, conf, [0.0, 0.75, 0.95])
    assert_plain_json(curve)
    # t=0: all 4 covered, 3 correct ; t=.75: {.9, .8} both correct ; t=.95: none
    assert curve == [
        {"threshold": 0.0, "coverage": 1.0, "n": 4, "accuracy": 0.75},
        {"threshold": 0.75, "coverage": 0.5, "n": 2, "accuracy": 1.0},
        {"threshold": 0.95, "coverage": 0.0, "n": 0, "accuracy": None},
    ]
    assert coverage_curve([], [], [0.5]) == [
        {"threshold": 0.5, "coverage": None, "n": 0, "accuracy": None}
    ]
    with pytest.raises(ValueError):
        coverage_curve([True], [0.1, 0.2], [0.5])


def test_fast_bootstrap_kappa_equals_sklearn():
    import numpy as np
    from sklearn.metrics import cohen_kappa_score

    from slicelab.calibration.single_label import kappa_of_codes

    rng = np.random.default_rng(3)
    for _ in range(200):
        k = int(rng.integers(2, 7))
        a, b = rng.integers(0, k, 40), rng.integers(0, k, 40)
        b[:20] = a[:20]
        assert kappa_of_codes(a, b, k) == pytest.approx(cohen_kappa_score(a, b, labels=list(range(k))))
    assert kappa_of_codes(np.zeros(5, int), np.zeros(5, int), 3) is None
