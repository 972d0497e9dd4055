"""What a reader of report.html needs to read its numbers right: the thresholds behind
accuracy, F1 and kappa; which comparisons are significant; the thesis's rows as it printed
them; shares rounded from their counts; wide tables that keep to the page."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cxr_augment.classify import metrics
from cxr_augment.report import html
from cxr_augment.report.study_report import (
    answer,
    item,
    label_distribution,
    resolve_chosen,
    share,
    significance,
)

ROOT = Path(__file__).resolve().parents[2]
SPEC = {"groups": ["headline"], "observation": "Pneumothorax", "baseline": "base",
        "splits": ["test", "internal_test"], "alpha": 0.05}  # fmt: skip


def _table(holm: dict[tuple[str, str, str], float], thresholds: dict[str, float] | None = None):
    """A headline-like table on two splits (and a third the answer does not read), each
    comparison with its Holm p and a DeLong df that tells the splits apart."""
    aucs = {"base": 0.55, "trad": 0.60, "ddim": 0.65}
    rows = []
    for split, df in (("test", 40.0), ("internal_test", 50.0), ("internal_test_truth", 12.0)):
        for e, a in aucs.items():
            rows.append({"split": split, "experiment": e, "row": "experiment", "images": 300,
                         "patients": 150, "positives": 37, "seeds": 1, "roc_auc": a,
                         "roc_auc_ci": "[0.4, 0.7]",
                         **({"threshold": thresholds[e]} if thresholds else {})})  # fmt: skip
        for a, b in (("trad", "base"), ("ddim", "base"), ("ddim", "trad")):
            p = holm.get((split, a, b), 0.5)
            rows.append({"split": split, "experiment": a, "reference": b, "row": "comparison",
                         "delong_p": p / 3, "delong_p_holm": p, "delong_df": df})  # fmt: skip
    return pd.DataFrame(rows)


def test_the_answer_says_whether_anything_is_significant_after_holm():
    none = " ".join(answer({"headline": _table({("test", "ddim", "base"): 0.109})}, SPEC)[0])
    assert "On AUC (clustered DeLong), **no comparison is significant** after Holm's " in none
    assert "the smallest adjusted p is 0.109 (ddim against base on test)" in none
    some = _table({("internal_test", "ddim", "base"): 0.012, ("test", "trad", "base"): 0.049})
    text = " ".join(answer({"headline": some}, SPEC)[0])
    assert "On AUC (clustered DeLong), significant after Holm's adjustment at 0.05: " in text
    assert "trad against base on test (Holm p = 0.0490)" in text
    assert "ddim against base on internal_test (Holm p = 0.0120)" in text
    assert "no comparison is significant" not in text
    # a comparison on a split the answer does not read is not named
    other = _table({("internal_test_truth", "ddim", "base"): 0.001})
    assert "no comparison is significant" in " ".join(answer({"headline": other}, SPEC)[0])
    assert significance([], 0.05) == "No comparison could be tested."


def test_the_answers_degrees_of_freedom_are_those_of_the_splits_it_reads():
    text = " ".join(answer({"headline": _table({})}, SPEC)[0])
    # test 40, internal_test 50; internal_test_truth's 12 is not one the answer reads
    assert "Satterthwaite's degrees of freedom 40.0-50.0" in text


def test_the_answer_gives_each_classifiers_threshold_and_what_it_does():
    plain = answer({"headline": _table({})}, SPEC)[0]
    assert not any("threshold" in p for p in plain)  # a table made before thresholds were kept
    table = _table({}, {"base": 0.5112, "trad": 0.5105, "ddim": 0.0103})
    paragraphs = answer({"headline": table}, SPEC)[0]
    last = paragraphs[-1]
    assert "the one with the best F1 on the validation set" in last
    assert "(base 0.5112, trad 0.5105, ddim 0.0103)" in last
    assert "AUC, which uses no threshold, need not" in last


def test_the_group_tables_show_the_threshold_and_say_where_it_came_from():
    from cxr_augment.pipelines.classification.nodes import group_report

    rng = np.random.default_rng(0)

    def experiment(name: str, thresholds: list[float]):
        rows = []
        for split in ("validation", "test"):
            for m in metrics.METRICS:
                rows.append({"metric": m, "value": 0.5, "ci_low": 0.4, "ci_high": 0.6,
                             "seed_ci_low": np.nan, "seed_ci_high": np.nan, "split": split,
                             "images": 40, "patients": 20, "positives": 10,
                             "seeds": len(thresholds), "resamples": 2000,
                             "resamples_used": 2000, "threshold": float(np.mean(thresholds)),
                             "observation": "Pneumothorax"})  # fmt: skip
        keys = [f"k{i}" for i in range(40)]
        pred = pd.DataFrame({"split": "validation", "key": keys, "y_true": [0, 1] * 20,
                             "prob": rng.random(40), "seed": 1,
                             "patient_id": [f"p{i // 2}" for i in range(40)]})  # fmt: skip
        return pd.DataFrame(rows), pred

    (ta, pa), (tb, pb) = experiment("a", [0.2, 0.4]), experiment("b", [0.05])
    group = {"title": "T", "splits": ["validation", "test"], "experiments": ["a", "b"]}
    table, _, _ = group_report(group, {"bootstrap": 200, "seed": 0}, ta, tb, pa, pb)
    assert table.loc[table["experiment"] == "a", "threshold"].tolist() == pytest.approx([0.3] * 2)
    assert table.loc[table["experiment"] == "b", "threshold"].tolist() == pytest.approx([0.05] * 2)
    params = yaml.safe_load((ROOT / "conf/base/parameters_reporting.yml").read_text())["reporting"]
    assert "threshold" in params["columns"]
    spec = {"key": "h", "kind": "group", "asset": "report.headline.table", "title": "Headline",
            "command": "kedro run"}  # fmt: skip
    [shown, *_] = item(spec, table, params)
    assert shown.frame["threshold"].tolist() == pytest.approx([0.3, 0.05])
    assert "best F1 on validation" in shown.meta["threshold"]


@pytest.mark.parametrize("seed", range(3))
def test_a_share_is_its_exact_fraction_rounded_half_up(seed):
    """Against decimal's ROUND_HALF_UP of the exact quotient, ties included."""
    rng = np.random.default_rng(seed)
    totals = rng.integers(1, 5000, 300).tolist() + [2000, 2000, 2000, 20, 8]
    counts = [int(rng.integers(0, t + 1)) for t in totals[:300]] + [97, 13, 29, 1, 1]
    for c, t in zip(counts, totals, strict=True):
        for digits in (1, 2):
            exact = Decimal(100 * c) / Decimal(t)  # exact here: 28 significant digits
            want = exact.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
            assert share(c, t, digits) == f"{want:.{digits}f}", (c, t, digits)
    assert share(97, 2000) == "4.9" and share(13, 2000) == "0.7"  # 4.85 and 0.65: both up
    assert share(1, 8, 2) == "12.50" and share(5, 5) == "100.0" and share(0, 7) == "0.0"


