"""Figures: ROC curves of a group of experiments, and the thesis's Figure 20 (PCA of the
penultimate-layer features with the classifier's decision boundary)."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def roc_figure(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    title: str,
    seed_auc: dict[str, float] | None = None,
) -> plt.Figure:
    """``curves``: name -> (y, p). One ROC curve each, its AUC in the legend; with
    ``seed_auc`` (name -> the mean of each seed's AUC, as a table gives it) that too, since
    the curve of seed-mean scores is an ensemble's and its area is another number. The legend
    sits beside the axes, clear of the curves."""
    from sklearn.metrics import roc_curve  # imported on use: 0.8 s at every project load

    from cxr_augment.classify.metrics import roc_auc

    fig, ax = plt.subplots(figsize=(8.4, 4.4), layout="constrained")
    for i, (name, (y, p)) in enumerate(curves.items()):
        if 0 < np.sum(y) < len(y):
            fpr, tpr, _ = roc_curve(y, p)
            style = ("-", "--", ":")[(i // 10) % 3]  # the colour cycle has ten colours
            label = f"{name}: {roc_auc(y, p):.3f}"
            if seed_auc and name in seed_auc:
                label += f" (seeds' mean {seed_auc[name]:.3f})"
            ax.plot(fpr, tpr, lw=1.2, ls=style, label=label)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_aspect("equal")
    ax.set_title(textwrap.fill(title, 60), fontsize=9)  # long table titles wrap, not clip
    fig.legend(
        fontsize=6,
        loc="outside right center",  # constrained layout makes room for it
        title="AUC of the curve",
        title_fontsize=6,
        frameon=False,
    )
    return fig


def pca_boundary(features: np.ndarray, weight: np.ndarray, bias: float):
    """2-D PCA of the features and the head's boundary w.f + b = 0 in that plane.

    With f = mean + P^T z (z the two PCA coordinates), the boundary is
    (P w) . z + (w . mean + b) = 0: a line; each point's signed distance to it is
    ((P w) . z + w . mean + b) / |P w|.
    """
    mean = features.mean(axis=0)
    centred = features - mean
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    p = vt[:2]
    z = centred @ p.T
    w2 = p @ weight
    b2 = float(weight @ mean + bias)
    distance = (z @ w2 + b2) / max(np.linalg.norm(w2), 1e-12)
    return z, w2, b2, distance


def logistic_line(z: np.ndarray, decisions: np.ndarray, seed: int = 0):
    """The line that best separates the model's own decisions in the PCA plane: a logistic
    regression of the 0/1 decisions on the two coordinates (scikit-learn, lightly
    regularised). Returns (w2, b2, signed distance of every point), the line w2 . z + b2 = 0.
    """
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(decisions)) < 2:
        raise ValueError("the model makes one decision for every image: no boundary to fit")
    fit = LogisticRegression(C=100.0, max_iter=1000, random_state=seed).fit(z, decisions)
    w2, b2 = fit.coef_[0].astype(float), float(fit.intercept_[0])
    return w2, b2, (z @ w2 + b2) / max(np.linalg.norm(w2), 1e-12)


def pca_figure(
    z: np.ndarray,
    y: np.ndarray,
    pred: np.ndarray,
    w2: np.ndarray,
    b2: float,
    title: str,
    selected: np.ndarray | None = None,
    selected_total: int | None = None,
) -> plt.Figure:
    """Figure 20: the points by class, misclassified ones hollow, the boundary line, and
    (``selected``) the images the misclassified strategy augments, ringed in black.

    ``selected_total``: how many images the strategy selected in all, when the points are a
    sample of them; the legend gives both counts."""
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    wrong = pred != y
    for cls, colour in ((0, "tab:blue"), (1, "tab:red")):
        sel = (y == cls) & ~wrong
        ax.scatter(
            z[sel, 0],
            z[sel, 1],
            s=6,
            c=colour,
            alpha=0.6,
            label=f"{'positive' if cls else 'negative'}",
        )
        sel = (y == cls) & wrong
        ax.scatter(
            z[sel, 0],
            z[sel, 1],
            s=14,
            facecolors="none",
            edgecolors=colour,
            lw=0.8,
            label=f"misclassified {'positive' if cls else 'negative'}",
        )
    if selected is not None and (selected.any() or selected_total):
        ax.scatter(
            z[selected, 0],
            z[selected, 1],
            s=34,
            facecolors="none",
            edgecolors="black",
            lw=0.9,
            label=(
                f"selected for augmentation ({int(selected.sum())}"
                + (
                    f" shown of {selected_total})"
                    if selected_total is not None and selected_total != int(selected.sum())
                    else ")"
                )
            ),
        )
    xs = np.linspace(z[:, 0].min(), z[:, 0].max(), 200)
    if abs(w2[1]) > 1e-12:
        ax.plot(xs, -(w2[0] * xs + b2) / w2[1], color="black", lw=1, label="decision boundary")
    ax.set_xlim(z[:, 0].min() - 1, z[:, 0].max() + 1)
    ax.set_ylim(z[:, 1].min() - 1, z[:, 1].max() + 1)
    ax.set(xlabel="PC 1", ylabel="PC 2")
    ax.set_title(textwrap.fill(title, 56), fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig
