"""Generation metrics against independent references: pytorch-fid, skimage, hand computations,
brute-force O(n^2) loops and simulations with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_fid import inception as pf_inception
from pytorch_fid.fid_score import calculate_frechet_distance
from scipy.spatial.distance import cdist
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from cxr_augment.generation import inception, metrics


def _gauss(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, scale, size=(n, d))


def _pytorch_fid(a: np.ndarray, b: np.ndarray) -> float:
    return float(
        calculate_frechet_distance(
            a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
        )
    )


# --- Fréchet distance ---------------------------------------------------------------------------


@pytest.mark.parametrize(("n_a", "n_b", "d"), [(300, 250, 24), (120, 90, 64)])
def test_frechet_distance_equals_pytorch_fid(n_a, n_b, d):
    rng = np.random.default_rng(1)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)  # correlated features with unequal covariances
    a = _gauss(n_a, d, 2) @ mix
    b = _gauss(n_b, d, 3, shift=0.3) @ (mix + 0.2 * np.eye(d))
    assert metrics.frechet_distance(a, b) == pytest.approx(_pytorch_fid(a, b), rel=1e-6)


def test_frechet_distance_rank_deficient_equals_pytorch_fid():
    # N < D: singular covariances, where sqrtm of the product is least accurate
    a, b = _gauss(40, 64, 4), _gauss(50, 64, 5, shift=0.2, scale=1.3)
    assert metrics.frechet_distance(a, b) == pytest.approx(_pytorch_fid(a, b), rel=1e-6)


def test_frechet_distance_one_dimension_by_hand():
    a, b = _gauss(200, 1, 6), _gauss(150, 1, 7, shift=2.0, scale=0.5)
    # 1-D: (mu_a - mu_b)^2 + s_a^2 + s_b^2 - 2 s_a s_b = (mu_a - mu_b)^2 + (s_a - s_b)^2
    hand = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    assert metrics.frechet_distance(a, b) == pytest.approx(hand, rel=1e-10)
    assert abs(metrics.frechet_distance(a, a)) < 1e-10


def test_fd_with_ci_is_seeded_and_covers_the_population_value():
    # identical covariances, mean shift 1 in each of 8 dims: population FD = 8
    real, gen = _gauss(400, 8, 8), _gauss(400, 8, 9, shift=1.0)
    out = metrics.fd_with_ci(real, gen, n_boot=100, seed=3)
    assert out["value"] == pytest.approx(metrics.frechet_distance(real, gen))
    assert out["ci_low"] < 8.0 < out["ci_high"]
    assert out["ci_low"] < out["value"] < out["ci_high"]
    assert (out["n_real"], out["n_gen"], out["dim"]) == (400, 400, 8)
    assert metrics.fd_with_ci(real, gen, n_boot=100, seed=3) == out
    assert metrics.fd_with_ci(real, gen, n_boot=100, seed=4)["ci_low"] != out["ci_low"]


def test_fd_bootstrap_interval_width_matches_the_sampling_spread():
    # resampling both sets: the CI's width / (2 x 1.96) estimates the FD's SD across new samples
    simulated = [
        metrics.frechet_distance(_gauss(400, 8, 100 + i), _gauss(400, 8, 500 + i, shift=1.0))
        for i in range(300)
    ]
    ratios = []
    for i in range(4):
        out = metrics.fd_with_ci(_gauss(400, 8, 30 + i), _gauss(400, 8, 40 + i, shift=1.0))
        ratios.append((out["ci_high"] - out["ci_low"]) / (2 * 1.96) / np.std(simulated, ddof=1))
    assert 0.85 < np.mean(ratios) < 1.15  # resampling only one set gives ~0.7


# --- KID ----------------------------------------------------------------------------------------


def _mmd2_loops(x: np.ndarray, y: np.ndarray) -> float:
    """Straightforward unbiased MMD^2 with k(u, v) = (u.v / d + 1)^3, double loops."""
    d = x.shape[1]

    def k(u, v):
        return (float(np.dot(u, v)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def test_kid_equals_brute_force_reference():
    real, gen = _gauss(30, 5, 10), _gauss(30, 5, 11, shift=0.4)
    # one subset of the full size is a permutation of both sets: MMD^2 is permutation-invariant
    out = metrics.kid(real, gen, subsets=1, subset_size=1000, seed=0)
    assert out["subset_size"] == 30
    assert out["mean"] == pytest.approx(_mmd2_loops(real, gen), rel=1e-10)


def test_kid_is_unbiased_under_the_null_and_grows_with_a_shift():
    real = _gauss(1500, 16, 12)
    kids = {
        s: metrics.kid(real, _gauss(1500, 16, 13, shift=s), subsets=50, subset_size=300, seed=0)
        for s in (0.0, 0.1, 0.2, 0.4)
    }
    null = kids[0.0]
    assert abs(null["mean"]) < null["std"]  # centred on 0, not on a positive bias
    assert null["ci_low"] < 0 < null["ci_high"]
    means = [kids[s]["mean"] for s in (0.0, 0.1, 0.2, 0.4)]
    assert means == sorted(means)
    assert kids[0.4]["mean"] > 10 * null["std"]
    assert null["subsets"] == 50 and null["subset_size"] == 300


# --- PRDC ---------------------------------------------------------------------------------------


def _prdc_reference(real: np.ndarray, gen: np.ndarray, k: int) -> dict[str, float]:
    """Naeem et al. 2020 as their reference code: full distance matrices, (k+1)-th incl. self."""
    r_real = np.sort(cdist(real, real), axis=1)[:, k]
    r_gen = np.sort(cdist(gen, gen), axis=1)[:, k]
    d = cdist(real, gen)
    return {
        "precision": (d < r_real[:, None]).any(0).mean(),
        "recall": (d < r_gen[None, :]).any(1).mean(),
        "density": (d < r_real[:, None]).sum(0).mean() / k,
        "coverage": (d.min(1) < r_real).mean(),
    }


def test_prdc_equals_reference_code_also_in_chunks(monkeypatch):
    real, gen = _gauss(120, 6, 14), _gauss(90, 6, 15, shift=0.3, scale=1.2)
    ref = _prdc_reference(real, gen, 5)
    out = metrics.prdc(real, gen, k=5)
    monkeypatch.setattr(metrics, "CHUNK_ELEMENTS", 500)  # several row chunks
    chunked = metrics.prdc(real, gen, k=5)
    for key, value in ref.items():
        assert out[key] == pytest.approx(value) and chunked[key] == pytest.approx(value)
    assert 0 < out["precision"] < 1 and 0 < out["recall"] < 1


def test_prdc_known_answers():
    rng = np.random.default_rng(16)
    cluster_a = rng.normal(0, 1, (200, 2))
    cluster_b = rng.normal(20, 1, (200, 2))
    real = np.concatenate([cluster_a, cluster_b])
    same = metrics.prdc(real, real, k=5)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = metrics.prdc(real, real + 1000.0, k=5)
    assert far["precision"] == far["recall"] == far["density"] == far["coverage"] == 0.0
    # generator that only produces cluster A: faithful (precision 1) but half the modes missing
    mode_drop = metrics.prdc(real, cluster_a.copy(), k=5)
    assert mode_drop["precision"] == 1.0
    assert mode_drop["recall"] == pytest.approx(0.5)
    assert mode_drop["coverage"] == pytest.approx(0.5)


# --- SSIM / PSNR --------------------------------------------------------------------------------


def _image_pairs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(17)
    h, w = 32, 40
    noise_a = rng.integers(0, 256, (3, h, w))
    noise_b = rng.integers(0, 256, (3, h, w))
    yy, xx = np.mgrid[0:h, 0:w]
    gradient = (xx * 6 + yy * 2) % 256
    disk = np.where((yy - 16) ** 2 + (xx - 20) ** 2 < 100, 220, 30)
    a = [*noise_a, gradient, disk, gradient, np.full((h, w), 90), disk]
    b = [
        *noise_b,
        np.clip(gradient + rng.normal(0, 12, (h, w)), 0, 255),
        np.roll(disk, 3, axis=1),
        gradient,  # identical pair
        np.full((h, w), 90),  # identical constant pair (zero variance)
        np.full((h, w), 128),  # structure against a constant
    ]
    return np.array(a, dtype=np.uint8), np.array(b, dtype=np.uint8)


@pytest.mark.parametrize("data_range", [255, 100])
def test_ssim_and_psnr_equal_skimage(data_range):
    a, b = _image_pairs()
    ours_ssim = metrics.ssim(a, b, data_range=data_range)
    ours_psnr = metrics.psnr(a, b, data_range=data_range)
    ref_ssim = [
        structural_similarity(x, y, data_range=data_range) for x, y in zip(a, b, strict=True)
    ]
    with np.errstate(divide="ignore"):  # skimage warns on the identical pair (inf)
        ref_psnr = [
            peak_signal_noise_ratio(x, y, data_range=data_range) for x, y in zip(a, b, strict=True)
        ]
    np.testing.assert_allclose(ours_ssim, ref_ssim, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours_psnr, ref_psnr, rtol=1e-6)
    assert ours_ssim[5] == pytest.approx(1.0) and np.isinf(ours_psnr[5])
    assert ours_ssim[0] < 0.1  # independent noise


def test_matched_ssim_psnr_pairs_each_generated_image_with_its_nearest_real():
    rng = np.random.default_rng(18)
    real = rng.integers(0, 256, (12, 16, 16), dtype=np.uint8)
    order = rng.permutation(12)[:8]
    noise = rng.integers(-6, 7, (8, 16, 16))
    gen = np.clip(real[order].astype(int) + noise, 0, 255).astype(np.uint8)
    table = metrics.matched_ssim_psnr(gen, real, batch=3)
    d = cdist(gen.reshape(8, -1) / 255.0, real.reshape(12, -1) / 255.0)
    np.testing.assert_array_equal(table["real_index"], order)
    np.testing.assert_array_equal(table["real_index"], d.argmin(1))
    np.testing.assert_allclose(table["l2"], d.min(1), rtol=1e-9)
    ref = [
        structural_similarity(g, real[j], data_range=255) for g, j in zip(gen, order, strict=True)
    ]
    np.testing.assert_allclose(table["ssim"], ref, rtol=1e-6)
    assert list(table.columns) == ["gen_index", "real_index", "l2", "ssim", "psnr"]
    with pytest.raises(ValueError, match="nearest_pixel"):
        metrics.matched_ssim_psnr(gen, real, rule="nearest_feature")


def test_summarise_counts_non_finite_values():
    out = metrics.summarise(np.array([1.0, 2.0, 4.0, np.inf, np.nan]))
    assert out["mean"] == pytest.approx(7 / 3)
    assert out["sd"] == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))
    assert (out["n"], out["n_nonfinite"]) == (3, 2)


# --- Inception Score ----------------------------------------------------------------------------


def test_inception_score_known_cases():
    assert metrics.inception_score(np.zeros((20, 7)), splits=2)["mean"] == pytest.approx(1.0)
    confident = np.eye(4)[np.arange(40) % 4] * 100.0  # each split: 5 images per class
    out = metrics.inception_score(confident, splits=2)
    assert out["mean"] == pytest.approx(4.0, rel=1e-9) and out["std"] == pytest.approx(0.0)
    # two images, p = (0.8, 0.2) and (0.2, 0.8): p(y) = (0.5, 0.5)
    kl = 0.8 * np.log(0.8 / 0.5) + 0.2 * np.log(0.2 / 0.5)
    logits = np.log([[0.8, 0.2], [0.2, 0.8]]) + 3.0  # softmax ignores a constant
    assert metrics.inception_score(logits, splits=1)["mean"] == pytest.approx(np.exp(kl))


# --- Memorisation -------------------------------------------------------------------------------


def _smooth_images(n: int, seed: int) -> np.ndarray:
    """Random smooth 16x16 images (low-frequency cosines), uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:16, 0:16] / 16.0
    coef = rng.normal(size=(n, 3, 3))
    img = sum(
        coef[:, i, j, None, None] * np.cos(np.pi * (i * yy + j * xx))
        for i in range(3)
        for j in range(3)
    )
    return np.clip(128 + 30 * img, 0, 255).astype(np.uint8)


