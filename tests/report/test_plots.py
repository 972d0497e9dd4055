"""The ROC figure of a group: each curve's AUC, the seeds' mean beside it, a legend clear of
the axes."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from cxr_augment.report.plots import roc_figure


def test_roc_legend_gives_each_curves_auc_and_the_seeds_mean_outside_the_axes():
    rng = np.random.default_rng(0)
    curves = {}
    for i in range(12):
        y = rng.integers(0, 2, 200)
        curves[f"experiment_{i}"] = (y, y * (i / 12) + rng.normal(0, 1, 200))
    curves["one_class"] = (np.ones(20, int), rng.normal(size=20))  # no curve: no entry
    fig = roc_figure(curves, "a title", seed_auc={"experiment_3": 0.6123})
    fig.canvas.draw()
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert len(labels) == 12
    for i, label in enumerate(labels):
        y, p = curves[f"experiment_{i}"]
        assert label.startswith(f"experiment_{i}: {roc_auc_score(y, p):.3f}")
    assert labels[3].endswith("(seeds' mean 0.612)") and "seeds' mean" not in labels[4]
    ax_box = fig.axes[0].get_window_extent()
    leg_box = legend.get_window_extent()
    assert leg_box.x0 >= ax_box.x1  # beside the axes, not over the curves
    assert leg_box.x1 <= fig.bbox.x1 + 1  # and inside the figure


def test_figure_20_legend_counts_the_selected_shown_and_in_all():
    import matplotlib.pyplot as plt

    from cxr_augment.report.plots import pca_figure

    rng = np.random.default_rng(0)
    z = rng.normal(size=(100, 2))
    y = (rng.random(100) < 0.3).astype(int)
    pred = np.where(rng.random(100) < 0.2, 1 - y, y)
    selected = np.zeros(100, bool)
    selected[np.flatnonzero(pred != y)[:7]] = True

    def legend(**kw):
        fig = pca_figure(z, y, pred, np.array([1.0, -1.0]), 0.0, "t", selected=selected, **kw)
        texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        plt.close(fig)
        return [t for t in texts if t.startswith("selected")]

    # a sample of the images is shown: both counts, so the figure agrees with the summary
    assert legend(selected_total=20) == ["selected for augmentation (7 shown of 20)"]
    assert legend(selected_total=7) == ["selected for augmentation (7)"]
    assert legend() == ["selected for augmentation (7)"]
    # none of the selected among those shown: the legend still says how many there are
    selected[:] = False
    assert legend(selected_total=5) == ["selected for augmentation (0 shown of 5)"]
