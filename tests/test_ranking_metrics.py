"""ROC AUC, average precision and the reliability diagram / ECE of cnntool.metrics against scikit-learn and a
hand-computed case."""

from __future__ import annotations

import numpy as np
import pytest

from cnntool.metrics import precision_recall_curve, ranking_metrics, reliability, roc_curve, softmax


def test_roc_and_ap_match_sklearn_with_ties():
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve as sk_roc

    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    s = np.round(rng.random(300) + 0.4 * y, 2)  # rounding makes ties
    fpr, tpr, auc = roc_curve(s, y)
    assert auc == pytest.approx(roc_auc_score(y, s))
    sk_fpr, sk_tpr, _ = sk_roc(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    assert precision_recall_curve(s, y)[2] == pytest.approx(average_precision_score(y, s))


def test_ece_hand_computed():
    # four images: confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 0.6 (right); 10 bins
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 1, 0, 1])
    r = reliability(probs, labels, bins=10)
    # bin (0.8, 0.9]: conf 0.9, acc 0.5; bin (0.5, 0.6]: conf 0.6, acc 1.0
    assert r["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    assert r["count"].sum() == 4 and r["count"][8] == 2 and r["count"][5] == 2


def test_ranking_metrics_per_class_against_sklearn_and_absent_class():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    logits = rng.normal(size=(200, 3))
    labels = rng.integers(0, 2, 200)  # class 2 absent
    logits[np.arange(200), labels] += 1.0
    m = ranking_metrics(logits, labels)
    p = softmax(logits)
    for k in (0, 1):
        assert m["roc_auc"][k] == pytest.approx(roc_auc_score(labels == k, p[:, k]))
    assert np.isnan(m["roc_auc"][2]) and m["macro_roc_auc"] == pytest.approx(np.mean(m["roc_auc"][:2]))