def test_table_1_shows_the_thesis_as_it_printed_it():
    params = yaml.safe_load((ROOT / "conf/base/parameters_reporting.yml").read_text())["reporting"]
    printed = params["thesis"]["demo_label_distribution"]["printed"]
    assert len(printed) == 14 and all(len(v) == 4 for v in printed.values())
    # the thesis's own rows each add up to 100 % to within its rounding
    assert all(abs(sum(v) - 100) <= 0.03 for v in printed.values())
    # printed values that differ from the counts' rounding stay as printed
    assert printed["Cardiomegaly"][3] == 79.31 and printed["Edema"][0] == 23.38
    table = pd.DataFrame({
        "observation": ["Cardiomegaly", "Edema"], "images": [2000, 2000],
        "positive": [242, 468], "positive_pct_thesis": [12.09, 23.39],
        "uncertain": [73, 116], "uncertain_pct_thesis": [3.62, 5.81],
        "negative": [100, 187], "negative_pct_thesis": [4.98, 9.28],
        "not_mentioned": [1585, 1229], "not_mentioned_pct_thesis": [79.32, 61.53],
    })  # fmt: skip
    ours, thesis, note = label_distribution(table, printed)
    assert thesis["not mentioned"].tolist() == ["79.31%", "61.53%"]
    assert thesis["positive"].tolist() == ["12.09%", "23.38%"]
    assert ours["not mentioned"].tolist() == ["1585 (79.3%)", "1229 (61.5%)"]
    assert "as it printed them" in note
    _, computed, note = label_distribution(table)  # without the printed table: from the counts
    assert computed["not mentioned"].tolist() == ["79.32%", "61.53%"]
    assert "computed from its counts" in note


