"""The study's report: which results it holds, in what order, beside the thesis's numbers, and
the answer to the thesis's question in plain words.

``sections`` turns the loaded results (each ``None`` when it was not made) into
``report.html`` sections; ``answer`` reads the research question's table (Table 15, or the
default run's headline table) and says whether baseline < traditional < diffusion holds for
the observation, by how much and with what significance.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from cxr_augment.preprocess.labels import share
from cxr_augment.report import html
from cxr_augment.report.html import Figure, NotRun, Section, Table

SPLIT_WORDS = {
    "validation": "the validation set (it also chose each model's epoch and threshold)",
    "test": "the official test set (the radiologists' labels; held out from every choice)",
    "internal_test": "the internal test set (20 % of train.csv's patients, their report labels "
    "under the experiment's label policy; held out from every choice)",
    "internal_test_truth": "the internal test set scored against the demo's truth",
}
TEST_COLUMNS = [
    "experiment",
    "reference",
    "paired_images",
    "paired_patients",
    "delong_p",
    "delong_p_holm",
    "mcnemar_p",
    "mcnemar_p_holm",
    "diff_roc_auc",
    "diff_roc_auc_ci",
    "diff_roc_auc_p",
    "diff_roc_auc_p_holm",
    "diff_f1",
    "diff_f1_ci",
    "diff_f1_p",
    "diff_f1_p_holm",
    "diff_kappa",
    "diff_kappa_ci",
    "diff_kappa_p",
    "diff_kappa_p_holm",
]
METRICS = ("accuracy", "f1", "roc_auc", "kappa")
COUNTS = ("images", "patients", "positives", "seeds", "paired_images", "paired_patients",
          "resamples", "resamples_used")  # fmt: skip


def counts_as_int(frame: pd.DataFrame) -> pd.DataFrame:
    """Counts read back from a CSV with gaps come as floats: show them as integers."""
    out = frame.copy()
    for c in COUNTS:
        if c in out:
            out[c] = out[c].astype("Int64")
    return out


def _experiment_rows(table: pd.DataFrame) -> pd.DataFrame:
    if "row" in table:
        return table[table["row"] == "experiment"]
    return table


def _test_rows(table: pd.DataFrame) -> pd.DataFrame:
    if "row" in table and (table["row"] == "comparison").any():
        return table[table["row"] == "comparison"]
    if "reference" not in table or "delong_p" not in table:
        return table.iloc[0:0]
    ref = table["reference"].fillna("").astype(str)
    return table[ref != ""]


def _fmt(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def _p(v: float) -> str:
    """A p-value in prose: three significant digits, as the tables show them ("1.00")."""
    return "n/a" if v is None or not np.isfinite(v) else f"{v:#.3g}"


def _p_cell(v: float) -> str:
    """A p-value as the report's p columns show one (three significant digits: "1.00")."""
    return html.format_cell(v, p_value=True)[0]


def _value(table: pd.DataFrame, split: str, experiment: str, column: str) -> float:
    rows = _experiment_rows(table)
    hit = rows[(rows["split"] == split) & (rows["experiment"] == experiment)]
    return float(hit[column].iloc[0]) if len(hit) and column in hit else float("nan")


def _pair(table: pd.DataFrame, split: str, a: str, b: str) -> pd.Series | None:
    rows = _test_rows(table)
    hit = rows[(rows["split"] == split) & (rows["experiment"] == a) & (rows["reference"] == b)]
    return hit.iloc[0] if len(hit) else None


def triplets(table: pd.DataFrame, baseline: str) -> list[tuple[str, str]]:
    """(traditional, diffusion) pairs the table compares as the thesis does: each against the
    baseline, and the diffusion experiment against the traditional one."""
    rows = _test_rows(table)
    pairs = set(zip(rows["experiment"], rows["reference"], strict=True))
    out = []
    for d, t in dict.fromkeys(zip(rows["experiment"], rows["reference"], strict=True)):
        if t != baseline and (t, baseline) in pairs and (d, baseline) in pairs:
            out.append((t, d))
    return out


def verdict(aucs: tuple[float, float, float], ps: tuple[float, float, float], alpha: float) -> str:
    """Whether baseline < traditional < diffusion holds: ``aucs`` (baseline, traditional,
    diffusion), ``ps`` the Holm-adjusted p-values of traditional vs baseline, diffusion vs
    baseline and diffusion vs traditional."""
    b, t, d = aucs
    if not all(np.isfinite(aucs)):
        return "cannot be read (a result is missing)"
    if not b < t < d:
        return "does not hold"
    if all(np.isfinite(p) and p < alpha for p in ps):
        return "holds, every step significant"
    return "holds in direction, but not every step is significant"


def disagreements(rows: list[pd.Series], alpha: float) -> str:
    """A sentence naming the comparisons whose two tests of the AUC difference read
    differently at ``alpha`` after Holm's adjustment: the clustered DeLong test (which the
    verdict uses) and the patient bootstrap of the same difference. Empty when they agree."""
    odd = []
    for r in rows:
        if r is None or "diff_roc_auc_p_holm" not in r:
            continue
        d, b = float(r["delong_p_holm"]), float(r["diff_roc_auc_p_holm"])
        if np.isfinite(d) and np.isfinite(b) and (d < alpha) != (b < alpha):
            ci = r.get("diff_roc_auc_ci", "")
            odd.append(
                f"{r['experiment']} against {r['reference']} (DeLong Holm {_p(d)}, bootstrap "
                f"Holm {_p(b)}{', difference CI ' + ci if isinstance(ci, str) and ci else ''})"
            )
    if not odd:
        return ""
    return (
        "The patient bootstrap of the same AUC difference reads otherwise for "
        + "; ".join(odd)
        + ": the two tests disagree there, so read that step as uncertain (the verdict uses "
        "DeLong's; the tables show both)."
    )


def _names(r: pd.Series, split: str) -> str:
    return f"{r['experiment']} against {r['reference']} on {split}"


#: the tests of a comparison read at each classifier's threshold: column, words, the
#: difference whose sign says which way
_AT_THRESHOLD = (
    ("mcnemar_p_holm", "McNemar", "accuracy"),
    ("diff_f1_p_holm", "bootstrap ΔF1", "diff_f1"),
    ("diff_kappa_p_holm", "bootstrap Δkappa", "diff_kappa"),
)


def significance(read: list[tuple[str, pd.Series | None]], alpha: float) -> str:
    """A sentence saying which of the answer's comparisons are significant on AUC after
    Holm's adjustment (clustered DeLong), or that none is, with the smallest adjusted p and
    every comparison that has it (the tests read at a threshold: ``at_threshold``)."""
    rows = [(split, r) for split, r in read if r is not None]
    ps = [(float(r["delong_p_holm"]), split, r) for split, r in rows
          if "delong_p_holm" in r and np.isfinite(float(r["delong_p_holm"]))]  # fmt: skip
    if not ps:
        return "No comparison could be tested."
    hits = [f"{_names(r, split)} (Holm p = {_p(p)})" for p, split, r in ps if p < alpha]
    if hits:
        out = f"On AUC (clustered DeLong), significant after Holm's adjustment at {alpha}: "
        out += "; ".join(hits) + "."
    else:
        low = min(p for p, _, _ in ps)
        tied = [_names(r, split) for p, split, r in ps if p == low]
        out = (
            f"On AUC (clustered DeLong), **no comparison is significant** after Holm's "
            f"adjustment at {alpha}: the smallest adjusted p is {_p(low)} ({'; '.join(tied)})."
        )
    return out


def at_threshold(
    read: list[tuple[str, pd.Series | None]], alpha: float, table: pd.DataFrame | None = None
) -> str:
    """A paragraph listing, per test read at each classifier's threshold (McNemar, and the
    bootstrap differences of F1 and kappa), the comparisons significant after Holm's
    adjustment with their direction (``table`` gives the accuracies McNemar's is read from);
    empty when there are none."""
    rows = [(split, r) for split, r in read if r is not None]
    items = []
    for col, word, diff in _AT_THRESHOLD:
        # one item per split and reference: the reference's value once, then each experiment's
        found: dict[tuple[str, str], list[str]] = {}
        for split, r in rows:
            if col not in r or not np.isfinite(float(r[col])) or float(r[col]) >= alpha:
                continue
            if diff == "accuracy" and table is not None:
                value = f"{_fmt(_value(table, split, r['experiment'], 'accuracy'))}, "
            elif diff in r and np.isfinite(float(r[diff])):
                value = f"{float(r[diff]):+.3f}, "
            else:
                value = ""
            found.setdefault((split, str(r["reference"])), []).append(
                f"{r['experiment']} ({value}Holm p = {_p(float(r[col]))})"
            )
        for (split, reference), hits in found.items():
            if diff == "accuracy" and table is not None:
                ref = f"{reference}'s accuracy {_fmt(_value(table, split, reference, 'accuracy'))}"
            else:
                ref = reference
            items.append(f"{word} on {split}, against {ref}: " + "; ".join(hits) + ".")
    if not items:
        return ""
    return "\n- ".join(
        [f"At each classifier's threshold, significant after Holm's adjustment at {alpha}:", *items]
    )


def thresholds_sentence(table: pd.DataFrame, splits: list[str]) -> str:
    """How accuracy, F1 and kappa were read: at each classifier's threshold, with the values
    (empty for a table made before it kept the thresholds)."""
    rows = _experiment_rows(table)
    if "threshold" not in rows:
        return ""
    rows = rows[rows["split"].isin(splits)].drop_duplicates("experiment")
    values = [f"{e} {float(t):.4f}" for e, t in zip(rows["experiment"], rows["threshold"],
              strict=True) if pd.notna(t)]  # fmt: skip
    if not values:
        return ""
    several = rows["seeds"].max() > 1 if "seeds" in rows else False
    return (
        "Accuracy, F1, kappa and McNemar's test read each classifier at its own threshold, the "
        "one with the best F1 on the validation set"
        + (" (each seed its own; their mean: " if several else " (")
        + ", ".join(values)
        + "). Few validation positives make that choice noisy: where a threshold calls most "
        "test images positive, accuracy falls far while AUC, which uses no threshold, need not."
    )


def answer(tables: dict[str, pd.DataFrame | None], spec: dict) -> tuple[list[str], str | None]:
    """The report's first paragraphs: the thesis's question answered on this data."""
    baseline = spec["baseline"]
    alpha = float(spec.get("alpha", 0.05))
    for group in spec["groups"]:
        table = tables.get(group)
        if table is None or table.empty:
            continue
        out, answered, read_all = [], [], []
        pairs = triplets(table, baseline)
        for split in spec["splits"]:
            if not (table["split"] == split).any():
                continue
            n = _experiment_rows(table)
            base = n[(n["split"] == split) & (n["experiment"] == baseline)]
            if base.empty:
                continue
            size = (
                f"{int(base['images'].iloc[0])} images of {int(base['patients'].iloc[0])} "
                f"patients, {int(base['positives'].iloc[0])} positive"
            )
            b_auc = _value(table, split, baseline, "roc_auc")
            b_ci = base["roc_auc_ci"].iloc[0] if "roc_auc_ci" in base else ""
            n_seeds = int(base["seeds"].iloc[0])
            lead = (
                f"**On {SPLIT_WORDS.get(split, split)}**: {size}; {n_seeds} "
                f"seed{'s' if n_seeds > 1 else ''}. The {spec['observation']} baseline "
                f"({baseline}) has AUC {_fmt(b_auc)} {b_ci if isinstance(b_ci, str) else ''}."
            )
            words = []  # one list item per strategy (traditional and diffusion), then the rest
            for t, d in pairs:
                t_auc, d_auc = (
                    _value(table, split, t, "roc_auc"),
                    _value(table, split, d, "roc_auc"),
                )
                tb, db, dt = (_pair(table, split, t, baseline), _pair(table, split, d, baseline),
                              _pair(table, split, d, t))  # fmt: skip
                ps = tuple(
                    float(r["delong_p_holm"]) if r is not None else float("nan")
                    for r in (tb, db, dt)
                )
                raw = tuple(
                    float(r["delong_p"]) if r is not None else float("nan") for r in (tb, db, dt)
                )
                v = verdict((b_auc, t_auc, d_auc), ps, alpha)
                words.append(
                    f"Traditional ({t}): AUC {_fmt(t_auc)} ({t_auc - b_auc:+.3f} against the "
                    f"baseline; clustered DeLong p = {_p(raw[0])}, Holm {_p(ps[0])}). Diffusion "
                    f"({d}): AUC {_fmt(d_auc)} ({d_auc - b_auc:+.3f} against the baseline, p = "
                    f"{_p(raw[1])}, Holm {_p(ps[1])}; {d_auc - t_auc:+.3f} against traditional, "
                    f"p = {_p(raw[2])}, Holm {_p(ps[2])}). Baseline < traditional < diffusion: "
                    f"**{v}**."
                )
            others = _test_rows(table)
            others = others[
                (others["split"] == split)
                & (others["reference"] == baseline)
                & ~others["experiment"].isin([x for p in pairs for x in p])
            ]
            for _, r in others.iterrows():
                e_auc = _value(table, split, r["experiment"], "roc_auc")
                chosen = (spec.get("chosen") or {}).get(r["experiment"])
                words.append(
                    f"{r['experiment']}"
                    + (f" (chosen on validation: {chosen})" if chosen else "")
                    + f": AUC {_fmt(e_auc)} ({e_auc - b_auc:+.3f} against the "
                    f"baseline; p = {_p(float(r['delong_p']))}, Holm "
                    f"{_p(float(r['delong_p_holm']))})."
                )
            read = [_pair(table, split, a, b) for t, d in pairs
                    for a, b in ((t, baseline), (d, baseline), (d, t))]  # fmt: skip
            odd = disagreements(read + [r for _, r in others.iterrows()], alpha)
            if odd:
                words.append(odd)
            out.append("\n- ".join([lead.rstrip(), *words]))
            answered.append(split)
            read_all += [(split, r) for r in read + [r for _, r in others.iterrows()]]
        if out:
            tests = _test_rows(table)
            out.append(
                significance(read_all, alpha)
                + f" The table read here is **{group}** (source: report.{group}.table). "
                f"p-values are DeLong's test clustered by patient "
                f"({_delong_reference(tests[tests['split'].isin(answered)])}), Holm-adjusted "
                f"within the table's comparisons on that split; significance at {alpha}. "
                "The full tables, with F1, Cohen's kappa, the clustered McNemar test and "
                "patient-bootstrap differences, follow."
            )
            for extra in (
                thresholds_sentence(table, answered),
                at_threshold(read_all, alpha, table),
            ):
                if extra:
                    out.append(extra)
            return out, group
    env = spec.get("env")
    how = f"`kedro run --env {env}`" if env else "`kedro run` (or `make run`)"
    return [
        "**Not run yet:** neither Table 15 nor the default run's headline table exists. "
        f"{how} makes the headline table."
    ], None


def in_env(command: str, env: str | None) -> str:
    """``command`` with ``--env env`` after each ``kedro run`` that names no environment
    (none for the default environment)."""
    if not env:
        return command
    return re.sub(r"\bkedro run\b(?![^&;|]*--env)", f"kedro run --env {env}", command)


def _thesis_frame(thesis: dict | None, experiments: list[str]) -> pd.DataFrame | None:
    if not thesis:
        return None
    rows = [{"experiment": e, **thesis["rows"][e]} for e in experiments if e in thesis["rows"]]
    for row in rows:  # a row taken for an experiment whose source validation chose
        if "label" in row:
            row["experiment"] = row.pop("label")
    return pd.DataFrame(rows) if rows else None


#: the record of the source validation chose for an experiment (``augmentation.choose``)
CHOSEN = "{experiment}.chosen_augmentation"


def source_chosen(record) -> str | None:
    """The label a ``chosen_augmentation`` record chose by its first rule (the source, where
    later rules choose the source's settings); None for no record."""
    if not isinstance(record, dict):
        return None
    return (record.get("decisions") or [record])[0].get("chosen")


def resolve_chosen(thesis: dict | None, sources: dict) -> dict | None:
    """The thesis's rows with one added for each experiment of ``thesis["chosen"]`` whose
    source was chosen on validation: the thesis's row of that source (``{experiment: {source:
    thesis row}}``), labelled with both names; none while the choice has not been made."""
    if not thesis or not thesis.get("chosen"):
        return thesis
    rows = dict(thesis.get("rows") or {})
    for experiment, by_source in thesis["chosen"].items():
        record = sources.get(CHOSEN.format(experiment=experiment))
        picked = by_source.get(source_chosen(record))
        if picked in rows:
            rows[experiment] = {**rows[picked], "label": f"{experiment} (thesis: {picked})"}
    return {**thesis, "rows": rows}


def group_tables(
    key: str, title: str, asset: str, table: pd.DataFrame, columns: list[str], thesis: dict | None
) -> list[Table]:
    """A group report as one metrics table and one tests table per split."""
    out = []
    splits = list(dict.fromkeys(table["split"]))
    # the thesis read Tables 8-10 on validation; its Table 11, 12 and 15 accuracies fit its
    # internal split of train.csv: its numbers stand beside ours there
    thesis_split = next((s for s in ("validation", "internal_test") if s in splits), splits[0])
    exp = _experiment_rows(table)
    tests = _test_rows(table)
    for split in splits:
        part = exp[exp["split"] == split]
        seeds = sorted({int(s) for s in part["seeds"].dropna()})
        images = part["images"].dropna()
        meta = {
            "split": SPLIT_WORDS.get(split, split),
            "N": (
                f"{int(images.min())}-{int(images.max())} images"
                if len(images) and images.min() != images.max()
                else f"{int(images.iloc[0])} images" if len(images) else "n/a"
            ),
            "seeds": ", ".join(str(s) for s in seeds) + (" (one seed: no across-seed interval)"
                                                        if seeds == [1] else ""),
            "CIs": "95 % patient bootstrap of the seed mean "
            f"({int(part['resamples'].max()) if 'resamples' in part and len(part) else 0} resamples)",
        }  # fmt: skip
        if "threshold" in part:
            meta["threshold"] = ("each classifier's own, the best F1 on validation (the seeds' "
                                 "mean); accuracy, F1 and kappa are read at it, AUC uses none")  # fmt: skip
        cols = [c for c in columns if c in part]
        show_thesis = split == thesis_split and thesis is not None
        notes = [thesis["note"]] if show_thesis and thesis.get("note") else []
        out.append(
            Table(
                key=f"{key}-{split}",
                title=f"{title} — {split}",
                frame=counts_as_int(part[cols].reset_index(drop=True)),
                asset=asset,
                meta=meta,
                notes=notes,
                thesis=_thesis_frame(thesis, list(part["experiment"])) if show_thesis else None,
            )
        )
        tpart = tests[tests["split"] == split]
        if len(tpart):
            tcols = [c for c in TEST_COLUMNS if c in tpart]
            frame, paired = tests_frame(tpart[tcols].reset_index(drop=True))
            out.append(
                Table(
                    key=f"{key}-{split}-tests",
                    title=f"{title} — {split}: paired tests",
                    frame=frame,
                    asset=asset,
                    meta={
                        "split": SPLIT_WORDS.get(split, split),
                        **paired,
                        "test family": f"the {len(tpart)} comparisons on this split; Holm per test",
                        "tests": f"DeLong clustered by patient (Obuchowski 1997; "
                        f"{_delong_reference(tpart)}); McNemar "
                        "adjusted for clustering (Durkalski et al. 2003); patient-bootstrap "
                        "differences of the seed means with 95 % CIs (p: bootstrap); each p raw, Holm's "
                        "in brackets",
                    },
                )
            )
    return out


def _delong_reference(tests: pd.DataFrame) -> str:
    """How the DeLong p-values of ``tests`` were read: the degrees of freedom of the t
    reference per row (infinite for the normal reference; absent in tables made before it)."""
    df = tests["delong_df"].dropna() if "delong_df" in tests else pd.Series(dtype=float)
    finite = df[np.isfinite(df)]
    if not len(finite):
        return "normal reference"
    lo, hi = f"{finite.min():.1f}", f"{finite.max():.1f}"
    return f"t reference, Satterthwaite's degrees of freedom {lo if lo == hi else f'{lo}-{hi}'}"


DIFF_WORDS = {"roc_auc": "ΔAUC", "f1": "ΔF1", "kappa": "Δkappa"}


def _p_and_holm(p: object, holm: object) -> object:
    """ "0.0331 (0.132)": the raw p-value and, in brackets, Holm's."""
    if html.is_missing(p):
        return np.nan
    return _p_cell(p) if html.is_missing(holm) else f"{_p_cell(p)} ({_p_cell(holm)})"


def _with_ci(v: object, ci: object, digits: int = 4) -> object:
    """ "0.0608 [-0.012, 0.134]": a difference with its CI."""
    if html.is_missing(v):
        return np.nan
    text = f"{float(v):.{digits}f}"
    return text if html.is_missing(ci) or not str(ci).strip() else f"{text} {str(ci).strip()}"


def tests_frame(tests: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """A split's paired tests folded to fit the page (they were 17 columns): each test's raw
    and Holm p-value in one cell, each difference with its CI; the reference and the paired
    images and patients go to the table's header when every comparison shares them.
    Returns (frame, meta)."""
    out = pd.DataFrame({"experiment": tests["experiment"].to_numpy()})
    meta = {}
    if "reference" in tests:
        if tests["reference"].nunique(dropna=False) == 1:
            meta["reference"] = str(tests["reference"].iloc[0])
        else:
            out["reference"] = tests["reference"].to_numpy()
    counts = [c for c in ("paired_images", "paired_patients") if c in tests]
    shared = all(tests[c].nunique(dropna=False) == 1 for c in counts)
    if counts and shared:
        images = tests["paired_images"].iloc[0] if "paired_images" in tests else None
        patients = tests["paired_patients"].iloc[0] if "paired_patients" in tests else None
        words = [f"{int(images)} images" if not html.is_missing(images) else "",
                 f"{int(patients)} patients" if not html.is_missing(patients) else ""]  # fmt: skip
        meta["paired"] = " of ".join(w for w in words if w) or "n/a"
    else:
        for c in counts:
            out[c] = tests[c].astype("Int64").reset_index(drop=True)
    for test, name in (("delong", "DeLong p (Holm)"), ("mcnemar", "McNemar p (Holm)")):
        if f"{test}_p" in tests:
            holm = tests.get(f"{test}_p_holm", pd.Series(np.nan, index=tests.index))
            out[name] = [_p_and_holm(p, h) for p, h in zip(tests[f"{test}_p"], holm, strict=True)]
    for metric, word in DIFF_WORDS.items():
        if f"diff_{metric}" not in tests:
            continue
        ci = tests.get(f"diff_{metric}_ci", pd.Series(np.nan, index=tests.index))
        out[f"{word} [CI]"] = [
            _with_ci(v, c) for v, c in zip(tests[f"diff_{metric}"], ci, strict=True)
        ]
        holm = tests.get(f"diff_{metric}_p_holm")
        raw = tests.get(f"diff_{metric}_p")
        if raw is not None:  # the bootstrap's p as the tests' are shown: raw (Holm)
            holm = holm if holm is not None else pd.Series(np.nan, index=tests.index)
            out[f"{word} p (Holm)"] = [_p_and_holm(p, h) for p, h in zip(raw, holm, strict=True)]
        elif holm is not None:  # a table made before the raw p was kept: Holm's alone
            out[f"{word} p, Holm"] = holm.to_numpy()
    return out, meta


def _json_frame(data: dict) -> pd.DataFrame:
    """A JSON summary as field / value rows: nested objects flattened to dotted fields
    (``options.ddim.roc_auc``), lists of plain values joined with commas, lists of objects
    numbered from 1 (``decisions.2.chosen``), numbers left for the table's rounding, nothing
    (null, an empty object or list: a rule that chose nothing) as "none"; anything else as
    compact JSON."""
    rows: list[dict] = []

    def add(field: str, v) -> None:
        if isinstance(v, dict) and v:
            for k, sub in v.items():
                add(f"{field}.{k}" if field else str(k), sub)
        elif isinstance(v, list) and v and all(isinstance(x, str | int | float | bool) for x in v):
            rows.append({"field": field, "value": ", ".join(str(x) for x in v)})
        elif isinstance(v, list) and v and all(isinstance(x, dict) and x for x in v):
            for i, sub in enumerate(v, start=1):  # a list of objects: decisions.1.chosen, ...
                add(f"{field}.{i}" if field else str(i), sub)
        elif v is None or (isinstance(v, dict | list) and not v):
            rows.append({"field": field, "value": "none"})
        elif isinstance(v, dict | list):
            rows.append({"field": field, "value": json.dumps(v, sort_keys=True)})
        else:
            rows.append({"field": field, "value": v})

    add("", data)
    return pd.DataFrame(rows, columns=["field", "value"])


def split_counts(manifest: pd.DataFrame) -> pd.DataFrame:
    """Thesis Table 2 (and the splits of train.csv): images of each class per split, under the
    observations' targets (the labels on validation and test)."""
    rows = []
    for split in ("validation", "test", "train", "internal_test"):
        part = manifest[manifest["split"] == split]
        if part.empty:
            continue
        row = {"split": split, "images": len(part), "patients": part["patient_id"].nunique()}
        for col, name in (("target_pneumothorax", "Pneumothorax"),
                          ("target_pleural_effusion", "Pleural Effusion")):  # fmt: skip
            if col in part:
                row[f"{name} negative"] = int((part[col] == 0).sum())
                row[f"{name} positive"] = int((part[col] == 1).sum())
        rows.append(row)
    return pd.DataFrame(rows)


THESIS_TABLE2 = pd.DataFrame(
    [
        {"split": "validation", "Pneumothorax negative": 226, "Pneumothorax positive": 8,
         "Pleural Effusion negative": 167, "Pleural Effusion positive": 67},
        {"split": "test", "Pneumothorax negative": 658, "Pneumothorax positive": 10,
         "Pleural Effusion negative": 548, "Pleural Effusion positive": 120},
    ]
)  # fmt: skip


def label_policies_thesis(
    spec: dict | None, ours: pd.DataFrame
) -> tuple[pd.DataFrame | None, str | None]:
    """Thesis Tables 6-7 beside ours: ``spec["rows"]`` lists ``[observation, method, positive,
    negative, uncertain, not mentioned]`` (``null``: mapped away, shown "—"), in ``ours``'s
    columns; only the observations ``ours`` has. Returns (frame or ``None``, ``spec``'s note)."""
    if not spec or not spec.get("rows"):
        return None, None
    columns = ["observation", "method", "positive", "negative", "uncertain", "not mentioned"]
    thesis = pd.DataFrame([list(r) for r in spec["rows"]], columns=columns)
    if "observation" in ours:
        thesis = thesis[thesis["observation"].isin(set(ours["observation"]))]
    thesis = thesis[[c for c in ours.columns if c in thesis]].reset_index(drop=True)
    thesis = thesis.astype(object).where(thesis.notna(), "—")
    return (thesis if len(thesis) else None), spec.get("note")


LABEL_STATES = ("positive", "uncertain", "negative", "not_mentioned")


_CELL = re.compile(r"^\s*(\d+)\s*\(\s*[\d.]+\s*%\s*\)\s*$")


def reshare(frame: pd.DataFrame) -> pd.DataFrame:
    """Tables 6-7's "count (share %)" cells with each share recomputed from the counts, half up
    (``share``): a row's images are the sum of its cells' counts. A row whose cells are not all
    of that form is left as it is."""
    states = [c for c in ("positive", "negative", "uncertain", "not mentioned") if c in frame]
    out = frame.copy()
    for i, row in frame.iterrows():
        cells = {c: row[c] for c in states if isinstance(row[c], str)}
        found = {c: _CELL.match(v) for c, v in cells.items()}
        if not cells or not all(found.values()):
            continue
        counts = {c: int(m.group(1)) for c, m in found.items()}
        total = sum(counts.values())
        if total > 0:
            for c, n in counts.items():
                out.at[i, c] = f"{n} ({share(n, total)}%)"
    return out


def label_distribution(
    table: pd.DataFrame, printed: dict | None = None
) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    """Thesis Table 1 folded to fit a page: per observation and label state, ours as
    "count (percent %)" and, beside it, the thesis's percentages as it printed them
    (``printed``: observation -> [positive, uncertain, negative, not mentioned]; without it,
    the table's ``<state>_pct_thesis`` columns, computed from the thesis's counts). Returns
    (ours, thesis or ``None``, a note on the images)."""
    states = [s for s in LABEL_STATES if s in table]
    ours = pd.DataFrame({"observation": table["observation"]})
    # the share from the counts (the table's own percentages are rounded already)
    images = table["images"] if "images" in table else pd.Series(np.nan, index=table.index)
    for s in states:
        ours[s.replace("_", " ")] = [
            f"{int(c)} ({share(c, n)}%)" if pd.notna(n) and n > 0 else f"{int(c)}"
            for c, n in zip(table[s], images, strict=True)
        ]
    thesis_cols = [f"{s}_pct_thesis" for s in states]
    thesis, source = None, ""
    if printed and set(states) == set(LABEL_STATES):
        thesis = pd.DataFrame({"observation": table["observation"]})
        for i, s in enumerate(LABEL_STATES):
            thesis[s.replace("_", " ")] = [
                f"{float(printed[o][i]):.2f}%" if o in printed else "n/a"
                for o in table["observation"]
            ]
        source = " The thesis's shares are as it printed them."
    elif all(c in table for c in thesis_cols):
        thesis = pd.DataFrame({"observation": table["observation"]})
        for s, c in zip(states, thesis_cols, strict=True):
            thesis[s.replace("_", " ")] = [f"{v:.2f}%" for v in table[c]]  # as stored
        source = " The thesis's shares are computed from its counts (of 223,414 images)."
    totals = sorted({int(n) for n in images.dropna()})
    note = (
        f"Images of train.csv: {', '.join(f'{n:,}' for n in totals)}; each cell: images with "
        "the label (their share of all images)."
        if totals
        else "Each cell: images with the label."
    )
    return ours, thesis, note + (source if thesis is not None else "")


#: the settings a generation-metrics table repeats on every row: the table's header instead
GENERATION_SETTINGS = {
    "n_real": "real images",
    "image_size": "image size",
    "match_rule": "SSIM/PSNR against",
    "domain_extractor": "domain features",
    "domain_input_rule": "domain input",
    "domain_dim": "feature dimension",
    "prdc_k": "P/R/D/C k",
    "domain_kid_subset_size": "KID subset size",
}


INCEPTION_NOTE = (
    "FID, KID and IS on pytorch-fid's InceptionV3 need its weights file "
    "pt_inception-2015-12-05-6726825d.pth at the path in generation.metrics.inception_weights "
    "(nothing is downloaded); without it they are skipped."
)


def _mean_sd(mean: object, sd: object, digits: int) -> object:
    """ "0.6314 (0.067)": a mean and, in brackets, its sd."""
    if html.is_missing(mean):
        return np.nan
    return f"{float(mean):.{digits}f}" + (
        "" if html.is_missing(sd) else f" ({float(sd):.{digits}f})"
    )


def _range(v: object, lo: object, hi: object, digits: int, scale: float = 1.0) -> object:
    if html.is_missing(v):
        return np.nan
    text = f"{float(v) * scale:.{digits}f}"
    if html.is_missing(lo) or html.is_missing(hi):
        return text
    return f"{text} [{float(lo) * scale:.{digits}f}, {float(hi) * scale:.{digits}f}]"


def fd_sweep_frame(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str], list[str]]:
    """The sampler sweep scored by feature distance (``generation.report.sweep.table``): the
    settings every row shares in the header, one row per scheduler x steps x guidance, domain
    FD and KID with its subsets' interval (KID unscaled, as the sweep's figure plots it; Table
    14 gives it x 100), and the lowest FD named in a note."""
    meta, shared = {}, set()
    for col, word in (("model", "model"), ("n_gen", "generated images per setting (both classes)"),
                      ("n_real", "real images")):  # fmt: skip
        values = table[col].dropna().unique() if col in table else []
        if len(values) == 1:
            meta[word] = str(values[0])
            shared.add(col)
    out = pd.DataFrame(
        {c: table[c].to_numpy() for c in ("model", "scheduler", "steps") if c in table
         and c not in shared}
    )  # fmt: skip
    if "guidance" in table:
        out["guidance"] = [f"{float(w):g}" for w in table["guidance"]]
    if "n_gen" in table and "n_gen" not in shared:
        out["images"] = table["n_gen"].astype("Int64").to_numpy()
    nan = pd.Series(np.nan, index=table.index)
    get = table.get
    out["domain FD"] = [_range(v, np.nan, np.nan, 2) for v in get("domain_fd", nan)]
    out["domain KID [subsets]"] = [
        _range(v, lo, hi, 4)
        for v, lo, hi in zip(get("domain_kid", nan), get("domain_kid_ci_low", nan),
                             get("domain_kid_ci_high", nan), strict=True)
    ]  # fmt: skip
    notes = ["Lower is better: the generated images' features lie nearer the real training "
             "images'. Each setting's images are scored alone; the setting Table 15 uses is "
             "chosen downstream, by the validation AUC of a classifier trained with it."]  # fmt: skip
    fd = pd.to_numeric(get("domain_fd", nan), errors="coerce")
    if fd.notna().any():
        best = table.loc[fd.idxmin()]
        words = ", ".join(
            f"{c} {best[c]:g}" if c == "guidance" else f"{c} {best[c]}"
            for c in ("scheduler", "steps", "guidance") if c in table
        )  # fmt: skip
        notes.append(f"Lowest domain FD: {words} ({float(best['domain_fd']):.2f}).")
    notes.append("Domain FD and KID are on the domain network's features, not on the thesis's "
                 "FID scale; KID unscaled here, as in the figure (Tables 13-14 give it x 100).")  # fmt: skip
    return out, meta, notes


def generation_frame(
    table: pd.DataFrame, spec: dict | None = None
) -> tuple[pd.DataFrame, dict[str, str], list[str], pd.DataFrame | None]:
    """A generation-metrics table (Tables 13, 14, a generator's per-class metrics) folded to fit
    the page: one column per metric with its CI or sd in brackets, the settings every row
    shares in the header, each status once in the notes, and the thesis's numbers beside ours
    from ``spec`` (``generation.tables.<table>``: ``labels``, ``thesis``).

    Returns:
        (frame, meta, notes, thesis frame or None).
    """
    spec = spec or {}
    labels = spec.get("labels", {})
    out = pd.DataFrame({"generator": [labels.get(g, g) for g in table["generator"]]})
    if "class" in table and set(table["class"].astype(str)) != {"all"}:
        out["class"] = table["class"].astype(str).to_numpy()
    meta, shown_settings = {}, set()
    for col, word in GENERATION_SETTINGS.items():
        values = table[col].dropna().unique() if col in table else []
        if len(values) == 1:
            v = values[0]
            meta[word] = f"{int(v)}" if isinstance(v, float) and float(v).is_integer() else str(v)
            shown_settings.add(col)
    if "n_gen" in table:
        out["images"] = table["n_gen"].astype("Int64").reset_index(drop=True)
    if "n_real" in table and "n_real" not in shown_settings:
        out["real images"] = table["n_real"].astype("Int64").reset_index(drop=True)
    get = table.get
    out["SSIM (sd)"] = [
        _mean_sd(m, d, 4) for m, d in zip(get("ssim_mean"), get("ssim_sd"), strict=True)
    ]
    out["PSNR dB (sd)"] = [
        _mean_sd(m, d, 2) for m, d in zip(get("psnr_mean"), get("psnr_sd"), strict=True)
    ]
    nan = pd.Series(np.nan, index=table.index)
    out["domain FD [95 % CI]"] = [
        _range(v, lo, hi, 2)
        for v, lo, hi in zip(get("domain_fd", nan), get("domain_fd_ci_low", nan),
                             get("domain_fd_ci_high", nan), strict=True)
    ]  # fmt: skip
    out["domain KID x100 [subsets]"] = [
        _range(v, lo, hi, 3, 100.0)
        for v, lo, hi in zip(get("domain_kid", nan), get("domain_kid_ci_low", nan),
                             get("domain_kid_ci_high", nan), strict=True)
    ]  # fmt: skip
    for m, word in (("precision", "P"), ("recall", "R"), ("density", "D"), ("coverage", "C")):
        if f"domain_{m}" in table:
            out[word] = table[f"domain_{m}"].to_numpy()
    if "inception_fd" in table:
        out["FID [95 % CI]"] = [
            _range(v, lo, hi, 2)
            for v, lo, hi in zip(table["inception_fd"], get("inception_fd_ci_low", nan),
                                 get("inception_fd_ci_high", nan), strict=True)
        ]  # fmt: skip
    if "inception_is" in table:
        out["IS (sd)"] = [
            _mean_sd(m, d, 2) for m, d in zip(table["inception_is"], get("inception_is_sd", nan),
                                               strict=True)
        ]  # fmt: skip
    notes = []
    if "status" in table:
        groups: dict[str, list[str]] = {}
        for name, status in zip(out["generator"], table["status"], strict=True):
            if isinstance(status, str) and status and status != "ok":
                status = status.replace("(see note)", "(below)")
                groups.setdefault(status, []).append(str(name))
        notes += [
            f"{', '.join(dict.fromkeys(names))}: {status}" for status, names in groups.items()
        ]
        if any("Inception weights" in status for status in groups):
            notes.append(INCEPTION_NOTE)
    thesis = None
    if spec.get("thesis"):
        rows = []
        for g in table["generator"]:
            th = spec["thesis"].get(g)
            if th:
                rows.append({"generator": labels.get(g, g),
                             "SSIM (sd)": _mean_sd(th.get("ssim"), th.get("ssim_sd"), 4),
                             "PSNR dB (sd)": _mean_sd(th.get("psnr"), th.get("psnr_sd"), 2),
                             "FID": th.get("fid", np.nan)})  # fmt: skip
        thesis = pd.DataFrame(rows) if rows else None
    return out, meta, notes, thesis


SWEEP_NAME = re.compile(r"_sweep_(?P<sampler>[a-z+]+?)(?P<steps>\d+)_w(?P<guidance>[\d.]+)$")


def sweep_figure(table: pd.DataFrame) -> bytes:
    """The downstream sweep: validation AUC against the guidance weight, a line per sampler
    and step count (read from the experiments' names, ``<x>_sweep_<sampler><steps>_w<w>``)."""
    import matplotlib.pyplot as plt

    rows = _experiment_rows(table)
    rows = rows[rows["split"] == "validation"]
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    lines: dict[str, list] = {}
    baseline = np.nan
    for _, r in rows.iterrows():
        m = SWEEP_NAME.search(str(r["experiment"]))
        if m is None:
            baseline = float(r["roc_auc"])
            continue
        lo, hi = (float(x) for x in str(r["roc_auc_ci"]).strip("[]").split(","))
        lines.setdefault(f"{m['sampler']}, {m['steps']} steps", []).append(
            (float(m["guidance"]), float(r["roc_auc"]), lo, hi)
        )
    for i, (label, pts) in enumerate(sorted(lines.items())):
        pts.sort()
        g, auc, lo, hi = (np.array(v) for v in zip(*pts, strict=True))
        x = g * (1 + 0.03 * (i - len(lines) / 2))  # spread the error bars apart
        ax.errorbar(x, auc, yerr=[auc - lo, hi - auc], marker="o", ms=3, capsize=2, lw=1,
                    label=label)  # fmt: skip
    if np.isfinite(baseline):
        ax.axhline(baseline, color="grey", lw=0.8, ls="--", label="baseline")
    ax.set(xlabel="guidance weight w", ylabel="validation AUC", xscale="log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return html.figure_png(fig)


def edit_sweep_figure(table: pd.DataFrame, closeness: dict[str, dict]) -> bytes | None:
    """The edit sweep: validation AUC (with its CI) against the edit strength, and on a second
    axis the share of copies whose parent is the nearest selected image (how much of the
    parent the edits keep). ``closeness`` maps each sweep experiment to its
    ``copies_closeness`` (None: not made), whose ``strengths`` place it; the table's other
    experiment is the reference. None when no sweep experiment's closeness has been made."""
    import matplotlib.pyplot as plt

    rows = _experiment_rows(table)
    rows = rows[rows["split"] == "validation"]
    points, baseline = [], np.nan
    for _, r in rows.iterrows():
        if str(r["experiment"]) not in closeness:  # the reference
            baseline = float(r["roc_auc"])
            continue
        near = closeness[str(r["experiment"])]
        if not near or near.get("status") != "ok" or len(near.get("strengths") or []) != 1:
            continue  # its closeness not made yet
        lo, hi = (float(x) for x in str(r["roc_auc_ci"]).strip("[]").split(","))
        points.append((near["strengths"][0], float(r["roc_auc"]), lo, hi,
                       float(near["parent_nearest_share"])))  # fmt: skip
    if not points:
        return None
    points.sort()
    x, auc, lo, hi, share = (np.array(v) for v in zip(*points, strict=True))
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    ax.errorbar(x, auc, yerr=[auc - lo, hi - auc], marker="o", ms=4, capsize=3, lw=1,
                color="C0", label="validation AUC (95 % CI)")  # fmt: skip
    if np.isfinite(baseline):
        ax.axhline(baseline, color="grey", lw=0.8, ls="--", label="baseline's AUC")
    ax.set(xlabel="edit strength (share of the sampler's steps redrawn)", ylabel="validation AUC")
    right = ax.twinx()
    right.plot(x, share, marker="s", ms=4, lw=1, color="C3", label="copies nearest their parent")
    right.set(ylabel="share of copies nearest their parent", ylim=(0, 1.05))
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=7, loc="lower left")
    fig.tight_layout()
    return html.figure_png(fig)


#: tables of what ingestion held back: shown even when empty (a zero is the news), counted,
#: and their first rows listed
_HELD_BACK = {
    "quarantine": ("row(s) quarantined at ingestion", "quarantined rows"),
    "unlisted": ("image file(s) that no CSV lists (not used)", "unlisted image files"),
}
_HELD_BACK_ROWS = 50


def closeness_frame(data: dict) -> tuple[pd.DataFrame, dict[str, str]]:
    """``copies_closeness`` as one row for all the copies and one per class: the distances
    (mean, median) and the share of copies whose parent is the nearest selected image."""
    if data.get("status") != "ok":
        frame = pd.DataFrame([{"copies": data.get("copies", 0), "why": data.get("reason", "")}])
        return frame, {"status": str(data.get("status"))}

    def row(label: str, part: dict) -> dict:
        def pair(stats: dict) -> str:
            if stats.get("mean") is None:
                return "n/a"
            return f"{stats['mean']:.1f} / {stats['median']:.1f}"

        return {
            "copies of": label,
            "copies": part["copies"],
            "selected": part["parents"],
            "to parent": pair(part["rms_to_parent"]),
            "to nearest other": pair(part["rms_to_nearest_other"]),
            "parent nearest": part["parent_nearest_share"],
            "spacing": part["parent_spacing"],
        }

    rows = [row("all", data)] + [row(k, v) for k, v in (data.get("by_class") or {}).items()]
    meta = {
        "made by": str(data.get("how")),
        "compared at": str(data.get("comparison_size")),
        "distances": "RMS grey levels (0-255), mean / median",
    }
    return pd.DataFrame(rows), meta


def _with_group_note(tables: list[Table], spec: dict, params: dict) -> list[Table]:
    """The group's own note (``study.groups.<group>.note``, passed as ``group_notes`` by the
    asset of its table), or the item's, first among the first table's notes."""
    note = spec.get("note") or (params.get("group_notes") or {}).get(spec["asset"])
    if note and tables:
        tables[0].notes.insert(0, " ".join(str(note).split()))
    return tables


def item(
    spec: dict, data, params: dict, sources: dict | None = None
) -> list[Table | Figure | NotRun]:
    """One report item from its loaded data (``None``: not run); ``sources``, every loaded
    asset, gives a group table the sources validation chose (``resolve_chosen``)."""
    key, title, asset = spec["key"], spec["title"], spec["asset"]
    if data is None or (
        isinstance(data, pd.DataFrame) and data.empty and spec["kind"] not in _HELD_BACK
    ):
        return [
            NotRun(
                key=key,
                title=title,
                asset=asset,
                command=in_env(spec["command"], params.get("env")),
                reason=f"{asset} has not been made in this project's data/ folder yet.",
            )
        ]
    kind = spec["kind"]
    if kind == "figure":
        try:
            html.png_size(data)
        except ValueError as err:
            raise ValueError(f"report item {key}: {asset} is not a readable PNG ({err})") from err
        caption = " ".join(str(spec["note"]).split()) if spec.get("note") else ""
        return [Figure(key=key, title=title, png=data, asset=asset, caption=caption)]
    if kind == "group":
        thesis = resolve_chosen((params.get("thesis") or {}).get(asset), sources or {})
        tables = group_tables(key, title, asset, data, list(params["columns"]), thesis)
        return _with_group_note(tables, spec, params)
    if kind == "sweep":
        return [
            Figure(key=f"{key}-figure", title=title, png=sweep_figure(data), asset=asset,
                   caption="Validation AUC of the classifier trained with each setting's images "
                   "(error bars: 95 % patient-bootstrap CI); the grey line is the baseline."),
            *_with_group_note(group_tables(key, title, asset, data, list(params["columns"]),
                                           None), spec, params),
        ]  # fmt: skip
    if kind == "edit_sweep":
        closeness = {a.removesuffix(".copies_closeness"): (sources or {}).get(a)
                     for a in spec.get("also") or []}  # fmt: skip
        png = edit_sweep_figure(data, closeness)
        tables = group_tables(key, title, asset, data, list(params["columns"]), None)
        figure = [] if png is None else [
            Figure(key=f"{key}-figure", title=title, png=png, asset=asset,
                   caption="Validation AUC of the classifier trained with each strength's edits "
                   "(error bars: 95 % patient-bootstrap CI) and, on the right, the share of the "
                   "edits whose parent is the nearest selected image (each experiment's "
                   "copies_closeness); the grey line is the baseline.")
        ]  # fmt: skip
        return [*figure, *_with_group_note(tables, spec, params)]
    if kind == "fd_sweep":
        frame, meta, notes = fd_sweep_frame(data)
        return [Table(key=key, title=title, frame=frame, asset=asset, meta=meta, notes=notes)]
    if kind == "json":
        notes = [" ".join(str(spec["note"]).split())] if spec.get("note") else []
        return [Table(key=key, title=title, frame=_json_frame(data), asset=asset, notes=notes)]
    if kind == "closeness":
        frame, meta = closeness_frame(data)
        notes = [" ".join(str(spec["note"]).split())] if spec.get("note") else []
        return [Table(key=key, title=title, frame=frame, asset=asset, meta=meta, notes=notes,
                      digits=2)]  # fmt: skip
    if kind == "split_counts":
        return [
            Table(
                key=key,
                title=title,
                frame=split_counts(data),
                asset=asset,
                notes=[
                    "Targets under FillNM(0) + U-Ones on train.csv's splits; the "
                    "radiologists' labels on validation and test."
                ],  # fmt: skip
                thesis=THESIS_TABLE2,
            )
        ]
    if kind == "generation":
        spec_table = (params.get("generation_tables") or {}).get(spec.get("table", ""))
        frame, meta, notes, thesis = generation_frame(data, spec_table)
        if spec_table and spec_table.get("note"):
            notes.insert(0, spec_table["note"].strip())
        notes.append(
            "Domain FD and KID are on the domain network's features, not on the thesis's FID "
            "scale; P, R, D, C: precision, recall, density, coverage."
        )
        return [Table(key=key, title=title, frame=frame, asset=asset, meta=meta, notes=notes,
                      thesis=thesis, digits=int(spec.get("digits", 3)))]  # fmt: skip
    if kind == "label_policies":
        # Tables 6-7: a policy maps the uncertain and unmentioned labels away: "—", not "n/a"
        frame = reshare(data.rename(columns=lambda c: str(c).replace("_", " ")))
        mapped = [c for c in ("uncertain", "not mentioned") if c in frame]
        frame[mapped] = frame[mapped].astype(object).where(frame[mapped].notna(), "—")
        notes = ["Each cell: images with the label (their share of train.csv's images); "
                 "—: the policy maps that label to positive or negative."]  # fmt: skip
        thesis, thesis_note = label_policies_thesis((params.get("thesis") or {}).get(asset), frame)
        if thesis_note:
            notes.append(thesis_note)
        return [Table(key=key, title=title, frame=frame, asset=asset, notes=notes, thesis=thesis)]
    if kind == "label_distribution":
        printed = ((params.get("thesis") or {}).get(asset) or {}).get("printed")
        ours, thesis, note = label_distribution(data, printed)
        notes = [note] + ([" ".join(str(spec["note"]).split())] if spec.get("note") else [])
        return [Table(key=key, title=title, frame=ours, asset=asset, notes=notes, thesis=thesis)]
    if kind in _HELD_BACK:
        what, empty = _HELD_BACK[kind]
        notes = [f"{len(data)} {what}."]
        if len(data) and "reason" in data:
            counts = data["reason"].value_counts()
            notes.append("; ".join(f"{r}: {n}" for r, n in counts.items()))
        if len(data) > _HELD_BACK_ROWS:
            notes.append(f"The first {_HELD_BACK_ROWS} are shown; all are in `{asset}`.")
        frame = data.head(_HELD_BACK_ROWS) if len(data) else pd.DataFrame({empty: [0]})
        return [Table(key=key, title=title, frame=frame, asset=asset, notes=notes)]
    return [Table(key=key, title=title, frame=data, asset=asset, digits=int(spec.get("digits", 4)))]


def seeds_phrase(table: pd.DataFrame | None) -> str:
    """How many training seeds each classifier of ``table`` (the answer's) had, in words."""
    if table is None or table.empty or "seeds" not in table:
        return "the training seeds each table states"
    counts = sorted({int(n) for n in _experiment_rows(table)["seeds"].dropna()})
    if not counts:
        return "the training seeds each table states"
    if counts == [1]:
        return "one training seed per classifier"
    if len(counts) == 1:
        return f"{counts[0]} training seeds per classifier (the tables give their mean)"
    return (
        f"{counts[0]} to {counts[-1]} training seeds per classifier (each table gives its "
        "classifiers' count and the mean over them)"
    )


def sections(params: dict, sources: dict, data_note: str) -> tuple[list[Section], str | None]:
    """The report's sections: the answer first, then every item of ``params["sections"]``.

    ``sources`` maps an asset name to its loaded data (``None``: not made).
    """
    groups = {
        g: sources.get(f"report.{g}.table") for g in params["answer"]["groups"]
    }  # the answer's candidate tables
    chosen = {  # the experiments whose settings validation chose, and what it chose
        k.removesuffix(".chosen_augmentation"): v.get("chosen")
        for k, v in sources.items()
        if k.endswith(".chosen_augmentation") and isinstance(v, dict) and v.get("chosen")
    }
    paragraphs, used = answer(
        groups, {**params["answer"], "env": params.get("env"), "chosen": chosen}
    )
    data_note = data_note.replace("{seeds}", seeds_phrase(groups.get(used) if used else None))
    first = Section(
        key="answer",
        title="The answer on this data",
        paragraphs=[
            "The thesis's question: for Pneumothorax (rare in CheXpert), does augmentation "
            "help a DenseNet-121 classifier, and do diffusion-generated images help more than "
            "traditional transforms (baseline < traditional < diffusion)?",
            *paragraphs,
            data_note,
        ],
    )
    out = [first]
    for sec in params["sections"]:
        items, notes = [], []
        for spec in sec["items"]:
            by = spec.get("superseded_by")  # a fuller asset that takes its place when made
            if sources.get(spec["asset"]) is None and by and sources.get(by) is not None:
                command = in_env(spec["command"], params.get("env"))
                notes.append(
                    f"**{spec['title']}** ({spec['asset']}) was not made in this run; the fuller "
                    f"{by} below takes its place ({command} makes it)."
                )
                continue
            items += item(spec, sources.get(spec["asset"]), params, sources)
        out.append(Section(key=sec["key"], title=sec["title"], paragraphs=notes, items=items))
    return out, used


#: the report reads each asset ``X`` through the catalog entry ``reporting.in.X``
INPUT_PREFIX = "reporting.in."


def input_name(asset: str) -> str:
    """The catalog name the report reads ``asset`` through."""
    return f"{INPUT_PREFIX}{asset}"


def source_of(dataset_name: str) -> str | None:
    """The asset that the report input ``dataset_name`` (``reporting.in.X``) reads: ``X``;
    ``None`` for any other dataset."""
    if dataset_name.startswith(INPUT_PREFIX):
        return dataset_name[len(INPUT_PREFIX) :]
    return None


def assets(params: dict) -> list[str]:
    """Every asset the report reads, in order."""
    names = [spec["asset"] for sec in params["sections"] for spec in sec["items"]]
    names += [
        a for sec in params["sections"] for spec in sec["items"] for a in spec.get("also", [])
    ]
    names += [f"report.{g}.table" for g in params["answer"]["groups"]]
    return list(dict.fromkeys(names))
