"""Nodes of ``generation`` (thesis 4.6, 5.6): diffusion models, generated sets, their metrics,
Tables 13 and 14, Figure 23, the memorisation check and the sampler sweep.

Every node is ``f(data, params) -> data``; the domain code is in ``cxr_augment.generation``.
The nodes that compute (train, sample, evaluate) take the ``generation`` settings they read as
keyword arguments, each its own parameter input (``pipeline.settings``), so a change to the
tables' and figures' settings leaves them up to date; the tables and figures take the block.
torch and diffusers are imported when a node first runs, not when the pipeline is loaded.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from cxr_augment.preprocess import labels
from cxr_augment.preprocess.tensor_store import TensorStore

log = logging.getLogger(__name__)

CLASS_NAMES = {0: "negative", 1: "positive"}


# --- data -------------------------------------------------------------------------------------


def training_rows(manifest: pd.DataFrame, **params) -> pd.DataFrame:
    """The generators' training images: the ``split`` (train) rows of the observation's two
    classes under the label policy (images without a target are left out).

    Returns:
        key, patient_id, view, store_row, target (0 / 1).
    """
    params = nested(params)
    policy = labels.parse_policy(params["policy"])
    target = labels.impute(manifest[params["observation"]], policy)
    keep = (manifest["split"] == params["split"]).to_numpy() & ~np.isnan(target)
    out = manifest.loc[keep, ["key", "patient_id", "view", "store_row"]].copy()
    out["target"] = target[keep].astype(int)
    if out["target"].nunique() < 2:
        raise ValueError(
            f"generation: the {params['split']} split has images of one class only for "
            f"{params['observation']} under {params['policy']}"
        )
    return out.reset_index(drop=True)


def _model_settings(params: dict, name: str):
    from cxr_augment.generation.models import ScheduleConfig, UNetConfig
    from cxr_augment.generation.training import DiffusionTrainConfig

    spec = params["models"][name]
    preset = params["presets"][spec["preset"]]
    schedule = ScheduleConfig(**{**params["schedule"], **spec.get("schedule", {})})
    train = {**params["train"], **spec.get("train", {})}
    if params.get("device"):
        train["device"] = params["device"]
    return spec, UNetConfig(**preset), schedule, DiffusionTrainConfig(**train)


SEP = "__"  # a keyword argument ``generators__ddim`` is the setting ``generators.ddim``


def nested(settings: dict) -> dict:
    """Keyword arguments of ``generation`` settings back into the block's shape:
    ``{"generators__ddim": x, "metrics": m}`` -> ``{"generators": {"ddim": x}, "metrics": m}``
    (``pipeline.settings`` passes an entry of a setting on its own)."""
    out: dict = {}
    for key, value in settings.items():
        *path, last = key.split(SEP)
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return out


# --- training ---------------------------------------------------------------------------------


def train_model(rows: pd.DataFrame, store: TensorStore, checkpoints, name: str, **params):
    """Train generator model ``name`` of ``generation.models`` (resuming from its checkpoints).

    ``per_class``: one unconditional UNet per class on that class's images (the thesis's way);
    ``class_conditional``: one UNet with a class embedding and a null class (CFG).

    Returns:
        The ``DiffusionModel`` (EMA weights), the training history and the loss-curve figure.
    """
    params = nested(params)
    import torch

    from cxr_augment.classify.checkpoints import CheckpointStore
    from cxr_augment.generation.models import DiffusionModel, build_unet
    from cxr_augment.generation.training import ImageSet, train_unet

    spec, unet_cfg, schedule, train_cfg = _model_settings(params, name)
    channels, conditioning = spec.get("channels", "grey"), spec["conditioning"]
    if conditioning == "per_class":
        jobs = {str(c): rows[rows["target"] == c] for c in sorted(rows["target"].unique())}
    else:
        jobs = {"all": rows}
    unets, histories = {}, []
    for part, sub in jobs.items():
        data = ImageSet(
            store,
            sub["store_row"].to_numpy(),
            unet_cfg.sample_size,
            channels,
            int(params.get("preload_bytes", 1 << 30)),
        )
        y = sub["target"].to_numpy() if conditioning == "class_conditional" else None
        torch.manual_seed(train_cfg.seed)  # the initial weights come from the seed
        unet = build_unet(unet_cfg, channels, 2 if y is not None else None)
        ck = CheckpointStore(checkpoints.folder / part, keep=2, stem="step", digits=8)
        unet, history = train_unet(
            unet,
            data,
            y,
            schedule,
            train_cfg,
            checkpoints=ck,
            fingerprint_extra={
                "model": name,
                "part": part,
                "unet": unet_cfg.__dict__,
                "channels": channels,
                "store": store.fingerprint,
                "keys": _keys_hash(sub["key"]),
                "labels": _keys_hash(sub["target"]),
                "observation": params["observation"],
                "policy": params["policy"],
            },
            desc=f"{name} {part}",
        )
        unets[part] = unet
        histories.append(history.assign(model=name, part=part, images=len(sub)))
    history = pd.concat(histories, ignore_index=True)
    info = {
        "preset": spec["preset"],
        "train": train_cfg.__dict__,
        "images": {p: len(s) for p, s in jobs.items()},
        "steps": {p: int(h["step"].max()) + 1 for p, h in history.groupby("part")},
        "observation": params["observation"],
        "policy": params["policy"],
    }
    model = DiffusionModel(unets, schedule, conditioning, channels, info)
    return model, history, _loss_figure(history, name)


def _keys_hash(keys: pd.Series) -> str:
    return str(pd.util.hash_pandas_object(keys, index=False).sum())


def _loss_figure(history: pd.DataFrame, name: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    for part, h in history.groupby("part"):
        label = {"0": "negative model", "1": "positive model", "all": "class-conditional"}
        smooth = h["loss"].rolling(max(1, len(h) // 20), min_periods=1).mean()
        ax.plot(h["step"], h["loss"], alpha=0.25, lw=0.8)
        ax.plot(
            h["step"], smooth, lw=1.5, label=label.get(part, part), color=ax.lines[-1].get_color()
        )
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss (MSE)")
    ax.set_title(f"Diffusion model '{name}': training loss", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --- generated sets ---------------------------------------------------------------------------


def sampler_config(params: dict, generator: str, **changes):
    from cxr_augment.generation.sampling import SamplerConfig

    s = {**params.get("sampling", {}), **params["generators"][generator].get("sampler", {})}
    if params.get("device"):
        s["device"] = params["device"]
    return SamplerConfig(**{**s, **changes})


def sample_set(model, store: TensorStore, generator: str, **params):
    """The evaluation set of a diffusion generator: ``metrics.n_per_class`` images of each
    class, at the classifier's image size."""
    params = nested(params)
    from cxr_augment.generation.sets import generated_set

    spec = params["generators"][generator]
    n = int(spec.get("n_per_class") or params["metrics"]["n_per_class"])
    return generated_set(
        model,
        {0: n, 1: n},
        sampler_config(params, generator),
        int(params["metrics"]["seed"]),
        store.shape,
        prefix=f"generated/{generator}",
        name=generator,
        model_name=spec["model"],
    )


