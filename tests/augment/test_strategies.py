"""Strategy counts follow thesis Tables 4 and 5."""

import numpy as np
import pandas as pd
import pytest

from cxr_augment.augment import strategies


def _train(pos=163, neg=1425):
    return pd.DataFrame(
        {"key": [f"k{i}" for i in range(pos + neg)], "target": np.r_[np.ones(pos), np.zeros(neg)]}
    )


def test_unbalanced_is_table_4():
    train = _train()
    sel = strategies.select(train, "unbalanced", seed=1)
    table = strategies.counts_table(train, sel, "unbalanced").set_index("class")
    # every positive x 11; one third of the negatives x 1; all real images kept
    assert table.loc["Positive", "generated_images"] == 163 * 11
    assert table.loc["Negative", "generated_images"] == 1425 // 3
    assert table.loc["Negative", "real_images"] == 1425
    assert table.loc["Positive", "real_images"] == 163


def test_balanced_is_table_5():
    train = _train()
    sel = strategies.select(train, "balanced", seed=1)
    table = strategies.counts_table(train, sel, "balanced").set_index("class")
    assert table.loc["Positive", "generated_images"] == 163 * 4
    assert table.loc["Negative", "generated_images"] == 163 * 4
    assert table.loc["Negative", "real_images"] == 163  # the real set shrinks to the selection


def test_thesis_scale_reproduces_the_printed_tables():
    train = _train(18074, 160657)
    un = strategies.counts_table(train, strategies.select(train, "unbalanced", 0), "unbalanced")
    assert un.generated_images.tolist() == [53552, 198814]  # Table 4
    ba = strategies.counts_table(train, strategies.select(train, "balanced", 0), "balanced")
    assert ba.generated_images.tolist() == [72296, 72296]  # Table 5


def test_selection_is_seeded_and_custom_strategies_are_checked():
    train = _train()
    a = strategies.select(train, "unbalanced", seed=2)
    assert a.equals(strategies.select(train, "unbalanced", seed=2))
    assert not a.equals(strategies.select(train, "unbalanced", seed=3))
    custom = strategies.select(
        train, {"positive_copies": 2, "negatives_per_positive": 2, "negative_copies": 1}, seed=0
    )
    assert (custom.target == 0).sum() == 326
    with pytest.raises(ValueError, match="exactly one"):
        strategies.select(train, {"positive_copies": 1, "negative_copies": 1}, seed=0)
