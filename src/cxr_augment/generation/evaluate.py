"""One generated set against the real images: the metric rows of thesis Tables 13 and 14.

Usage::

    rows = evaluate_set("ddim", gen, gen_y, real, real_y, domain={...}, inception=None, cfg=cfg)

For each class (0, 1) and for both pooled ("all"), every number carries its N, the image size,
the feature extractor and how grey became the extractor's input:

- SSIM / PSNR (thesis 3.4.1) of each generated image against its matched real image (the real
  image of the same class nearest in pixel L2), mean and sd;
- on the domain features (the project's chest X-ray classifier, penultimate layer): Fréchet
  distance with a bootstrap CI, KID (unbiased) with its subset CI, precision / recall /
  density / coverage (k = 5);
- on pytorch-fid's Inception (when its weights file is there): FID with CI, KID, PRDC and IS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cxr_augment.generation import metrics as gm


@dataclass(frozen=True)
class EvalConfig:
    bootstrap: int = 200
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    prdc_k: int = 5
    seed: int = 0


def _feature_metrics(prefix: str, real: np.ndarray, gen: np.ndarray, cfg: EvalConfig) -> dict:
    out: dict = {}
    if len(real) < 2 or len(gen) < 2:
        return out
    fd = gm.fd_with_ci(real, gen, cfg.bootstrap, cfg.seed)
    out.update(
        {
            f"{prefix}_fd": fd["value"],
            f"{prefix}_fd_ci_low": fd["ci_low"],
            f"{prefix}_fd_ci_high": fd["ci_high"],
            f"{prefix}_dim": fd["dim"],
        }
    )
    k = gm.kid(real, gen, cfg.kid_subsets, cfg.kid_subset_size, cfg.seed)
    out.update(
        {
            f"{prefix}_kid": k["mean"],
            f"{prefix}_kid_ci_low": k["ci_low"],
            f"{prefix}_kid_ci_high": k["ci_high"],
            f"{prefix}_kid_subset_size": k["subset_size"],
        }
    )
    if min(len(real), len(gen)) > cfg.prdc_k:
        pr = gm.prdc(real, gen, cfg.prdc_k)
        out.update({f"{prefix}_{m}": pr[m] for m in ("precision", "recall", "density", "coverage")})
    return out


def evaluate_set(
    name: str,
    gen: np.ndarray,
    gen_y: np.ndarray,
    real: np.ndarray,
    real_y: np.ndarray,
    domain: dict,
    inception: dict | None,
    cfg: EvalConfig,
) -> pd.DataFrame:
    """The metric rows of one generated set (per class and pooled).

    Args:
        name: the generator's name.
        gen, gen_y: generated uint8 (M, H, W) images and their classes.
        real, real_y: real uint8 (N, H, W) images (same size) and their classes.
        domain: ``gen`` / ``real`` feature arrays of the domain extractor and its
            ``extractor`` / ``input_rule`` descriptions.
        inception: the same for pytorch-fid's Inception plus ``gen_logits``; None: skipped.
    """
    rows = []
    for cls in (0, 1, "all"):
        g = np.ones(len(gen), bool) if cls == "all" else gen_y == cls
        r = np.ones(len(real), bool) if cls == "all" else real_y == cls
        row = {
            "generator": name,
            "class": str(cls),
            "n_gen": int(g.sum()),
            "n_real": int(r.sum()),
            "image_size": f"{gen.shape[1]}x{gen.shape[2]}" if len(gen) else "",
            "domain_extractor": domain["extractor"],
            "domain_input_rule": domain["input_rule"],
            "match_rule": "same-class real image nearest in pixel L2",
            "prdc_k": cfg.prdc_k,
        }
        if g.sum() and r.sum():
            # SSIM / PSNR against the matched real image of the same class
            parts = []
            for c in (0, 1) if cls == "all" else (cls,):
                gi, ri = np.flatnonzero(gen_y == c), np.flatnonzero(real_y == c)
                if len(gi) and len(ri):
                    parts.append(gm.matched_ssim_psnr(gen[gi], real[ri]))
            matched = pd.concat(parts, ignore_index=True)
            s, p = gm.summarise(matched["ssim"]), gm.summarise(matched["psnr"])
            row.update(ssim_mean=s["mean"], ssim_sd=s["sd"], psnr_mean=p["mean"], psnr_sd=p["sd"])
            row.update(_feature_metrics("domain", domain["real"][r], domain["gen"][g], cfg))
            if inception is not None:
                row["inception_input_rule"] = inception["input_rule"]
                row.update(
                    _feature_metrics("inception", inception["real"][r], inception["gen"][g], cfg)
                )
                logits = inception["gen_logits"][g]
                if len(logits) >= 10:
                    sc = gm.inception_score(logits, splits=10)
                    row.update(inception_is=sc["mean"], inception_is_sd=sc["std"])
        rows.append(row)
    return pd.DataFrame(rows)