def traditional_set(rows: pd.DataFrame, store: TensorStore, **params):
    """Table 14's "traditional augmentation" row: ``n_per_class`` training images of each class
    (drawn with the seed) under the combined traditional methods."""
    params = nested(params)
    from cxr_augment.augment import sets as augment

    t = params["traditional"]
    n = int(params["metrics"]["n_per_class"])
    rng = np.random.default_rng(int(t["seed"]))
    picks = []
    for c in (0, 1):
        part = rows[rows["target"] == c]
        idx = rng.choice(len(part), size=n, replace=n > len(part))
        picks.append(part.iloc[np.sort(idx)])
    sel = pd.concat(picks, ignore_index=True)
    selection = sel.groupby(["key", "target"], as_index=False).size()
    selection = selection.rename(columns={"size": "copies"})
    plan = augment.plan(
        rows,
        selection,
        list(t["methods"]),
        t.get("settings", {}),
        int(t["seed"]),
        store.shape,
        prefix="generated/traditional",
    )
    job = augment.job(plan, store, list(t["methods"]), t.get("settings", {}))
    manifest = plan.assign(generator="traditional", origin="augmentation")
    return job, manifest


def _empty_set(shape, generator: str):
    from cxr_augment.preprocess.tensor_store import StoreWrite

    manifest = pd.DataFrame({"key": pd.Series([], dtype=str), "target": pd.Series([], dtype=float)})
    return StoreWrite([], lambda i: None, tuple(shape), f"empty-{generator}"), manifest.assign(
        generator=generator
    )


