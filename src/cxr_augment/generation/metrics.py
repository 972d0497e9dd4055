"""Image-generation metrics: FD/FID, KID, PRDC, IS, SSIM/PSNR and a memorisation check.

Kedro-free numpy code. Feature arrays are ``(N, D)`` floats (e.g. the 2048-d Inception pool
features of :mod:`cxr_augment.generation.inception`); images are ``(N, H, W)`` uint8 grey.

Usage::

    fd = fd_with_ci(real_feats, gen_feats, n_boot=200, seed=0)      # FID with bootstrap CI
    k = kid(real_feats, gen_feats, subsets=100, subset_size=1000, seed=0)
    pr = prdc(real_feats, gen_feats, k=5)
    table = matched_ssim_psnr(gen_images, real_images)              # one row per gen image
    stats = summarise(table["ssim"])
    is_ = inception_score(gen_logits, splits=10)
    per_image, share = memorisation(gen_images, train_images, gen_feats, train_feats)

Every random draw comes from ``np.random.default_rng(seed)``. Pairwise distances are computed
in row chunks (at most ``CHUNK_ELEMENTS`` distances at a time), so thousands of 64x64 images fit
in memory. Pixel distances use intensities scaled to [0, 1] (uint8 / 255), flattened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
from scipy.special import log_softmax, logsumexp

CHUNK_ELEMENTS = 2**22  # distances held at once (32 MiB in float64)


def _features(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"features must be (N >= 2, D), got shape {x.shape}")
    return x


def _feature_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _features(a), _features(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    return a, b


def _percentile_ci(values: np.ndarray, alpha: float) -> tuple[float, float]:
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def _pixels(images: np.ndarray) -> np.ndarray:
    """(N, H, W) images -> (N, H*W) float64 intensities in [0, 1]."""
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must be (N, H, W), got shape {images.shape}")
    return images.reshape(len(images), -1).astype(np.float64) / 255.0


def _chunks(n_rows: int, n_cols: int) -> Iterator[slice]:
    step = max(1, CHUNK_ELEMENTS // max(n_cols, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def _euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances ||a_i - b_j|| via |a|^2 + |b|^2 - 2 a.b (float64, clipped at 0)."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine distances 1 - a.b / (|a| |b|), in [0, 2]."""
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.clip(1.0 - an @ bn.T, 0.0, 2.0)


Distance = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _nearest(query: np.ndarray, ref: np.ndarray, dist: Distance) -> tuple[np.ndarray, np.ndarray]:
    """Index and distance of each query row's nearest ``ref`` row, in chunks."""
    idx = np.empty(len(query), dtype=np.int64)
    best = np.empty(len(query))
    for rows in _chunks(len(query), len(ref)):
        d = dist(query[rows], ref)
        idx[rows] = d.argmin(1)
        best[rows] = d[np.arange(len(d)), idx[rows]]
    return idx, best


def _kth_other(x: np.ndarray, k: int, dist: Distance) -> np.ndarray:
    """Distance of each row of ``x`` to its k-th nearest OTHER row (self excluded)."""
    if not 1 <= k < len(x):
        raise ValueError(f"k must be in [1, {len(x) - 1}], got {k}")
    out = np.empty(len(x))
    for rows in _chunks(len(x), len(x)):
        d = dist(x[rows], x)
        d[np.arange(len(d)), np.arange(rows.start, rows.stop)] = np.inf
        out[rows] = np.partition(d, k - 1, axis=1)[:, k - 1]
    return out


# --- Fréchet distance -----------------------------------------------------------------------


def frechet_distance(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID if Inception pool3).

    Heusel et al. 2017, eq. 6: ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` with
    sample means and (N - 1)-normalised covariances, as pytorch-fid. Instead of ``sqrtm`` of the
    non-symmetric product (which can turn complex for near-singular covariances), the trace of
    the root is computed exactly and in real arithmetic: with centred data X_a, X_b, S_a S_b has
    the nonzero eigenvalues of (X_b X_a^T)(X_b X_a^T)^T / ((n_a - 1)(n_b - 1)), so
    ``Tr (S_a S_b)^(1/2) = ||X_b X_a^T||_* / sqrt((n_a - 1)(n_b - 1))`` (nuclear norm); when
    both sets have more rows than dimensions, through the symmetric S_a^(1/2) S_b S_a^(1/2).

    Args:
        feat_a: ``(N_a, D)`` features, N_a >= 2.
        feat_b: ``(N_b, D)`` features, N_b >= 2.

    Returns:
        The squared Fréchet distance (not clipped: identical sets can give ~ -1e-12).
    """
    a, b = _feature_pair(feat_a, feat_b)
    diff = a.mean(0) - b.mean(0)
    xa, xb = a - a.mean(0), b - b.mean(0)
    na1, nb1 = len(a) - 1, len(b) - 1
    if min(len(a), len(b)) <= a.shape[1]:
        # X_b X_a^T has the singular values of R_b R_a^T (Q_a, Q_b orthonormal): no QR of the
        # large set needed, one (N_b x N_a) product and its SVD (cheap when a set is small)
        tr_sqrt = np.linalg.svd(xb @ xa.T, compute_uv=False).sum() / np.sqrt(na1 * nb1)
    else:
        # more rows than dimensions in both: through the D x D covariances,
        # Tr (S_a S_b)^(1/2) = Tr (S_a^(1/2) S_b S_a^(1/2))^(1/2), symmetric PSD
        w, v = np.linalg.eigh(xa.T @ xa / na1)
        root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        ev = np.linalg.eigvalsh(root @ (xb.T @ xb / nb1) @ root)
        tr_sqrt = np.sqrt(np.clip(ev, 0, None)).sum()
    tr_a, tr_b = (xa * xa).sum() / na1, (xb * xb).sum() / nb1
    return float(diff @ diff + tr_a + tr_b - 2.0 * tr_sqrt)


class _ResampledFD:
    """``frechet_distance(a[ia], b[ib])`` for many resamples, from the raw Gram matrix
    G = b a^T computed once: the centred product of a resample is the double-centred
    G[ib][:, ia], and means and covariance traces come from row counts and row norms."""

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        self.a, self.b = a, b
        self.gram = b @ a.T  # (N_b, N_a)
        self.norm_a, self.norm_b = (a * a).sum(1), (b * b).sum(1)

    def __call__(self, ia: np.ndarray, ib: np.ndarray) -> float:
        na, nb = len(ia), len(ib)
        g = self.gram[np.ix_(ib, ia)]
        g = g - g.mean(0) - g.mean(1, keepdims=True) + g.mean()
        # the singular values of g: square roots of the eigenvalues of the smaller Gram matrix
        ev = np.linalg.eigvalsh(g @ g.T if nb <= na else g.T @ g)
        tr_sqrt = np.sqrt(np.clip(ev, 0, None)).sum() / np.sqrt((na - 1) * (nb - 1))
        ca = np.bincount(ia, minlength=len(self.a)) / na
        cb = np.bincount(ib, minlength=len(self.b)) / nb
        mu_a, mu_b = ca @ self.a, cb @ self.b
        # Tr S = (sum_i ||x_i||^2 - n ||mu||^2) / (n - 1)
        tr_a = (na * (ca @ self.norm_a) - na * (mu_a @ mu_a)) / (na - 1)
        tr_b = (nb * (cb @ self.norm_b) - nb * (mu_b @ mu_b)) / (nb - 1)
        diff = mu_a - mu_b
        return float(diff @ diff + tr_a + tr_b - 2.0 * tr_sqrt)


def fd_with_ci(
    real: np.ndarray, gen: np.ndarray, n_boot: int = 200, seed: int = 0, alpha: float = 0.05
) -> dict[str, float | int]:
    """Fréchet distance with a percentile bootstrap confidence interval.

    Each bootstrap replicate resamples the real and the generated rows independently with
    replacement (same sizes) and recomputes the distance; the interval is the
    (alpha/2, 1 - alpha/2) percentile of the replicates minus the bootstrap's bias estimate
    (FD is biased upwards in small N, and duplicated rows make a resample's N smaller still).
    Compare values at equal set sizes.

    Args:
        real: ``(N_real, D)`` features of real images.
        gen: ``(N_gen, D)`` features of generated images.
        n_boot: Bootstrap replicates.
        seed: Seed of ``np.random.default_rng``.
        alpha: 1 - confidence level.

    Returns:
        ``value, bias, ci_low, ci_high, n_real, n_gen, dim, n_boot``.
    """
    real, gen = _feature_pair(real, gen)
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    resampled = _ResampledFD(real, gen) if min(len(real), len(gen)) <= real.shape[1] else None
    for i in range(n_boot):
        rows_real = rng.integers(0, len(real), len(real))  # with replacement
        rows_gen = rng.integers(0, len(gen), len(gen))
        boots[i] = (
            resampled(rows_real, rows_gen)
            if resampled is not None
            else frechet_distance(real[rows_real], gen[rows_gen])
        )
    value = frechet_distance(real, gen)
    # resampling with replacement repeats rows, which shrinks the effective N and inflates FD
    # (its small-N bias): the percentile interval is shifted by the bootstrap's bias estimate,
    # mean(boots) - value (Efron & Tibshirani 1993, 10.2), so it brackets the estimate
    bias = float(boots.mean() - value)
    low, high = _percentile_ci(boots - bias, alpha)
    return {
        "value": value,
        "bias": bias,
        "ci_low": low,
        "ci_high": high,
        "n_real": len(real),
        "n_gen": len(gen),
        "dim": real.shape[1],
        "n_boot": n_boot,
    }


# --- Kernel Inception Distance ----------------------------------------------------------------


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic kernel k(x, y) = (x.y / d + 1)^3 (Binkowski et al. 2018).

    MMD^2_u = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (n (n - 1))
              - 2 sum_{i, j} k(x_i, y_j) / (m n)      (Gretton et al. 2012, eq. 3)
    """
    m, n, d = len(x), len(y), x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    within_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * kxy.mean())


def kid(
    real: np.ndarray,
    gen: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float | int]:
    """Kernel Inception Distance: unbiased MMD^2 averaged over random subsets.

    Binkowski et al. 2018 ("Demystifying MMD GANs"), as their reference code: each subset draws
    ``subset_size`` rows of each set without replacement (capped at ``min(N_real, N_gen)``); the
    estimate is the mean over subsets. Unbiased, so it can be slightly negative when the two
    distributions agree.

    Args:
        real: ``(N_real, D)`` features of real images.
        gen: ``(N_gen, D)`` features of generated images.
        subsets: Number of random subsets.
        subset_size: Rows per set in each subset (capped, see above; at least 2).
        seed: Seed of ``np.random.default_rng``.
        alpha: The interval is the (alpha/2, 1 - alpha/2) percentile over subsets.

    Returns:
        ``mean, std`` (ddof=1 over subsets; 0 if one subset), ``ci_low, ci_high``,
        ``n_real, n_gen, subset_size`` (the one used), ``subsets``.
    """
    real, gen = _feature_pair(real, gen)
    m = min(subset_size, len(real), len(gen))
    if m < 2:
        raise ValueError(f"subset_size must be >= 2, got {subset_size}")
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        rows_real = rng.choice(len(real), m, replace=False)  # without replacement, as the paper
        values[i] = _mmd2_unbiased(real[rows_real], gen[rng.choice(len(gen), m, replace=False)])
    low, high = _percentile_ci(values, alpha)
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if subsets > 1 else 0.0,
        "ci_low": low,
        "ci_high": high,
        "n_real": len(real),
        "n_gen": len(gen),
        "subset_size": m,
        "subsets": subsets,
    }


# --- Precision / recall / density / coverage --------------------------------------------------


def prdc(real: np.ndarray, gen: np.ndarray, k: int = 5) -> dict[str, float | int]:
    """Precision, recall, density and coverage (Naeem et al. 2020, eqs. 1-4).

    r_k(x) is the Euclidean distance from x to its k-th nearest neighbour in its own set (self
    excluded); B(x, r) is the open ball. With real X_i (N) and generated Y_j (M):

    - precision = 1/M sum_j 1[exists i: Y_j in B(X_i, r_k(X_i))]   (Kynkaanniemi et al. 2019)
    - recall    = 1/N sum_i 1[exists j: X_i in B(Y_j, r_k(Y_j))]
    - density   = 1/(kM) sum_j sum_i 1[Y_j in B(X_i, r_k(X_i))]
    - coverage  = 1/N sum_i 1[exists j: Y_j in B(X_i, r_k(X_i))]

    Args:
        real: ``(N, D)`` real features.
        gen: ``(M, D)`` generated features.
        k: Neighbour rank of the radii.

    Returns:
        ``precision, recall, density, coverage, k, n_real, n_gen``.
    """
    real, gen = _feature_pair(real, gen)
    r_real = _kth_other(real, k, _euclidean)
    r_gen = _kth_other(gen, k, _euclidean)
    in_real_balls = np.zeros(len(gen))  # per gen: number of real balls containing it
    real_has_gen_in_ball = np.zeros(len(real), dtype=bool)
    real_in_gen_ball = np.zeros(len(real), dtype=bool)
    for rows in _chunks(len(gen), len(real)):
        d = _euclidean(gen[rows], real)  # (chunk of gen, N)
        inside = d < r_real[None, :]
        in_real_balls[rows] = inside.sum(1)
        real_has_gen_in_ball |= inside.any(0)
        real_in_gen_ball |= (d < r_gen[rows, None]).any(0)
    return {
        "precision": float((in_real_balls > 0).mean()),
        "recall": float(real_in_gen_ball.mean()),
        "density": float(in_real_balls.mean() / k),
        "coverage": float(real_has_gen_in_ball.mean()),
        "k": k,
        "n_real": len(real),
        "n_gen": len(gen),
    }


# --- SSIM / PSNR --------------------------------------------------------------------------------

SSIM_WIN = 7  # skimage's default uniform window
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"need two (N, H, W) arrays of one shape, got {a.shape} and {b.shape}")
    return a, b


def _box_mean(x: np.ndarray, w: int) -> np.ndarray:
    """Mean over every fully inside w x w window of each (H, W) image (integral image)."""
    c = np.zeros((x.shape[0], x.shape[1] + 1, x.shape[2] + 1), dtype=x.dtype)
    c[:, 1:, 1:] = x.cumsum(1).cumsum(2)
    s = c[:, w:, w:] - c[:, :-w, w:] - c[:, w:, :-w] + c[:, :-w, :-w]
    return s / float(w * w)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255) -> np.ndarray:
    """Per-pair mean SSIM, equal to ``skimage.metrics.structural_similarity(x, y, data_range)``.

    Wang et al. 2004, eq. 13: SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) /
    ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)), C1 = (K1 L)^2, C2 = (K2 L)^2, K1 = 0.01,
    K2 = 0.03, L = data_range. skimage's defaults: 7x7 uniform window, sample (co)variances
    (x 49/48), and the mean over the windows lying fully inside the image (it crops 3 pixels).

    Args:
        a: ``(N, H, W)`` images (H, W >= 7).
        b: ``(N, H, W)`` images, paired with ``a`` row by row.
        data_range: L, the intensity range.

    Returns:
        ``(N,)`` float64 SSIM values.
    """
    a, b = _pairs(a, b)
    if min(a.shape[1:]) < SSIM_WIN:
        raise ValueError(f"SSIM needs images of at least {SSIM_WIN}x{SSIM_WIN}, got {a.shape}")
    x, y = a.astype(np.float64), b.astype(np.float64)
    ux, uy = _box_mean(x, SSIM_WIN), _box_mean(y, SSIM_WIN)
    cov_norm = SSIM_WIN**2 / (SSIM_WIN**2 - 1.0)
    vx = cov_norm * (_box_mean(x * x, SSIM_WIN) - ux * ux)
    vy = cov_norm * (_box_mean(y * y, SSIM_WIN) - uy * uy)
    vxy = cov_norm * (_box_mean(x * y, SSIM_WIN) - ux * uy)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return s.mean(axis=(1, 2))


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255) -> np.ndarray:
    """Per-pair PSNR = 10 log10(L^2 / MSE), equal to ``skimage.metrics.peak_signal_noise_ratio``.

    Identical images have MSE 0 and PSNR ``inf`` (skimage returns inf with a warning; here it is
    returned without one).

    Args:
        a: ``(N, H, W)`` images.
        b: ``(N, H, W)`` images, paired with ``a`` row by row.
        data_range: L, the intensity range.

    Returns:
        ``(N,)`` float64 PSNR values in dB (``inf`` for identical pairs).
    """
    a, b = _pairs(a, b)
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(axis=(1, 2))
    with np.errstate(divide="ignore"):
        return np.where(mse == 0, np.inf, 10.0 * np.log10(data_range**2 / mse))


def matched_ssim_psnr(
    gen: np.ndarray, real: np.ndarray, rule: str = "nearest_pixel", batch: int = 256
) -> pd.DataFrame:
    """SSIM and PSNR of every generated image against its matched real image.

    Matching rule ``"nearest_pixel"`` (the only one): each generated image is paired with the
    real image at the smallest pixel L2 distance (flattened intensities in [0, 1]; ties: the
    lowest real index). SSIM/PSNR are then skimage-equivalent with data_range 255.

    Args:
        gen: ``(M, H, W)`` uint8 generated images.
        real: ``(N, H, W)`` uint8 real images.
        rule: The matching rule.
        batch: Image pairs per SSIM/PSNR batch.

    Returns:
        One row per generated image: ``gen_index, real_index, l2, ssim, psnr``.
    """
    if rule != "nearest_pixel":
        raise ValueError(f"unknown matching rule {rule!r}; known: 'nearest_pixel'")
    gen, real = np.asarray(gen), np.asarray(real)
    idx, l2 = _nearest(_pixels(gen), _pixels(real), _euclidean)
    s = np.empty(len(gen))
    p = np.empty(len(gen))
    for start in range(0, len(gen), batch):
        rows = slice(start, start + batch)
        s[rows] = ssim(gen[rows], real[idx[rows]])
        p[rows] = psnr(gen[rows], real[idx[rows]])
    return pd.DataFrame(
        {"gen_index": np.arange(len(gen)), "real_index": idx, "l2": l2, "ssim": s, "psnr": p}
    )


def summarise(values: np.ndarray | pd.Series) -> dict[str, float | int]:
    """Mean, SD (ddof=1) and n of the finite values; ``n_nonfinite`` counts the rest.

    Non-finite values (NaN, or PSNR ``inf`` of identical pairs) are left out of mean/SD and
    counted in ``n_nonfinite``, so a reader sees them.

    Args:
        values: 1-D values.

    Returns:
        ``mean, sd, n, n_nonfinite`` (mean/SD NaN when n is 0/below 2).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    finite = v[np.isfinite(v)]
    return {
        "mean": float(finite.mean()) if len(finite) else float("nan"),
        "sd": float(finite.std(ddof=1)) if len(finite) > 1 else float("nan"),
        "n": len(finite),
        "n_nonfinite": len(v) - len(finite),
    }


# --- Inception Score ----------------------------------------------------------------------------


def inception_score(logits: np.ndarray, splits: int = 10) -> dict[str, float]:
    """Inception Score from class logits (Salimans et al. 2016).

    p(y|x) = softmax(logits); per split, IS = exp(mean_x KL(p(y|x) || p(y))) with p(y) the
    split's mean of p(y|x). Rows are split with ``np.array_split`` (no row is dropped); the
    result is the mean and the (ddof=0, as the original code) SD over splits.

    Args:
        logits: ``(N, K)`` class logits (e.g. the 1008 FID-Inception logits).
        splits: Number of splits (N >= splits).

    Returns:
        ``mean, std``.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or len(logits) < splits:
        raise ValueError(f"need (N >= splits={splits}, K) logits, got shape {logits.shape}")
    scores = []
    for part in np.array_split(log_softmax(logits, axis=1), splits):
        log_py = logsumexp(part, axis=0) - np.log(len(part))  # log of mean p(y|x)
        p = np.exp(part)
        kl = np.where(p > 0, p * (part - log_py), 0.0).sum(1)
        scores.append(np.exp(kl.mean()))
    return {"mean": float(np.mean(scores)), "std": float(np.std(scores))}


# --- Memorisation -------------------------------------------------------------------------------


def memorisation(
    gen_pixels: np.ndarray,
    train_pixels: np.ndarray,
    gen_feats: np.ndarray,
    train_feats: np.ndarray,
    percentile: float = 1.0,
) -> tuple[pd.DataFrame, dict[str, float | int]]:
    """Flag generated images that sit closer to a training image than real images do to each other.

    For each generated image: its nearest training image by pixel L2 (flattened intensities in
    [0, 1]) and by feature cosine distance. The reference is the real-to-real nearest-neighbour
    distance (each training image to its nearest OTHER training image, per measure); the
    threshold is its ``percentile``-th percentile, and a generated image is memorised when its
    distance is <= the threshold.

    Args:
        gen_pixels: ``(M, H, W)`` generated images.
        train_pixels: ``(N, H, W)`` training images, N >= 2.
        gen_feats: ``(M, D)`` features of ``gen_pixels``.
        train_feats: ``(N, D)`` features of ``train_pixels``.
        percentile: Percentile (0-100) of real-to-real distances used as the threshold.

    Returns:
        The per-image table (``gen_index, nearest_pixel_index, pixel_distance,
        nearest_feature_index, feature_distance, pixel_memorised, feature_memorised``) and the
        summary (``share_pixel, share_feature, share`` = the larger, ``threshold_pixel,
        threshold_feature, n_gen, n_train, percentile``).
    """
    gp, tp = _pixels(gen_pixels), _pixels(train_pixels)
    gf, tf = np.asarray(gen_feats, dtype=np.float64), _features(train_feats)
    if len(gp) != len(gf) or len(tp) != len(tf):
        raise ValueError("pixel and feature arrays must have the same number of rows")
    pix_idx, pix_d = _nearest(gp, tp, _euclidean)
    feat_idx, feat_d = _nearest(gf, tf, _cosine)
    thr_pix = float(np.percentile(_kth_other(tp, 1, _euclidean), percentile))
    thr_feat = float(np.percentile(_kth_other(tf, 1, _cosine), percentile))
    table = pd.DataFrame(
        {
            "gen_index": np.arange(len(gp)),
            "nearest_pixel_index": pix_idx,
            "pixel_distance": pix_d,
            "nearest_feature_index": feat_idx,
            "feature_distance": feat_d,
            "pixel_memorised": pix_d <= thr_pix,
            "feature_memorised": feat_d <= thr_feat,
        }
    )
    share_pixel = float(table["pixel_memorised"].mean())
    share_feature = float(table["feature_memorised"].mean())
    return table, {
        "share_pixel": share_pixel,
        "share_feature": share_feature,
        "share": max(share_pixel, share_feature),
        "threshold_pixel": thr_pix,
        "threshold_feature": thr_feat,
        "n_gen": len(gp),
        "n_train": len(tp),
        "percentile": percentile,
    }
