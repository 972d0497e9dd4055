"""Label policies on a hand-made table with known answers (thesis 4.1, Tables 6-7)."""

import numpy as np
import pandas as pd
import pytest

from cxr_augment.preprocess import labels
from cxr_augment.preprocess.labels import LabelPolicy

RAW = np.array([1.0, 0.0, -1.0, np.nan, 1.0, -1.0, np.nan, np.nan])


@pytest.mark.parametrize(
    ("uncertain", "nm", "expected"),
    [
        ("ones", 0, [1, 0, 1, 0, 1, 1, 0, 0]),
        ("zeros", 0, [1, 0, 0, 0, 1, 0, 0, 0]),
        ("ones", 1, [1, 0, 1, 1, 1, 1, 1, 1]),
        ("zeros", 1, [1, 0, 0, 1, 1, 0, 1, 1]),
        ("ignore", 0, [1, 0, np.nan, 0, 1, np.nan, 0, 0]),
        ("ignore", "ignore", [1, 0, np.nan, np.nan, 1, np.nan, np.nan, np.nan]),
        ("multiclass", 0, [1, 0, 2, 0, 1, 2, 0, 0]),
        ("self_trained", 0, [1, 0, np.nan, 0, 1, np.nan, 0, 0]),
    ],
)
def test_each_policy_maps_each_label_value(uncertain, nm, expected):
    out = labels.impute(RAW, LabelPolicy(uncertain, nm))
    np.testing.assert_array_equal(out, np.asarray(expected, dtype=float))


def test_self_trained_lists_the_uncertain_rows_to_relabel():
    np.testing.assert_array_equal(labels.relabel_rows(RAW), [2, 5])


def test_policy_names_and_slugs_round_trip():
    p = LabelPolicy("ones", 0)
    assert p.name == "FillNM(0) U-Ones"
    assert labels.parse_policy(p.slug) == p
    assert (
        labels.parse_policy({"uncertain": "zeros", "not_mentioned": 1}).name == "FillNM(1) U-Zeros"
    )
    assert labels.parse_policy("nmignore_uignore").name == "NM-Ignore U-Ignore"
    with pytest.raises(ValueError, match="uncertain policy"):
        LabelPolicy("maybe", 0)
    with pytest.raises(ValueError, match="not-mentioned policy"):
        LabelPolicy("ones", 2)


def test_values_outside_the_labeler_vocabulary_are_rejected():
    with pytest.raises(ValueError, match="1, 0, -1 or empty"):
        labels.impute([1.0, 2.0], LabelPolicy())


def test_distribution_table_reproduces_thesis_table_6_arithmetic():
    # thesis Table 6 scaled down: 19448 / 56341 / 3145 / 144480 of 223414
    counts = {1.0: 87, 0.0: 252, -1.0: 14, np.nan: 647}
    raw = pd.Series(np.concatenate([np.full(n, v) for v, n in counts.items()]))
    table = labels.distribution_table(raw, "Pneumothorax").set_index("method")
    assert table.loc["Original", "positive"] == "87 (8.7%)"
    assert table.loc["Original", "not_mentioned"] == "647 (64.7%)"
    # FillNM(0) U-Ones: positives + uncertain; FillNM(1) U-Zeros: positives + not mentioned
    assert table.loc["FillNM(0) U-Ones", "positive"] == "101 (10.1%)"
    assert table.loc["FillNM(0) U-Ones", "negative"] == "899 (89.9%)"
    assert table.loc["FillNM(1) U-Zeros", "positive"] == "734 (73.4%)"
    assert table.loc["FillNM(1) U-Zeros", "negative"] == "266 (26.6%)"


def test_agreement_with_truth_counts_what_the_policy_keeps():
    truth = np.array([1, 0, 1, 0, 0, 0, 1, 0])
    a = labels.agreement_with_truth(RAW, truth, LabelPolicy("ones", 0))
    # targets 1 0 1 0 1 1 0 0 vs truth: agree on rows 0 1 2 3 7 -> 5 / 8
    assert a["accuracy"] == pytest.approx(5 / 8)
    assert a["kept"] == 8 and a["implied_positive_rate"] == pytest.approx(4 / 8)
    assert a["true_positive_rate"] == pytest.approx(3 / 8)
    assert a["sensitivity"] == pytest.approx(2 / 3)
    b = labels.agreement_with_truth(RAW, truth, LabelPolicy("ignore", "ignore"))
    assert b["kept"] == 3 and b["accuracy"] == pytest.approx(2 / 3)


def test_a_share_is_rounded_half_up_from_the_exact_fraction():
    """29 of 2,000 is 1.45 %: 1.5 % half up, where the float 1.45 prints 1.4."""
    import math
    from decimal import ROUND_HALF_UP, Decimal
    from fractions import Fraction

    assert f"{100 * 29 / 2000:.1f}" == "1.4"  # the float's rounding, which the table avoids
    assert labels._cell(29, 2000) == "29 (1.5%)"
    assert labels._cell(0, 0) == "0 (0.0%)"
    for total in (1, 3, 7, 40, 2000, 2413, 44683):
        for n in {0, 1, total // 3, total // 2, total - 1, total}:
            want = Decimal(math.floor(Fraction(1000 * n, total) + Fraction(1, 2))) / 10
            assert (
                labels._cell(n, total) == f"{n} ({want.quantize(Decimal('0.1'), ROUND_HALF_UP)}%)"
            )