def stable_diffusion_set(rows: pd.DataFrame, manifest: pd.DataFrame, store, generator, **params):
    """Thesis Stable Models 1 (prompt only) and 2 (LoRA fine-tuned) from a local base model.

    Without ``stable_diffusion.base_model`` the set is empty and its status says it was skipped
    and what to set; a folder that is not a diffusers Stable Diffusion model is an error.

    Returns:
        The store write, the manifest, the status and the LoRA weights (empty when none).
    """
    params = nested(params)
    from cxr_augment.generation import stable_diffusion as sd

    cfg = params["stable_diffusion"]
    mode = params["generators"][generator]["stable_diffusion"]
    ok, message = sd.base_model_status(cfg.get("base_model"))
    if not ok:
        log.warning("generation %s: %s", generator, message)
        job, m = _empty_set(store.shape, generator)
        return job, m, {"status": "skipped", "reason": message}, {}
    import torch

    from cxr_augment.classify.training import resolve_device
    from cxr_augment.preprocess.tensor_store import StoreWrite

    device = resolve_device(params.get("device") or "auto")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    pipe = sd.load_pipeline(cfg["base_model"], device=str(device), dtype=dtype)
    lora = {}
    if mode == "lora":
        settings = sd.LoraSettings(**cfg.get("lora", {}))
        train = manifest.set_index("key").loc[rows["key"]]
        from cxr_augment.preprocess.chexpert import OBSERVATIONS

        caps = sd.captions(
            train.reset_index(), list(cfg.get("caption_observations") or OBSERVATIONS)
        )
        images = np.stack([store[int(r)] for r in rows["store_row"]])
        lora, _ = sd.train_lora(pipe, images, caps, settings, device=str(device))
        pipe = sd.apply_lora(
            sd.load_pipeline(cfg["base_model"], str(device), dtype), lora, settings
        )
    n = int(params["metrics"]["n_per_class"])
    images, keys, targets = [], [], []
    for c in (0, 1):
        prompt = sd.class_prompt(params["observation"], bool(c))
        images.append(
            sd.generate(
                pipe,
                prompt,
                n,
                seed=int(params["metrics"]["seed"]) + c,
                steps=int(cfg["steps"]),
                guidance=float(cfg["guidance"]),
                size=int(cfg["size"]),
                batch_size=int(cfg["batch_size"]),
                out_shape=store.shape,
            )
        )
        keys += [f"generated/{generator}/class{c}/{j:07d}" for j in range(n)]
        targets += [float(c)] * n
    arr = np.concatenate(images)
    m = pd.DataFrame({"key": keys, "target": targets}).assign(
        generator=generator, prompt_mode=mode, base_model=str(cfg["base_model"])
    )
    import hashlib
    import json

    from cxr_augment.generation.models import state_dict_hash

    h = hashlib.sha256(
        json.dumps(
            [
                generator,
                cfg,
                n,
                params["metrics"]["seed"],
                params["observation"],
                list(store.shape),
                state_dict_hash(lora) if lora else "",
            ],
            sort_keys=True,
            default=str,
        ).encode()
    )
    if mode == "lora":
        h.update(store.fingerprint.encode())
    job = StoreWrite(keys, lambda i: arr[i], store.shape, h.hexdigest())
    return job, m, {"status": "ok"}, lora