def test_memorisation_flags_exact_copies_and_not_fresh_samples(monkeypatch):
    train = _smooth_images(200, 19)
    feat_map = np.random.default_rng(20).normal(size=(256, 32))
    feats = (train.reshape(200, -1) / 255.0) @ feat_map  # a fixed "feature extractor"
    copies = np.array([3, 50, 77, 120, 199])
    jitter = np.random.default_rng(24).integers(-1, 2, (2, 16, 16))  # +-1 grey level
    near = np.clip(train[copies[3:]].astype(int) + jitter, 0, 255).astype(np.uint8)
    gen = np.concatenate([train[copies[:3]], near, _smooth_images(15, 21)])  # 3 exact, 2 near
    gen_feats = np.concatenate([feats[copies[:3]], (gen[3:].reshape(17, -1) / 255.0) @ feat_map])
    monkeypatch.setattr(metrics, "CHUNK_ELEMENTS", 1000)  # several row chunks
    table, summary = metrics.memorisation(gen, train, gen_feats, feats, percentile=1.0)
    assert summary["share_pixel"] == summary["share_feature"] == summary["share"] == 0.25
    assert table["pixel_memorised"].tolist() == [True] * 5 + [False] * 15
    assert (
        table["pixel_memorised"] == (table["pixel_distance"] <= summary["threshold_pixel"])
    ).all()
    flagged = table["feature_distance"] <= summary["threshold_feature"]
    assert (table["feature_memorised"] == flagged).all()
    np.testing.assert_array_equal(table["nearest_pixel_index"][:5], copies)
    np.testing.assert_array_equal(table["nearest_feature_index"][:5], copies)
    # threshold: 1st percentile of each training image's distance to its nearest other one
    d = cdist(train.reshape(200, -1) / 255.0, train.reshape(200, -1) / 255.0)
    np.fill_diagonal(d, np.inf)
    assert summary["threshold_pixel"] == pytest.approx(np.percentile(d.min(1), 1.0))
    dc = cdist(feats, feats, metric="cosine")
    np.fill_diagonal(dc, np.inf)
    assert summary["threshold_feature"] == pytest.approx(np.percentile(dc.min(1), 1.0))
    # fresh samples of the training distribution: flagged at about the percentile's rate
    fresh = _smooth_images(100, 22)
    _, none = metrics.memorisation(fresh, train, fresh.reshape(100, -1) @ feat_map, feats)
    assert none["share"] <= 0.05