def test_an_experiment_whose_source_was_chosen_gets_the_thesis_row_of_that_source():
    params = yaml.safe_load((ROOT / "conf/base/parameters_reporting.yml").read_text())["reporting"]
    thesis = params["thesis"]["report.headline.table"]
    record = "ptx_misclassified_best.chosen_augmentation"
    for chosen, row, auc in (("ddim", "ptx_ddim_misclassified", 0.8142),
                             ("traditional", "ptx_aug_combined_misclassified", 0.7942)):  # fmt: skip
        rows = resolve_chosen(thesis, {record: {"chosen": chosen}})["rows"]
        assert rows["ptx_misclassified_best"]["roc_auc"] == auc
        assert rows["ptx_misclassified_best"]["label"] == f"ptx_misclassified_best (thesis: {row})"
    # several rules (the study profile's source, then DDIM's strength): the source decides
    for label, decisions in (("ddim + s025", [{"chosen": "ddim"}, {"chosen": "s025"}]),
                             ("traditional", [{"chosen": "traditional"}, {"chosen": None}])):  # fmt: skip
        rows = resolve_chosen(thesis, {record: {"chosen": label, "decisions": decisions}})["rows"]
        assert rows["ptx_misclassified_best"]["label"].endswith(
            "(thesis: ptx_ddim_misclassified)" if label.startswith("ddim")
            else "(thesis: ptx_aug_combined_misclassified)"
        )  # fmt: skip
    # no choice made yet (or an unknown source): no row
    assert "ptx_misclassified_best" not in resolve_chosen(thesis, {})["rows"]
    assert "ptx_misclassified_best" not in resolve_chosen(thesis, {record: {"chosen": "x"}})["rows"]
    assert resolve_chosen(None, {}) is None
    # in the report: the row, labelled with both names
    table = _table({})
    table.loc[table["experiment"] == "ddim", "experiment"] = "ptx_misclassified_best"
    table = table[table["split"] == "internal_test"]
    spec = {"key": "h", "kind": "group", "asset": "report.headline.table", "title": "Headline",
            "command": "kedro run"}  # fmt: skip
    [shown, *_] = item(spec, table, params, {record: {"chosen": "ddim"}})
    labels = shown.thesis["experiment"].tolist()
    assert "ptx_misclassified_best (thesis: ptx_ddim_misclassified)" in labels


def test_a_wide_table_puts_a_value_and_its_interval_on_two_lines():
    frame = pd.DataFrame({f"c{i}": ["0.0497 [-0.060, 0.165]"] for i in range(html.WIDE_COLUMNS)})
    frame["p"] = ["0.402 (1.00)"]
    wide = html.render("t", [html.Section("s", "S", items=[html.Table("w", "W", frame, "a")])], {})
    assert ">0.0497<br>[-0.060, 0.165]</td>" in wide and ">0.402<br>(1.00)</td>" in wide
    assert html.validate(wide) == []
    narrow = html.render(
        "t", [html.Section("s", "S", items=[html.Table("n", "N", frame.iloc[:, -3:], "a")])], {}
    )
    assert "<br>" not in narrow.split("<table", 1)[1].split("</table>")[0]


def test_table_1_says_why_no_finding_differs_from_the_thesis():
    params = yaml.safe_load((ROOT / "conf/base/parameters_reporting.yml").read_text())["reporting"]
    [spec] = [i for sec in params["sections"] for i in sec["items"] if i["key"] == "table1"]
    table = pd.DataFrame({"observation": ["No Finding"], "images": [10], "positive": [2],
                          "uncertain": [0], "negative": [0], "not_mentioned": [8]})  # fmt: skip
    [shown] = item(spec, table, params)
    assert shown.thesis["positive"].tolist() == ["10.02%"]
    assert any("No Finding is not drawn" in n for n in shown.notes)


def test_the_tests_read_at_a_threshold_are_named_with_their_direction():
    table = _table({("test", "trad", "base"): 0.109, ("test", "ddim", "base"): 0.109})
    table["accuracy"] = np.where(table["experiment"] == "base", 0.84, 0.40)
    comp = table["row"] == "comparison"
    table.loc[comp, "mcnemar_p_holm"] = 0.5
    table.loc[comp, ["diff_f1", "diff_f1_p_holm"]] = [0.01, 0.9]
    hit = comp & (table["split"] == "test") & (table["experiment"] == "trad")
    table.loc[hit, "mcnemar_p_holm"] = 0.0004
    hit = (
        comp
        & (table["split"] == "internal_test")
        & (table["experiment"] == "ddim")
        & (table["reference"] == "trad")
    )
    table.loc[hit, ["diff_f1", "diff_f1_p_holm"]] = [-0.066, 0.032]
    text = " ".join(answer({"headline": table}, SPEC)[0])
    # AUC: none; the smallest adjusted p is shared by two comparisons, and both are named
    assert ("the smallest adjusted p is 0.109 (trad against base on test; ddim against base "
            "on test)") in text  # fmt: skip
    assert (
        "At each classifier's threshold, significant after Holm's adjustment at 0.05:\n- McNemar "
        in text
    )
    assert (
        "McNemar on test, against base's accuracy 0.840: trad (0.400, Holm p = 0.000400)." in text
    )
    assert "bootstrap ΔF1 on internal_test, against trad: ddim (-0.066, Holm p = 0.0320)." in text
    assert "ddim (0.400" not in text  # 0.5: not significant


def test_the_answer_names_what_validation_chose_and_the_labels_of_each_split():
    table = _table({})
    extra = table[(table["experiment"] == "ddim") & (table["row"] == "comparison")
                  & (table["reference"] == "base")].assign(experiment="best")  # fmt: skip
    rows = table[(table["experiment"] == "ddim") & (table["row"] == "experiment")]
    table = pd.concat([table, rows.assign(experiment="best"), extra], ignore_index=True)
    text = " ".join(answer({"headline": table}, {**SPEC, "chosen": {"best": "ddim"}})[0])
    assert "best (chosen on validation: ddim): AUC 0.650" in text
    # several rules: what each chose (a strategy and a sampler, not a source)
    spec = {**SPEC, "chosen": {"best": "balanced + ddim10"}}
    text = " ".join(answer({"headline": table}, spec)[0])
    assert "best (chosen on validation: balanced + ddim10): AUC 0.650" in text
    assert "official test set (the radiologists' labels;" in text
    assert "their report labels under the experiment's label policy" in text
    assert "chosen on validation" not in " ".join(answer({"headline": table}, SPEC)[0])


def test_comparisons_against_one_reference_on_one_split_are_one_item():
    table = _table({("test", "trad", "base"): 0.109, ("test", "ddim", "base"): 0.109})
    table["accuracy"] = np.where(table["experiment"] == "base", 0.84, 0.40)
    comp = table["row"] == "comparison"
    table.loc[comp, "mcnemar_p_holm"] = 0.5
    on_test = comp & (table["split"] == "test") & (table["reference"] == "base")
    table.loc[on_test, "mcnemar_p_holm"] = [0.0004, 0.002]
    text = " ".join(answer({"headline": table}, SPEC)[0])
    assert text.count("McNemar on test") == 1
    assert ("McNemar on test, against base's accuracy 0.840: trad (0.400, Holm p = 0.000400); "
            "ddim (0.400, Holm p = 0.00200).") in text  # fmt: skip