# --- metrics ----------------------------------------------------------------------------------


def _feature_spec(defaults: dict, experiment: dict, params: dict) -> dict:
    """The spec of ``metrics.feature_experiment``, from the study's defaults and its entry
    (the node reads those two, not the whole study: another experiment's change, or a new
    setting of the study's comparisons, leaves the generation's metrics up to date)."""
    from cxr_augment.classify.experiments import experiment_spec

    name = params["metrics"]["feature_experiment"]
    return experiment_spec(defaults, experiment, name)


def _domain_features(store, keys, state_dict: dict, spec: dict) -> np.ndarray:
    """Penultimate features of the classifier ``spec`` (weights ``state_dict``) for the
    images ``keys`` of ``store``."""
    from cxr_augment.preprocess.tensor_store import torch_dataset

    return _features(torch_dataset(store, list(keys)), len(keys), state_dict, spec)


def _features(dataset, n: int, state_dict: dict, spec: dict) -> np.ndarray:
    from cxr_augment.classify import experiments
    from cxr_augment.classify.models import feature_extractor
    from cxr_augment.classify.training import predict

    model = experiments._model(spec)
    model.load_state_dict(state_dict)
    feats = predict(
        model, dataset, experiments.train_config(spec), features=feature_extractor(model)
    )
    return np.asarray(feats, dtype=np.float64).reshape(n, -1)


def _inception(params: dict):
    """(model, None) when pytorch-fid's weights are there, else (None, the skip message)."""
    from cxr_augment.generation import inception

    path = params["metrics"].get("inception_weights")
    try:
        if not path:
            raise inception.MissingWeights(inception.default_weights_path())
        return inception.build_fid_inception(path), None
    except inception.MissingWeights as err:
        return None, str(err)


def reference_set(
    rows: pd.DataFrame,
    store: TensorStore,
    feature_model: dict,
    feature_defaults: dict,
    feature_experiment: dict,
    **params,
) -> dict:
    """The real side of every comparison: the training images of both classes (at most
    ``metrics.max_reference`` per class, drawn with the seed), their classes, and their
    domain (and, with its weights, Inception) features."""
    params = nested(params)
    cap = params["metrics"].get("max_reference")
    rng = np.random.default_rng(int(params["metrics"]["seed"]))
    picks = []
    for c in (0, 1):
        part = rows[rows["target"] == c]
        if cap and len(part) > int(cap):
            part = part.iloc[np.sort(rng.choice(len(part), int(cap), replace=False))]
        picks.append(part)
    ref = pd.concat(picks, ignore_index=True)
    spec = _feature_spec(feature_defaults, feature_experiment, params)
    out = {
        "keys": ref["key"].tolist(),
        "target": ref["target"].to_numpy(int),
        "domain": _domain_features(store, ref["key"], feature_model, spec),
        "extractor": f"{spec['name']} ({spec['model']['name']}) penultimate layer",
        "input_rule": f"grey uint8 at the classifier's size {store.shape[0]}x{store.shape[1]}, "
        "/ 255, one channel (the classifier's own input)",
    }
    net, skip = _inception(params)
    if net is not None:
        from cxr_augment.generation.inception import INPUT_RULE, inception_features

        images = np.stack([store.get(k) for k in out["keys"]])
        out["inception"], _ = inception_features(net, images, device=_device(params))
        out["inception_rule"] = INPUT_RULE
    out["inception_skipped"] = skip
    return out


def _device(params: dict) -> str:
    from cxr_augment.classify.training import resolve_device

    return str(resolve_device(params.get("device") or "auto"))