# --- Inception network --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_net() -> torch.nn.Module:
    return inception.build_fid_inception(None, seed=0)


def _grey_images() -> np.ndarray:
    rng = np.random.default_rng(23)
    yy, xx = np.mgrid[0:64, 0:64]
    return np.stack(
        [
            rng.integers(0, 256, (64, 64)),
            (xx * 4) % 256,
            np.where((yy - 30) ** 2 + (xx - 34) ** 2 < 300, 200, 40),
            rng.integers(0, 64, (64, 64)),
        ]
    ).astype(np.uint8)


def test_inception_features_equal_pytorch_fid(random_net, monkeypatch):
    state = random_net.state_dict()
    # pytorch-fid's FID network would download its weights: hand it our random ones instead
    monkeypatch.setattr(pf_inception, "load_state_dict_from_url", lambda *a, **k: state)
    reference = pf_inception.InceptionV3(
        [3], resize_input=True, normalize_input=True, use_fid_inception=True
    ).eval()
    images = _grey_images()
    pool, logits = inception.inception_features(random_net, images, batch_size=3)
    x = torch.from_numpy(images).float().div(255)[:, None].repeat(1, 3, 1, 1)  # ToTensor + RGB
    bilinear = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear")
    with torch.no_grad():
        ref_pool = reference(x)[0].flatten(1).double().numpy()
        ref_logits = random_net(2 * bilinear - 1).double().numpy()  # torchvision's own forward
    assert pool.shape == (4, 2048) and logits.shape == (4, 1008)
    assert pool.std(0).mean() > 1e-3  # images give different features (test is not blind)
    np.testing.assert_allclose(pool, ref_pool, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-6)


