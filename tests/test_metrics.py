"""MMSA metric definitions on hand-made edge cases (and sklearn as an oracle for weighted F1 when present)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from dmd_pipeline.training.metrics import (
    REGRESSION_KEYS,
    classification_metrics,
    compute_metrics,
    multiclass_acc,
    pearson,
    regression_metrics,
    weighted_f1,
)


def test_weighted_f1_by_hand():
    # class 1: tp=2, fp=1, fn=1 -> p=2/3 r=2/3 f=2/3, support 3; class 0: tp=1, fp=1, fn=1 -> f=1/2, support 2
    y_true = np.array([1, 1, 1, 0, 0])
    y_pred = np.array([1, 1, 0, 0, 1])
    assert weighted_f1(y_true, y_pred) == pytest.approx((3 * (2 / 3) + 2 * 0.5) / 5)
    # a class never predicted has F1 0 (sklearn's zero_division=0 behaviour)
    assert weighted_f1(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0])) == pytest.approx((2 * (2 / 3) + 0) / 4)
    # a class that is only predicted has no weight but still lowers the others' precision
    assert weighted_f1(np.array([0, 0]), np.array([0, 2])) == pytest.approx(2 / 3)
    assert weighted_f1(np.array([1, 0]), np.array([1, 0])) == 1.0
    assert math.isnan(weighted_f1(np.array([]), np.array([])))


def test_weighted_f1_matches_sklearn():
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    for _ in range(20):
        t, p = rng.integers(0, 4, 30), rng.integers(0, 4, 30)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = skm.f1_score(t, p, average="weighted", zero_division=0)
        assert weighted_f1(t, p) == pytest.approx(ref, abs=1e-12)


def test_zero_labels_split_has0_and_non0():
    true = np.array([0.0, 0.0, 1.0, -1.0])
    pred = np.array([-0.5, 0.5, 0.7, 0.2])
    m = regression_metrics(pred, true)
    # Has0: label 0 counts as >= 0 -> truths [T,T,T,F], preds [F,T,T,T] -> 2/4
    assert m["Has0_acc_2"] == pytest.approx(0.5)
    # Non0: zeros dropped -> truths [T,F], preds [T,T] -> 1/2
    assert m["Non0_acc_2"] == pytest.approx(0.5)
    assert m["Non0_F1_score"] == pytest.approx(weighted_f1(np.array([1, 0]), np.array([1, 1])))
    assert m["MAE"] == pytest.approx(np.mean(np.abs(pred - true)))
    all_zero = regression_metrics(np.array([0.3, -0.2]), np.zeros(2))
    assert math.isnan(all_zero["Non0_acc_2"]) and math.isnan(all_zero["Non0_F1_score"])
    assert all_zero["Has0_acc_2"] == pytest.approx(0.5)


def test_round_half_to_even_and_clipping():
    # np.round: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> -0
    assert multiclass_acc(np.array([0.5, 1.5, 2.5, -0.5]), np.array([0.0, 2.0, 2.0, 0.0]), 3.0) == 1.0
    assert multiclass_acc(np.array([0.5]), np.array([1.0]), 3.0) == 0.0
    # clipping: 5 and 3 both clip to 3; -2.7 vs -2 agree on [-2,2] (clip) but not on [-3,3] (round -> -3)
    pred, true = np.array([5.0, -2.7]), np.array([3.0, -2.0])
    m = regression_metrics(pred, true)
    assert m["Mult_acc_7"] == pytest.approx(0.5)
    assert m["Mult_acc_5"] == pytest.approx(1.0)


def test_corr_constant_and_pearson():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from a 0/0
        m = regression_metrics(np.full(5, 0.3), np.array([-1.0, 0.0, 1.0, 2.0, 3.0]))
    assert m["Corr"] == 0.0
    assert pearson(np.array([1.0]), np.array([2.0])) == 0.0
    x = np.array([0.1, 0.4, -2.0, 1.3, 0.0])
    y = np.array([0.0, 1.0, -1.5, 2.0, -0.3])
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert pearson(x, -2 * x + 1) == pytest.approx(-1.0)


def test_perfect_and_tensor_inputs():
    y = torch.tensor([[-2.4], [-0.6], [0.0], [1.2], [3.0]])
    m = compute_metrics(y, y, num_classes=1)
    assert set(m) == set(REGRESSION_KEYS)
    assert all(m[k] == pytest.approx(1.0) for k in REGRESSION_KEYS if k != "MAE")
    assert m["MAE"] == 0.0
    with pytest.raises(ValueError, match="differ in size"):
        regression_metrics(np.zeros(3), np.zeros(4))


def test_classification_metrics():
    logits = np.array([[3.0, 0.0, 1.0], [0.0, 2.0, 1.0], [0.0, 1.0, 5.0], [2.0, 0.0, 1.0]])
    labels = np.array([0, 1, 2, 2])
    m = classification_metrics(logits, labels)
    assert m["Acc_3"] == pytest.approx(0.75)
    assert m["F1_score_3"] == pytest.approx(weighted_f1(labels, logits.argmax(1)))
    # 2-class: neutral counted as negative; prediction = argmax(neg, pos)
    # preds2 = [0, 1, 1, 0]; true2 = [0, 0, 1, 1] -> 0.5; Non0 drops sample 1 -> [0,1,0] vs [0,1,1] -> 2/3
    assert m["Has0_acc_2"] == pytest.approx(0.5)
    assert m["Non0_acc_2"] == pytest.approx(2 / 3)
    m2 = compute_metrics(np.array([[0.2, 0.1], [0.0, 1.0]]), np.array([0, 0]), num_classes=2)
    assert m2 == {"Acc_2": 0.5, "F1_score_2": pytest.approx(weighted_f1(np.array([0, 0]), np.array([0, 1])))}