def evaluate_generator(
    samples: TensorStore,
    samples_manifest: pd.DataFrame,
    reference: dict,
    store: TensorStore,
    feature_model: dict,
    feature_defaults: dict,
    feature_experiment: dict,
    status: dict | None = None,
    *,
    generator: str,
    **params,
):
    """Every metric of one generated set against the real training images, and the
    memorisation check (nearest real training image of every generated image).

    Returns:
        The metric rows (per class and pooled), the per-image memorisation table and its
        summary (the share closer than the real-to-real nearest-neighbour percentile).
    """
    params = nested(params)
    from cxr_augment.generation import metrics as gm
    from cxr_augment.generation.evaluate import EvalConfig, evaluate_set

    m = params["metrics"]
    if status is not None and status.get("status") == "skipped" or len(samples_manifest) == 0:
        reason = (status or {}).get("reason", "no images generated")
        row = pd.DataFrame([{"generator": generator, "class": "all", "status": reason}])
        return row, pd.DataFrame(), {"generator": generator, "status": reason, "share": np.nan}
    keys = samples_manifest["key"].tolist()
    gen = np.stack([samples.get(k) for k in keys])
    gen_y = samples_manifest["target"].to_numpy(int)
    real = np.stack([store.get(k) for k in reference["keys"]])
    spec = _feature_spec(feature_defaults, feature_experiment, params)
    gen_feats = _domain_features(samples, keys, feature_model, spec)
    domain = {
        "gen": gen_feats,
        "real": reference["domain"],
        "extractor": reference["extractor"],
        "input_rule": reference["input_rule"],
    }
    inception = None
    if "inception" in reference:
        from cxr_augment.generation.inception import build_fid_inception, inception_features

        net = build_fid_inception(m["inception_weights"])
        pool, logits = inception_features(net, gen, device=_device(params))
        inception = {
            "gen": pool,
            "real": reference["inception"],
            "gen_logits": logits,
            "input_rule": reference["inception_rule"],
        }
    cfg = EvalConfig(
        bootstrap=int(m["bootstrap"]),
        kid_subsets=int(m["kid"]["subsets"]),
        kid_subset_size=int(m["kid"]["subset_size"]),
        prdc_k=int(m["prdc_k"]),
        seed=int(m["seed"]),
    )
    table = evaluate_set(generator, gen, gen_y, real, reference["target"], domain, inception, cfg)
    table["status"] = (
        "ok" if inception is not None else "FID/IS skipped: no Inception weights (see note)"
    )
    mem = m["memorisation"]
    per_image, summary = gm.memorisation(
        gen, real, gen_feats, reference["domain"], float(mem["percentile"])
    )
    per_image["key"] = keys
    per_image["nearest_key"] = [reference["keys"][i] for i in per_image["nearest_pixel_index"]]
    per_image["nearest_feature_key"] = [
        reference["keys"][i] for i in per_image["nearest_feature_index"]
    ]
    summary.update(
        generator=generator,
        status="ok",
        max_share=float(mem["max_share"]),
        passed=bool(summary["share"] <= float(mem["max_share"])),
    )
    return table, per_image, summary


# --- tables and figures -----------------------------------------------------------------------


def _pm(mean, sd, digits=4) -> str:
    if mean is None or not np.isfinite(mean):
        return ""
    return f"{mean:.{digits}f} ± {sd:.2f}"


def _ci(row, key: str, fmt: str = ".2f") -> str:
    v = row.get(key)
    if v is None or not np.isfinite(v):
        return ""
    return f"{v:{fmt}} [{row[key + '_ci_low']:{fmt}}, {row[key + '_ci_high']:{fmt}}]"


def generation_table(*metrics_tables, table: dict) -> tuple[pd.DataFrame, str]:
    """Thesis Table 13 or 14: our pooled metrics of each generator beside the thesis's.

    Args:
        table: ``title``, ``generators`` (in order), ``labels`` and ``thesis`` numbers
            (ssim, ssim_sd, psnr, psnr_sd, fid) per generator, ``note``.
        metrics_tables: each generator's metric rows, in ``generators`` order.
    """
    names = table["generators"]
    frames = []
    for name, t in zip(names, metrics_tables, strict=True):
        t = t[t["class"] == "all"].copy()
        t["generator"] = name
        frames.append(t)
    full = pd.concat(frames, ignore_index=True)
    thesis = table.get("thesis", {})
    labels_ = table.get("labels", {})
    shown = []
    for _, r in full.iterrows():
        th = thesis.get(r["generator"], {})
        ok = isinstance(r.get("n_gen"), (int, float, np.integer)) and np.isfinite(r.get("n_gen"))
        shown.append(
            {
                "generator": labels_.get(r["generator"], r["generator"]),
                "N gen / real": f"{int(r['n_gen'])} / {int(r['n_real'])}" if ok else "",
                "SSIM": _pm(r.get("ssim_mean"), r.get("ssim_sd")),
                "PSNR (dB)": _pm(r.get("psnr_mean"), r.get("psnr_sd"), 2),
                "domain FD [95% CI]": _ci(r, "domain_fd"),
                "domain KID x100 [subsets]": _ci(
                    {
                        k: r.get(k, np.nan) * 100
                        for k in ("domain_kid", "domain_kid_ci_low", "domain_kid_ci_high")
                    },
                    "domain_kid",
                    ".3f",
                ),
                "domain P / R / D / C": "/".join(
                    f"{r.get('domain_' + m, np.nan):.2f}"
                    for m in ("precision", "recall", "density", "coverage")
                )
                if np.isfinite(r.get("domain_precision", np.nan))
                else "",
                "FID [CI]": _ci(r, "inception_fd"),
                "IS": _pm(r.get("inception_is"), r.get("inception_is_sd"), 2),
                "thesis SSIM": _pm(th.get("ssim"), th.get("ssim_sd")) if th else "",
                "thesis PSNR": _pm(th.get("psnr"), th.get("psnr_sd"), 2) if th else "",
                "thesis FID": f"{th['fid']:.2f}" if th.get("fid") is not None else "",
                "status": r.get("status", ""),
            }
        )
    show = pd.DataFrame(shown)
    first = full.iloc[0] if len(full) else {}
    md = [
        f"# {table['title']}\n\n",
        f"{table.get('note', '').strip()}\n\n",
        f"Image size {first.get('image_size', '')}; SSIM/PSNR against the matched real image "
        f"({first.get('match_rule', '')}), mean ± sd; domain features: "
        f"{first.get('domain_extractor', '')}, input: {first.get('domain_input_rule', '')}; "
        "FD: 95 % bootstrap CI (bias-corrected); KID x 100 (unbiased) with the 2.5-97.5 % range "
        "of its subset estimates; P/R/D/C: precision, recall, density, coverage "
        f"(k = {first.get('prdc_k', '')}). The domain FD is "
        "not on the thesis's FID scale (another network). FID, KID and IS on pytorch-fid's "
        "InceptionV3 need its weights file pt_inception-2015-12-05-6726825d.pth at the path "
        "in generation.metrics.inception_weights; without it they are skipped.\n\n",
        show.to_markdown(index=False) + "\n",
    ]
    return full, "".join(md)


def _labels(params: dict) -> dict:
    out: dict = {}
    for table in params["tables"].values():
        out.update(table.get("labels", {}))
    return out


def figure23(reference: dict, store: TensorStore, params: dict, *sets):
    """Thesis Figure 23: generated images of each generator and class beside real ones
    (generators without images are named under the figure).

    Args:
        sets: (store, manifest) pairs of the generators in ``figure.generators`` order.
    """
    import matplotlib.pyplot as plt

    f = params["figure"]
    k = int(f["per_class"])
    names = list(f["generators"])
    labels_ = _labels(params)
    ref_y = np.asarray(reference["target"])
    rows = [
        (
            "real (training)",
            [
                [store.get(reference["keys"][i]) for i in np.flatnonzero(ref_y == c)[:k]]
                for c in (0, 1)
            ],
        )
    ]
    skipped = []
    for name, (s, m) in zip(names, zip(sets[0::2], sets[1::2], strict=True), strict=True):
        if len(m) == 0:
            skipped.append(labels_.get(name, name))
            continue
        y = m["target"].to_numpy(int)
        rows.append(
            (
                labels_.get(name, name),
                [[s.get(m["key"].iloc[i]) for i in np.flatnonzero(y == c)[:k]] for c in (0, 1)],
            )
        )
    h, w = store.shape
    cell = 1.0
    fig, axes = plt.subplots(
        len(rows),
        2 * k,
        squeeze=False,
        figsize=(2.2 + cell * 2 * k, 0.5 + cell * h / w * len(rows)),
        gridspec_kw={"wspace": 0.04, "hspace": 0.06},
    )
    for r, (label, per_class) in enumerate(rows):
        for c in (0, 1):
            for j in range(k):
                ax = axes[r, c * k + j]
                ax.set_xticks([])
                ax.set_yticks([])
                if j < len(per_class[c]):
                    ax.imshow(per_class[c][j], cmap="gray", vmin=0, vmax=255)
                if r == 0 and j == 0:
                    ax.set_title(
                        f"{CLASS_NAMES[c]} ({params['observation']})", fontsize=7, loc="left"
                    )
        axes[r, 0].set_ylabel(label, fontsize=6.5, rotation=0, ha="right", va="center")
    note = "Figure 23: generated images by generator and class, beside real training images"
    if skipped:
        note += f"\nno images (skipped, see Table 14): {', '.join(skipped)}"
    fig.suptitle(note, fontsize=7.5)
    fig.subplots_adjust(left=0.27, right=0.99, top=0.9, bottom=0.01)
    return fig


def memorisation_figure(store: TensorStore, params: dict, *sets):
    """The closest generated / training pairs of each generator (by pixel distance), with the
    share of its images below the real-to-real percentile (generators without images are
    named under the title).

    Args:
        sets: (samples store, memorisation table) pairs in ``figure.generators`` order.
    """
    import matplotlib.pyplot as plt

    k = int(params["metrics"]["memorisation"]["pairs_shown"])
    labels_ = _labels(params)
    shown, skipped = [], []
    for name, (s, mem) in zip(
        params["figure"]["generators"], zip(sets[0::2], sets[1::2], strict=True), strict=True
    ):
        (shown if len(mem) else skipped).append((name, s, mem))
    h, w = store.shape
    fig, axes = plt.subplots(
        2 * len(shown),
        k,
        squeeze=False,
        figsize=(2.2 + 0.9 * k, 0.7 + 0.9 * h / w * 2 * len(shown)),
        gridspec_kw={"wspace": 0.04, "hspace": 0.25},
    )
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for r, (name, s, mem) in enumerate(shown):
        closest = mem.sort_values("pixel_distance").head(k)
        share = max(mem["pixel_memorised"].mean(), mem["feature_memorised"].mean())
        for j, (_, row) in enumerate(closest.iterrows()):
            axes[2 * r, j].imshow(s.get(row["key"]), cmap="gray", vmin=0, vmax=255)
            axes[2 * r + 1, j].imshow(store.get(row["nearest_key"]), cmap="gray", vmin=0, vmax=255)
            flag = " *" if row["pixel_memorised"] else ""
            axes[2 * r, j].set_title(f"d={row['pixel_distance']:.1f}{flag}", fontsize=5.5, pad=1.5)
        axes[2 * r, 0].set_ylabel(
            f"{labels_.get(name, name)}\n(memorised: {share:.1%})",
            fontsize=6,
            rotation=0,
            ha="right",
            va="center",
        )
        axes[2 * r + 1, 0].set_ylabel(
            "nearest training image", fontsize=6, rotation=0, ha="right", va="center"
        )
    title = (
        "Memorisation check: each generator's closest generated / training pairs\n"
        "(pixel L2 on [0, 1] intensities; * below the real-to-real "
        f"{params['metrics']['memorisation']['percentile']:g}st percentile)"
    )
    if skipped:
        title += f"\nno images (skipped): {', '.join(labels_.get(n, n) for n, _, _ in skipped)}"
    fig.suptitle(title, fontsize=7)
    fig.subplots_adjust(left=0.3, right=0.99, top=0.93, bottom=0.01)
    return fig