def test_weights_load_from_a_local_file_and_missing_file_is_named(random_net, tmp_path):
    path = tmp_path / inception.WEIGHTS_FILE
    torch.save(random_net.state_dict(), path)
    loaded = inception.build_fid_inception(str(path))
    images = _grey_images()[:2]
    np.testing.assert_array_equal(
        inception.inception_features(loaded, images)[0],
        inception.inception_features(random_net, images)[0],
    )
    missing = tmp_path / "nowhere" / inception.WEIGHTS_FILE
    with pytest.raises(inception.MissingWeights) as err:
        inception.build_fid_inception(str(missing))
    assert isinstance(err.value, FileNotFoundError)
    assert "pt_inception-2015-12-05-6726825d.pth" in str(err.value)
    assert str(missing) in str(err.value)
    assert "generation.metrics.inception_weights" in str(err.value)


def test_bootstrap_resamples_from_the_gram_matrix_equal_the_direct_distance():
    """fd_with_ci's fast path (N <= D: one Gram matrix, resamples by index) gives the same
    distance as recomputing it on the resampled rows."""
    rng = np.random.default_rng(11)
    a = rng.normal(size=(60, 80)) * 1.5 + 0.3
    b = rng.normal(size=(25, 80))
    fast = metrics._ResampledFD(a, b)
    for _ in range(5):
        ia, ib = rng.integers(0, 60, 60), rng.integers(0, 25, 25)
        want = metrics.frechet_distance(a[ia], b[ib])
        assert fast(ia, ib) == pytest.approx(want, rel=1e-7)
    out = metrics.fd_with_ci(a, b, n_boot=50, seed=1)
    assert out["ci_low"] <= out["value"] <= out["ci_high"]
