"""Metrics against scikit-learn on fixed arrays."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from hftpipe.evaluation.metrics import classification_metrics, confusion_matrix, macro_f1_from_confusion

LABELS = [0, 1, 2]

CASES = {
    "mixed": (np.array([0, 1, 2, 2, 1, 0, 1, 2, 0, 0, 1, 2]), np.array([0, 2, 2, 1, 1, 0, 0, 2, 1, 0, 1, 1])),
    "never_predicts_up": (np.array([0, 1, 2, 2, 1, 0, 2]), np.array([0, 1, 1, 0, 1, 0, 1])),
    "constant_prediction": (np.array([0, 1, 2, 2, 1]), np.array([1, 1, 1, 1, 1])),
    "perfect": (np.array([2, 0, 1, 1]), np.array([2, 0, 1, 1])),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_scikit_learn(case: str) -> None:
    y, p = CASES[case]
    m = classification_metrics(y, p)
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, p, labels=LABELS, average="macro", zero_division=0))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert m["mcc"] == pytest.approx(skm.matthews_corrcoef(y, p))
    assert m["confusion"] == skm.confusion_matrix(y, p, labels=LABELS).tolist()
    prec, rec, f1, sup = skm.precision_recall_fscore_support(y, p, labels=LABELS, zero_division=0)
    for i, name in enumerate(("down", "stationary", "up")):
        pc = m["per_class"][name]
        assert (pc["precision"], pc["recall"], pc["f1"], pc["support"]) == pytest.approx(
            (prec[i], rec[i], f1[i], sup[i]))


def test_random_large_arrays_match() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 5000)
    p = np.where(rng.random(5000) < 0.4, y, rng.integers(0, 3, 5000))
    m = classification_metrics(y, p)
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, p, average="macro"))
    assert m["mcc"] == pytest.approx(skm.matthews_corrcoef(y, p))


def test_stacked_confusions_give_each_macro_f1() -> None:
    stack = np.stack([confusion_matrix(*CASES[c]) for c in sorted(CASES)])
    expected = [classification_metrics(*CASES[c])["macro_f1"] for c in sorted(CASES)]
    assert np.asarray(macro_f1_from_confusion(stack)) == pytest.approx(expected)


def test_undefined_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="undefined labels must be dropped"):
        classification_metrics(np.array([0, -1]), np.array([0, 1]))