def sampler_sweep(
    model,
    reference: dict,
    store: TensorStore,
    feature_model: dict,
    feature_defaults: dict,
    feature_experiment: dict,
    **params,
):
    """Sampler x steps x guidance weight of one model, scored by the domain FD and KID against
    the real training images (pooled over both classes).

    Returns:
        The sweep table and its figure.
    """
    params = nested(params)
    from cxr_augment.generation import metrics as gm
    from cxr_augment.generation.sampling import SamplerConfig, sample_class
    from cxr_augment.generation.sets import to_store_shape

    sw = params["sweep"]
    spec = _feature_spec(feature_defaults, feature_experiment, params)
    n = int(sw["n_per_class"])
    rows = []
    base = {**params.get("sampling", {}), "device": params.get("device") or "auto"}
    for scheduler in sw["schedulers"]:
        for steps in sw["steps"] if scheduler != "ddpm" else [None]:
            for w in sw["guidance"] if model.conditioning == "class_conditional" else [1.0]:
                cfg = SamplerConfig(
                    **{**base, "scheduler": scheduler, "steps": steps, "guidance": float(w)}
                )
                imgs = np.concatenate(
                    [sample_class(model, c, n, cfg, int(sw["seed"])) for c in (0, 1)]
                )
                imgs = np.stack([to_store_shape(i, store.shape) for i in imgs])
                feats = _features_of_arrays(imgs, feature_model, spec)
                fd = gm.frechet_distance(reference["domain"], feats)
                k = gm.kid(
                    reference["domain"],
                    feats,
                    int(params["metrics"]["kid"]["subsets"]),
                    int(params["metrics"]["kid"]["subset_size"]),
                    int(sw["seed"]),
                )
                rows.append(
                    {
                        "model": sw["model"],
                        "scheduler": scheduler,
                        "steps": steps or model.schedule.num_train_timesteps,
                        "guidance": float(w),
                        "n_gen": len(imgs),
                        "n_real": len(reference["keys"]),
                        "domain_fd": fd,
                        "domain_kid": k["mean"],
                        "domain_kid_ci_low": k["ci_low"],
                        "domain_kid_ci_high": k["ci_high"],
                    }
                )
    table = pd.DataFrame(rows)
    return table, _sweep_figure(table)


def _features_of_arrays(images: np.ndarray, feature_model: dict, spec: dict) -> np.ndarray:
    """``_domain_features`` of images held in memory (as ``torch_dataset`` feeds them)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).float().div_(255.0)
    return _features(torch.utils.data.TensorDataset(x), len(images), feature_model, spec)


def _sweep_figure(table: pd.DataFrame):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    for (scheduler, w), t in table.groupby(["scheduler", "guidance"]):
        t = t.sort_values("steps")
        style = "-" if scheduler == "ddim" else "--"
        for ax, col in zip(axes, ("domain_fd", "domain_kid"), strict=True):
            ax.plot(t["steps"], t[col], style, marker="o", label=f"{scheduler}, w = {w:g}")
    steps = sorted(table["steps"].unique())
    for ax, col in zip(axes, ("domain FD", "domain KID"), strict=True):
        ax.set_xticks(steps)
        ax.set_xlabel("sampling steps")
        ax.set_ylabel(col)
    axes[1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5))
    n = int(table["n_gen"].iloc[0]) if len(table) else 0
    fig.suptitle(
        f"Sampler x steps x guidance weight, {n} images per setting (lower is better)", fontsize=9
    )
    fig.tight_layout()
    return fig
