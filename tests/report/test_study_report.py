"""The study report: its answer, its items, missing results as "not run", and its catalog."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cxr_augment.pipelines.reporting.nodes import argument, assemble_report
from cxr_augment.report import html
from cxr_augment.report.study_report import answer, assets, triplets, verdict

ROOT = Path(__file__).resolve().parents[2]


def _group_table(aucs: dict[str, float], pairs: list[tuple[str, str, float]]) -> pd.DataFrame:
    """A Table-15-like group table on the test split: experiment rows, then comparisons with
    raw DeLong p-values (Holm: doubled, capped, for the test)."""
    rows = [
        {"split": "test", "experiment": e, "row": "experiment", "images": 300, "patients": 150,
         "positives": 37, "seeds": 1, "resamples": 2000, "accuracy": 0.8, "f1": 0.3,
         "f1_ci": "[0.2, 0.4]", "roc_auc": a, "roc_auc_ci": "[0.5, 0.7]", "kappa": 0.2,
         "kappa_ci": "[0.1, 0.3]"}
        for e, a in aucs.items()
    ]  # fmt: skip
    for a, b, p in pairs:
        rows.append(
            {"split": "test", "experiment": a, "reference": b, "row": "comparison",
             "paired_images": 300, "paired_patients": 150, "delong_p": p,
             "delong_p_holm": min(1.0, 3 * p), "mcnemar_p": 0.5, "mcnemar_p_holm": 1.0,
             "diff_roc_auc": aucs[a] - aucs[b], "diff_roc_auc_ci": "[0.0, 0.1]",
             "diff_roc_auc_p_holm": 0.2, "diff_f1": 0.1, "diff_f1_ci": "[0.0, 0.2]",
             "diff_f1_p_holm": 0.3}
        )  # fmt: skip
    return pd.DataFrame(rows)


SPEC = {"groups": ["table15", "headline"], "observation": "Pneumothorax", "baseline": "base",
        "splits": ["test", "internal_test"], "alpha": 0.05}  # fmt: skip


def test_verdict_reads_the_order_and_the_holm_p_values():
    assert verdict((0.5, 0.6, 0.7), (0.001, 0.001, 0.01), 0.05) == "holds, every step significant"
    assert verdict((0.5, 0.6, 0.7), (0.001, 0.2, 0.01), 0.05).startswith("holds in direction")
    assert verdict((0.5, 0.7, 0.6), (0.001, 0.001, 0.01), 0.05) == "does not hold"
    assert verdict((0.5, np.nan, 0.6), (0.001, 0.001, 0.01), 0.05).startswith("cannot")


def test_the_answer_reads_table_15_first_and_names_every_step():
    t15 = _group_table(
        {"base": 0.55, "trad": 0.62, "ddim": 0.70, "cfg": 0.58},
        [("trad", "base", 0.001), ("ddim", "base", 0.0001), ("ddim", "trad", 0.01),
         ("cfg", "base", 0.3)],
    )  # fmt: skip
    assert triplets(t15, "base") == [("trad", "ddim")]
    head = _group_table({"base": 0.5, "trad": 0.4, "ddim": 0.45}, [("trad", "base", 0.5)])
    paragraphs, used = answer({"table15": t15, "headline": head}, SPEC)
    assert used == "table15"
    text = " ".join(paragraphs)
    assert "AUC 0.550" in text and "AUC 0.620 (+0.070" in text and "AUC 0.700" in text
    assert "**holds, every step significant**" in text  # Holm: 0.003, 0.0003, 0.03
    assert "cfg: AUC 0.580 (+0.030" in text and "Holm 0.9" in text
    assert "300 images of 150 patients, 37 positive" in text
    # each split: its numbers first, then one list item per strategy's triple and per other
    # comparison with the baseline
    lead, *items = paragraphs[0].split("\n- ")
    assert lead.startswith("**On ") and "baseline (base) has AUC 0.550" in lead
    assert [i.split(" ")[0] for i in items[:2]] == ["Traditional", "cfg:"]
    assert all(i.startswith("The patient bootstrap") for i in items[2:])
    # without Table 15 the headline answers; with neither, it says how to make one
    _, used = answer({"table15": None, "headline": head}, SPEC)
    assert used == "headline"
    paragraphs, used = answer({"table15": None, "headline": None}, SPEC)
    assert used is None and "Not run yet" in paragraphs[0]


def test_the_answer_says_how_delong_was_read():
    pairs = [("trad", "base", 0.01), ("ddim", "base", 0.2)]
    old = _group_table({"base": 0.55, "trad": 0.62, "ddim": 0.60}, pairs)
    text = " ".join(answer({"table15": old, "headline": None}, SPEC)[0])
    assert "clustered by patient (normal reference)" in text  # a table made before the t
    for dfs, words in (
        ([31.6, 42.2], "(t reference, Satterthwaite's degrees of freedom 31.6-42.2)"),
        ([17.0, 17.2], "(t reference, Satterthwaite's degrees of freedom 17.0-17.2)"),
        ([17.02, 17.04], "(t reference, Satterthwaite's degrees of freedom 17.0)"),
        ([np.inf, np.inf], "(normal reference)"),  # delong_reference: normal
    ):
        t15 = old.copy()
        t15.loc[t15["row"] == "comparison", "delong_df"] = dfs
        text = " ".join(answer({"table15": t15, "headline": None}, SPEC)[0])
        assert f"DeLong's test clustered by patient {words}" in text, text


def test_the_answer_says_where_delong_and_the_patient_bootstrap_disagree():
    t15 = _group_table(
        {"base": 0.55, "trad": 0.62, "ddim": 0.70},
        [("trad", "base", 0.001), ("ddim", "base", 0.03), ("ddim", "trad", 0.4)],
    )  # fmt: skip
    # the bootstrap's Holm p: agrees on trad (both below 0.05), not on ddim against base
    # (DeLong Holm 0.09, bootstrap 0.01), agrees on ddim against trad (both above)
    t15["diff_roc_auc_p_holm"] = [np.nan] * 3 + [0.02, 0.01, 0.9]
    text = " ".join(answer({"table15": t15}, SPEC)[0])
    (sentence,) = [s for s in text.split(". ") if "reads otherwise" in s]
    assert "ddim against base (DeLong Holm 0.0900, bootstrap Holm 0.0100" in sentence
    assert "trad against base" not in sentence and "ddim against trad" not in sentence
    t15["diff_roc_auc_p_holm"] = [np.nan] * 3 + [0.02, 0.2, 0.9]  # they agree everywhere
    assert "reads otherwise" not in " ".join(answer({"table15": t15}, SPEC)[0])


def _params() -> dict:
    from tests.conftest import project_parameters

    return project_parameters()["reporting"]


def _png() -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    return html.figure_png(fig)


def test_the_report_shows_what_was_made_and_says_not_run_with_the_command_for_the_rest():
    params = _params()
    t15 = _group_table(
        {"ptx_densenet121": 0.55, "ptx_aug_thesis_unbalanced": 0.6, "ptx_ddim_unbalanced": 0.65},
        [("ptx_aug_thesis_unbalanced", "ptx_densenet121", 0.01),
         ("ptx_ddim_unbalanced", "ptx_densenet121", 0.02),
         ("ptx_ddim_unbalanced", "ptx_aug_thesis_unbalanced", 0.2)],
    )  # fmt: skip
    made = {
        "report.headline.table": t15,
        "report.headline.roc": _png(),
        "report.pca.figure": _png(),
        "report.misclassified_summary": {"images": 10, "selected_positives": 3},
    }
    sources = {argument(a): made.get(a) for a in assets(params)}
    page = assemble_report(params, {"study": {"defaults": {"x": 1}}}, {"commit": "abc"}, **sources)
    assert html.validate(page) == []
    # the answer comes first and reads the headline table: AUCs 0.55 < 0.60 < 0.65 with Holm
    # p 0.03, 0.06, 0.6 (the middle and last steps not significant at 0.05)
    first = page.index('id="answer"')
    assert first < page.index('id="headline-test"')
    answer_html = page[first : page.index("</section>", first)]
    assert "The table read here is <strong>headline</strong>" in answer_html
    assert "baseline (ptx_densenet121) has AUC 0.550" in answer_html
    assert "Traditional (ptx_aug_thesis_unbalanced): AUC 0.600 (+0.050" in answer_html
    assert "Diffusion (ptx_ddim_unbalanced): AUC 0.650 (+0.100" in answer_html
    assert "Holm 0.0300" in answer_html and "Holm 0.0600" in answer_html
    assert "Holm 0.600" in answer_html
    assert (
        "Baseline &lt; traditional &lt; diffusion: "
        "<strong>holds in direction, but not every step is significant</strong>"
    ) in answer_html
    assert "does not hold" not in answer_html and "every step significant<" not in answer_html
    # every item of the configuration is in the page: made, or "not run" with its command
    for sec in params["sections"]:
        for item in sec["items"]:
            if item["asset"] in made:
                assert re.search(rf'id="{re.escape(item["key"])}[-"]', page), item["key"]
            else:
                block = page[page.index(f'id="{item["key"]}"') :][:1500]
                assert "not run" in block and html_escape(item["command"]) in block
    # the thesis's Table 15 numbers stand beside ours, not linked to an asset
    assert "0.7589" in page and 'data-source="thesis"' in page
    assert "parameters_sha256" in page and "abc" in page


def html_escape(text: str) -> str:
    import html as std

    return std.escape(text, quote=False)


def test_every_report_input_reads_the_file_its_asset_writes():
    """``reporting.in.<asset>`` and ``<asset>`` resolve, in the project's catalog, to the same
    file: the report reads exactly what the pipelines wrote."""
    from kedro.config import OmegaConfigLoader
    from kedro.io import CatalogConfigResolver

    from cxr_augment.settings import CONFIG_LOADER_ARGS
    from tests.conftest import PROJECT

    loader = OmegaConfigLoader(
        str(PROJECT / "conf"), base_env="base", default_run_env="base",
        custom_resolvers=CONFIG_LOADER_ARGS["custom_resolvers"],
        config_patterns=CONFIG_LOADER_ARGS["config_patterns"],
    )  # fmt: skip
    resolver = CatalogConfigResolver(loader["catalog"])

    def config(name: str) -> dict:
        if name in resolver.config:
            return resolver.config[name]
        if resolver.match_dataset_pattern(name) is None:
            raise AssertionError(f"{name} has no catalog entry")
        return resolver.resolve_pattern(name)

    def path(cfg: dict) -> str:
        return cfg.get("filepath") or cfg.get("path")

    for asset in assets(_params()):
        outer = config(f"reporting.in.{asset}")
        assert outer["type"].endswith("OptionalDataset"), asset
        assert path(outer["dataset"]) == path(config(asset)), asset


def test_a_broken_report_is_refused():
    params = _params()
    sources = {argument(a): None for a in assets(params)}
    sources[argument("report.pca.figure")] = b"\x89PNG\r\n\x1a\nnot really"
    with pytest.raises(ValueError, match="report.pca.figure is not a readable PNG"):
        assemble_report(params, {}, {}, **sources)


def test_the_downstream_sweep_is_drawn_from_its_validation_table():
    from PIL import Image

    from cxr_augment.report.study_report import item

    aucs = {"ptx_densenet121": 0.55}
    for s in ("ddim10", "dpmpp25"):
        for w in (1, 2, 4):
            aucs[f"ptx_sweep_{s}_w{w}"] = 0.5 + 0.02 * w
    table = _group_table(aucs, []).assign(split="validation")
    out = item({"key": "sw", "kind": "sweep", "asset": "report.generator_sweep.table",
                "title": "Sweep", "command": "x"}, table, _params())  # fmt: skip
    fig, metrics = out[0], out[1]
    assert isinstance(fig, html.Figure) and fig.key == "sw-figure"
    import io

    assert Image.open(io.BytesIO(fig.png)).size[0] > 300
    assert len(metrics.frame) == 7


def test_image_files_no_csv_lists_are_counted_and_listed():
    """Ingestion's unlisted image files reach the report: a count, the reasons, the first rows
    (all of them in the asset), and an explicit zero when there are none."""
    from cxr_augment.report.study_report import item

    spec = {"key": "unlisted", "kind": "unlisted", "asset": "unlisted_images",
            "title": "Image files no CSV lists", "command": "kedro run --pipeline preprocessing"}  # fmt: skip
    reasons = ["not in train.csv"] * 57 + ["test study absent from groundtruth.csv"] * 3
    data = pd.DataFrame(
        {"key": [f"train/patient{i:05d}/study1/view1_frontal.jpg" for i in range(60)],
         "csv": ["train.csv"] * 60, "reason": reasons}
    )  # fmt: skip
    [table] = item(spec, data, {})
    assert len(table.frame) == 50 and table.frame["key"].iloc[0] == data["key"].iloc[0]
    assert table.notes[0].startswith("60 image file(s)")
    assert "not in train.csv: 57" in table.notes[1]
    assert "test study absent from groundtruth.csv: 3" in table.notes[1]
    assert "first 50" in table.notes[2] and "unlisted_images" in table.notes[2]
    [empty] = item(spec, data.iloc[:0], {})
    assert empty.notes == ["0 image file(s) that no CSV lists (not used)."]
    assert empty.frame.iloc[0, 0] == 0
    [not_made] = item(spec, None, {})
    assert isinstance(not_made, html.NotRun)


def test_table_1_is_folded_to_five_columns_with_the_thesis_beside_it():
    """Table 1 from the demo_data node's own output: every count and share of ours survives the
    folding exactly, the thesis's shares sit in their own block, and the page stays at five
    columns per table (it scrolled sideways at 14)."""
    from cxr_augment.pipelines.demo_data.nodes import label_distribution
    from cxr_augment.preprocess import chexpert as cx
    from cxr_augment.report.study_report import item

    rng = np.random.default_rng(0)
    values = np.array(["1.0", "-1.0", "0.0", ""], dtype=object)
    train = pd.DataFrame({o: rng.choice(values, size=97) for o in cx.OBSERVATIONS})
    data = label_distribution(train)
    spec = {"key": "table1", "kind": "label_distribution", "asset": "demo_label_distribution",
            "title": "Table 1", "command": "kedro run --pipeline demo_data"}  # fmt: skip
    [table] = item(spec, data, {})
    assert list(table.frame.columns) == [
        "observation", "positive", "uncertain", "negative", "not mentioned"
    ]  # fmt: skip
    assert list(table.thesis.columns) == list(table.frame.columns)
    assert len(table.frame) == len(cx.OBSERVATIONS) == len(table.thesis)
    for i, obs in enumerate(cx.OBSERVATIONS):
        col = train[obs]
        truth = {"positive": (col == "1.0").sum(), "uncertain": (col == "-1.0").sum(),
                 "negative": (col == "0.0").sum(), "not mentioned": (col == "").sum()}  # fmt: skip
        for name, n in truth.items():
            assert table.frame.loc[i, name] == f"{n} ({100 * n / 97:.1f}%)", (obs, name)
        thesis = dict(zip(truth, cx.TABLE1_COUNTS[obs], strict=True))
        for name, n in thesis.items():
            assert table.thesis.loc[i, name] == f"{round(100 * n / cx.TABLE1_IMAGES, 2):.2f}%"
    assert "97" in table.notes[0]
    page = html.render("t", [html.Section(key="data", title="Data", items=[table])], {})
    assert html.validate(page) == []
    assert 'class="item table-item"' in page  # not the scrolling wide layout


def test_paired_tests_are_folded_without_losing_a_number():
    """The paired-test table (17 columns in the asset) shows each raw and Holm p-value in one
    cell and each difference with its CI; a shared reference and paired count move to the
    header, a differing reference stays a column; tiny p-values read "< 0.001"."""
    from cxr_augment.report.study_report import tests_frame

    t = _group_table(
        {"base": 0.5, "a": 0.6, "b": 0.7},
        [("a", "base", 0.0123), ("b", "base", 2e-5), ("b", "a", 0.5)],
    )
    t["diff_roc_auc_p_holm"] = [np.nan] * 3 + [0.04, 0.5, 1.0]
    tests = t[t["row"] == "comparison"].reset_index(drop=True)
    frame, meta = tests_frame(tests)
    assert meta == {"paired": "300 images of 150 patients"}
    assert list(frame["reference"]) == ["base", "base", "a"]
    assert list(frame["DeLong p (Holm)"]) == [
        "0.0123 (0.0369)",
        "< 0.001 (< 0.001)",
        "0.500 (1.00)",
    ]
    assert list(frame["McNemar p (Holm)"]) == ["0.500 (1.00)"] * 3
    assert list(frame["ΔAUC [CI]"]) == [
        "0.1000 [0.0, 0.1]",
        "0.2000 [0.0, 0.1]",
        "0.1000 [0.0, 0.1]",
    ]
    # a table made before the bootstrap's raw p was kept: Holm's alone, and the header says so
    assert list(frame["ΔAUC p, Holm"]) == [0.04, 0.5, 1.0]
    assert "ΔF1 p, Holm" in frame and "Δkappa [CI]" not in frame  # no kappa in this table
    # with the raw p: shown as the tests' are, raw (Holm)
    tests["diff_roc_auc_p"] = [0.0133, 0.25, 0.9]
    frame, _ = tests_frame(tests)
    assert list(frame["ΔAUC p (Holm)"]) == ["0.0133 (0.0400)", "0.250 (0.500)", "0.900 (1.00)"]
    assert "ΔAUC p, Holm" not in frame
    # one reference: it moves to the header; every folded cell still reads as a number
    frame, meta = tests_frame(tests.iloc[:2])
    assert "reference" not in frame and meta["reference"] == "base"
    for col in ("DeLong p (Holm)", "McNemar p (Holm)", "ΔAUC [CI]", "ΔF1 [CI]"):
        assert all(html.format_cell(v)[1] == "num" for v in frame[col]), col


def test_generation_tables_fold_their_settings_and_keep_every_metric():
    """Tables 13/14 (26 columns in the asset, three of them long sentences repeated per row):
    one column per metric with its sd or CI, the shared settings in the header, each status
    once in the notes, the thesis's numbers from generation.tables beside ours."""
    from cxr_augment.report.study_report import generation_frame

    shared = {"n_real": 1588.0, "image_size": "97x80", "match_rule": "nearest in pixel L2",
              "domain_extractor": "ptx_densenet121 penultimate", "domain_input_rule": "grey",
              "domain_dim": 1024.0, "prdc_k": 5.0, "domain_kid_subset_size": 128.0}  # fmt: skip
    rows = [
        {"generator": "ddim", "class": "all", "n_gen": 128.0, **shared, "ssim_mean": 0.631366,
         "ssim_sd": 0.066995, "psnr_mean": 19.867915, "psnr_sd": 1.708, "domain_fd": 296.7581,
         "domain_fd_ci_low": 200.42, "domain_fd_ci_high": 402.74, "domain_kid": 2.17541,
         "domain_kid_ci_low": 1.91048, "domain_kid_ci_high": 2.42649, "domain_precision": 0.148,
         "domain_recall": 0.265, "domain_density": 0.047, "domain_coverage": 0.006,
         "status": "FID/IS skipped: no Inception weights (see note)"},
        {"generator": "sd_prompt", "class": "all", "status": "skipped: no base model"},
    ]  # fmt: skip
    table = pd.DataFrame(rows)
    spec = {"labels": {"ddim": "DDIM"},
            "thesis": {"ddim": {"ssim": 0.5914, "ssim_sd": 0.08, "psnr": 22.49, "psnr_sd": 0.65,
                                "fid": 71.17}}}  # fmt: skip
    frame, meta, notes, thesis = generation_frame(table, spec)
    assert list(frame["generator"]) == ["DDIM", "sd_prompt"] and "class" not in frame
    assert frame["images"].tolist()[0] == 128 and pd.isna(frame["images"].tolist()[1])
    assert meta["real images"] == "1588" and meta["P/R/D/C k"] == "5"
    assert meta["domain input"] == "grey" and meta["image size"] == "97x80"
    first = frame.iloc[0]
    assert first["SSIM (sd)"] == "0.6314 (0.0670)" and first["PSNR dB (sd)"] == "19.87 (1.71)"
    assert first["domain FD [95 % CI]"] == "296.76 [200.42, 402.74]"
    assert first["domain KID x100 [subsets]"] == "217.541 [191.048, 242.649]"
    assert [first[c] for c in "PRDC"] == [0.148, 0.265, 0.047, 0.006]
    assert frame.iloc[1][["SSIM (sd)", "domain FD [95 % CI]"]].isna().all()
    assert notes[0] == "DDIM: FID/IS skipped: no Inception weights (below)"
    assert notes[1] == "sd_prompt: skipped: no base model"
    assert "pt_inception-2015-12-05-6726825d.pth" in notes[2]
    assert thesis.to_dict("records") == [
        {"generator": "DDIM", "SSIM (sd)": "0.5914 (0.0800)", "PSNR dB (sd)": "22.49 (0.65)",
         "FID": 71.17}
    ]  # fmt: skip
    for col in ("SSIM (sd)", "PSNR dB (sd)", "domain FD [95 % CI]", "domain KID x100 [subsets]"):
        assert html.format_cell(first[col])[1] == "num", col  # linked to the asset in the page
    # a per-class table keeps its class column
    per_class = pd.concat([table.iloc[:1].assign(**{"class": "0"}), table.iloc[:1]])
    frame, _, _, _ = generation_frame(per_class)
    assert list(frame["class"]) == ["0", "all"] and list(frame["generator"]) == ["ddim", "ddim"]


def test_tables_6_and_7_mark_the_labels_a_policy_maps_away():
    from cxr_augment.report.study_report import item

    data = pd.DataFrame(
        {"observation": ["Pneumothorax"] * 2, "method": ["Original", "FillNM(0) U-Ones"],
         "positive": ["174 (8.7%)", "203 (10.2%)"], "negative": ["504 (25.2%)", "1797 (89.8%)"],
         "uncertain": ["29 (1.4%)", np.nan], "not_mentioned": ["1293 (64.7%)", np.nan]}
    )  # fmt: skip
    spec = {"key": "tables67", "kind": "label_policies", "asset": "label_distribution_table",
            "title": "Tables 6 and 7", "command": "kedro run --pipeline preprocessing"}  # fmt: skip
    [table] = item(spec, data, {})
    assert list(table.frame.columns)[-1] == "not mentioned"
    # a count stays a (linked) number; its share is recomputed from the row's counts, half up:
    # 29 of 2,000 is 1.45 %, which a float rounds down to 1.4
    assert table.frame.loc[0, "uncertain"] == "29 (1.5%)"
    assert table.frame.loc[0, "positive"] == "174 (8.7%)"
    assert table.frame.loc[1, ["uncertain", "not mentioned"]].tolist() == ["—", "—"]
    assert "maps that label" in table.notes[0]
    assert html.format_cell(table.frame.loc[1, "uncertain"])[1] == "text"
    assert table.thesis is None  # no thesis block in the parameters: none shown

    # with the project's parameters: the thesis's Tables 6-7 beside ours, for our observations
    params = yaml.safe_load((ROOT / "conf/base/parameters_reporting.yml").read_text())["reporting"]
    [table] = item(spec, data, params)
    thesis = table.thesis
    assert list(thesis.columns) == list(table.frame.columns)
    assert set(thesis["observation"]) == {"Pneumothorax"} and len(thesis) == 5
    assert thesis.loc[0, "positive"] == "19448 (8.7%)"
    assert thesis.loc[1, ["uncertain", "not mentioned"]].tolist() == ["—", "—"]
    assert any("223,414" in n for n in table.notes)
    # the transcription, checked against itself: every policy's counts add up to the thesis's
    # 223,414 training images, and each share is its count over them (to the printed 0.1 %)
    rows = params["thesis"]["label_distribution_table"]["rows"]
    assert len(rows) == 10
    for row in rows:
        cells = [c for c in row[2:] if c is not None]
        counts = [int(c.split(" ")[0]) for c in cells]
        assert sum(counts) == 223414, row
        for cell, n in zip(cells, counts, strict=True):
            share = float(cell.split("(")[1].rstrip("%)"))
            assert abs(share - 100 * n / 223414) <= 0.06, (row, cell)


def test_the_data_note_states_the_seeds_of_the_table_the_answer_reads():
    from cxr_augment.pipelines.reporting.nodes import data_note
    from cxr_augment.report.study_report import sections, seeds_phrase

    one = _group_table({"base": 0.5, "trad": 0.6, "ddim": 0.7}, [("trad", "base", 0.1)])
    three = one.assign(seeds=np.where(one["row"] == "experiment", 3, np.nan))
    mixed = three.copy()
    mixed.loc[0, "seeds"] = 1
    assert seeds_phrase(one) == "one training seed per classifier"
    assert seeds_phrase(three).startswith("3 training seeds per classifier")
    assert seeds_phrase(mixed).startswith("1 to 3 training seeds per classifier")
    assert seeds_phrase(None) == "the training seeds each table states"

    params = _params()
    manifest = pd.DataFrame(
        {"split": ["train", "train", "valid"], "patient_id": ["p1", "p1", "p2"]}
    )
    note = data_note(manifest, params)
    assert "3 images, 2 of them for training, of 2 patients" in note and "{seeds}" in note
    assert "{size}" not in data_note(None, params)  # no manifest: said, not a raw placeholder
    # other braces in a user's note are left as written
    assert data_note(None, {"data_note": "{size}; {other}"}).endswith("; {other}")
    for table, words in ((one, "one training seed per classifier"), (three, "3 training seeds")):
        sources = {"report.table15.table": table}
        parts, used = sections({**params, "answer": {**SPEC, "groups": ["table15"]}}, sources, note)
        assert used == "table15"
        text = " ".join(parts[0].paragraphs)
        assert words in text and "{seeds}" not in text


def test_not_run_commands_name_the_environment_the_report_was_made_in():
    from cxr_augment.report.study_report import in_env, sections

    assert in_env("kedro run --pipeline a && kedro run --pipeline b", "study") == (
        "kedro run --env study --pipeline a && kedro run --env study --pipeline b"
    )
    assert in_env("kedro run", None) == "kedro run"
    # a command that names its environment keeps it
    assert in_env("kedro run --env gpu --pipeline a && kedro run", "study") == (
        "kedro run --env gpu --pipeline a && kedro run --env study"
    )
    params = _params()
    assert params["env"] is None  # the default environment: commands as written
    for env, expected in ((None, "kedro run --pipelines classification"),
                          ("study", "kedro run --env study --pipelines classification")):  # fmt: skip
        parts, used = sections({**params, "env": env}, {}, "")
        assert used is None
        commands = [i.command for sec in parts[1:] for i in sec.items if hasattr(i, "command")]
        assert expected in commands and all(("--env" in c) == bool(env) for c in commands)
        first = " ".join(parts[0].paragraphs)
        assert ("`kedro run --env study`" in first) == bool(env)
    # every environment but the default names itself
    for folder in sorted(p for p in (ROOT / "conf").iterdir() if p.is_dir()):
        if folder.name in ("base", "local"):
            continue
        f = folder / "parameters.yml"
        assert f.exists(), f
        env = (yaml.safe_load(f.read_text()) or {}).get("reporting", {}).get("env")
        assert env == folder.name, f


def test_the_default_runs_headline_gives_way_to_table_15_when_only_table_15_was_made():
    from cxr_augment.report.study_report import NotRun, sections

    params = {**_params(), "env": "study"}
    t15 = _group_table({"base": 0.55, "trad": 0.62, "ddim": 0.70}, [("trad", "base", 0.001)])

    def comparison(sources):
        parts, _ = sections(params, sources, "")
        (sec,) = [p for p in parts if p.key == "comparison"]
        return sec, {i.key: i for i in sec.items}

    # the study made Table 15 and its ROC, not the default run's headline: no "not run" boxes
    # for the headline, a sentence that says so with the command that makes it
    import matplotlib.pyplot as plt

    from cxr_augment.report.html import figure_png

    roc = figure_png(plt.figure(figsize=(2, 2)))
    sec, items = comparison({"report.table15.table": t15, "report.table15.roc": roc})
    assert "headline" not in items and "headline_roc" not in items
    assert "table15" not in items and any(k.startswith("table15-") for k in items)
    (note, roc_note) = sec.paragraphs
    assert "report.headline.table" in note and "report.table15.table below" in note
    assert "(kedro run --env study makes it)" in note and "report.table15.roc below" in roc_note
    # neither made: the headline shows as not run, as before
    sec, items = comparison({})
    assert isinstance(items["headline"], NotRun) and sec.paragraphs == []


def test_the_sampler_sweep_reads_in_table_14s_units_with_its_lowest_fd_named():
    from cxr_augment.report.study_report import fd_sweep_frame

    table = pd.DataFrame(
        {"model": "cfg", "scheduler": ["ddim", "ddim", "dpmsolver++"], "steps": [10, 20, 10],
         "guidance": [1.0, 2.0, 1.0], "n_gen": 32, "n_real": 1588,
         "domain_fd": [257.8118, 335.814, 129.3265], "domain_kid": [0.015793, 0.02408, 0.00558],
         "domain_kid_ci_low": [0.01081, 0.0179, 0.00265],
         "domain_kid_ci_high": [0.019985, 0.029153, 0.00823]}
    )  # fmt: skip
    frame, meta, notes = fd_sweep_frame(table)
    assert meta == {"model": "cfg", "generated images per setting (both classes)": "32",
                    "real images": "1588"}  # fmt: skip
    assert list(frame.columns) == ["scheduler", "steps", "guidance", "domain FD",
                                   "domain KID [subsets]"]  # fmt: skip
    assert frame["domain FD"].tolist() == ["257.81", "335.81", "129.33"]
    assert frame["domain KID [subsets]"].iloc[0] == "0.0158 [0.0108, 0.0200]"
    assert frame["guidance"].tolist() == ["1", "2", "1"]
    assert "Lowest domain FD: scheduler dpmsolver++, steps 10, guidance 1 (129.33)." in notes
    # as an item of the report: a table with its settings in the header
    params = _params()
    spec = next(i for s in params["sections"] for i in s["items"] if i["key"] == "sweep")
    from cxr_augment.report.study_report import item

    (out,) = item(spec, table, params)
    assert out.meta["model"] == "cfg" and out.frame.shape == (3, 5)


def test_a_json_summary_reads_as_flat_fields_not_raw_json():
    from cxr_augment.report.study_report import _json_frame

    choice = {
        "experiment": "ptx_misclassified_best",
        "options": {"ddim": {"experiment": "ptx_ddim_unbalanced", "roc_auc": 0.5542308810700786}},
        "chosen": "traditional",
        "set": {"methods": ["rotation", "noise"], "source": "transforms"},
        "pairs": [{"a": 1}, {"a": 2, "b": {"c": "x"}}],
        "mixed": [{"a": 1}, 2],
    }
    frame = _json_frame(choice)
    rows = dict(zip(frame["field"], frame["value"], strict=True))
    # nothing (a rule that chose nothing): "none", not null or {}
    nothing = _json_frame({"methods": [], "chosen": None, "set": {}})
    assert nothing["value"].tolist() == ["none", "none", "none"]
    assert rows == {
        "experiment": "ptx_misclassified_best",
        "options.ddim.experiment": "ptx_ddim_unbalanced",
        "options.ddim.roc_auc": 0.5542308810700786,  # rounded by the table, not here
        "chosen": "traditional",
        "set.methods": "rotation, noise",
        "set.source": "transforms",
        "pairs.1.a": 1,  # a list of objects: numbered from 1, each flattened
        "pairs.2.a": 2,
        "pairs.2.b.c": "x",
        "mixed": '[{"a": 1}, 2]',  # anything else: compact JSON
    }
    assert html.format_cell(rows["options.ddim.roc_auc"], 4)[0] == "0.5542"


def test_the_json_summaries_say_what_their_fields_mean():
    from cxr_augment.report.study_report import item

    params = _params()
    specs = {i["key"]: i for s in params["sections"] for i in s["items"]}
    (mem,) = item(specs["ddim_memorisation"], {"share": 0.0, "max_share": 0.05}, params)
    assert "threshold_pixel" in mem.notes[0] and "max_share" in mem.notes[0]
    (sel,) = item(specs["misclassified_summary"], {"misclassified": 3}, params)
    assert "misclassified_near" in sel.notes[0] and "balance_target" in sel.notes[0]
    (choice,) = item(specs["misclassified_choice"], {"chosen": "traditional"}, params)
    assert choice.notes == []


def test_a_figures_note_is_its_caption():
    from cxr_augment.report.study_report import item

    spec = {"key": "f", "kind": "figure", "asset": "x.copies_figure", "title": "Copies",
            "command": "kedro run", "note": "The first   selected images,\n above their copies."}  # fmt: skip
    (fig,) = item(spec, _png(), {})
    assert fig.caption == "The first selected images, above their copies."
    assert "Copies — The first selected images, above their copies." in html._figure_html(fig)
    (plain,) = item({**spec, "note": None}, _png(), {})
    assert plain.caption == ""


def test_a_groups_own_note_leads_its_first_table_and_reaches_the_page():
    """A study group's note (what chose what, how to read it) is the first note of its first
    table: passed by the report node from ``study.groups`` by the asset of the group's table."""
    from cxr_augment.report.study_report import item

    table = _group_table({"ptx_densenet121": 0.55, "ptx_edit_s05": 0.6}, [])
    spec = {"key": "es", "kind": "group", "asset": "report.edit_sweep.table", "title": "Edits",
            "command": "x"}  # fmt: skip
    note = "Read on validation only:\n   these numbers chose the strength."
    params = {**_params(), "group_notes": {"report.edit_sweep.table": note}}
    out = item(spec, table, params)
    assert out[0].notes[0] == "Read on validation only: these numbers chose the strength."
    assert all(note not in t.notes for t in out[1:])
    assert not item(spec, table, _params())[0].notes  # no note given: none shown
    # through the report node, from the study's groups
    params = _params()
    sources = {argument(a): None for a in assets(params)}
    aucs = {"ptx_densenet121": 0.55, "ptx_aug_thesis_unbalanced": 0.6, "ptx_ddim_unbalanced": 0.65}
    pairs = [("ptx_aug_thesis_unbalanced", "ptx_densenet121", 0.01),
             ("ptx_ddim_unbalanced", "ptx_densenet121", 0.02),
             ("ptx_ddim_unbalanced", "ptx_aug_thesis_unbalanced", 0.2)]  # fmt: skip
    sources[argument("report.headline.table")] = _group_table(aucs, pairs)
    parameters = {"study": {"groups": {"headline": {"note": "The laptop-sized Table 15."}}}}
    page = assemble_report(params, parameters, {}, **sources)
    assert "The laptop-sized Table 15." in page


def test_the_copies_closeness_reads_as_one_row_for_all_and_one_per_class():
    from cxr_augment.augment.closeness import copy_closeness
    from cxr_augment.report.study_report import item

    class Store(dict):
        def get(self, key):
            return self[key]

    rng = np.random.default_rng(0)
    real = Store({k: rng.integers(0, 256, (32, 32), dtype=np.uint8) for k in "abc"})
    copies = Store({"x": real["a"], "y": real["c"], "z": real["c"]})
    manifest = pd.DataFrame({"key": ["x", "y", "z"], "parent_key": ["a", "b", "c"],
                             "target": [1.0, 1.0, 0.0], "strength": 0.5})  # fmt: skip
    data = copy_closeness(real, manifest, copies)
    spec = {"key": "cl", "kind": "closeness", "asset": "e.copies_closeness", "title": "Close",
            "command": "x", "note": "How to read it."}  # fmt: skip
    (table,) = item(spec, data, _params())
    assert list(table.frame["copies of"]) == ["all", "positive", "negative"]
    assert list(table.frame["copies"]) == [3, 2, 1]
    assert table.frame["parent nearest"].tolist() == pytest.approx([2 / 3, 0.5, 1.0])
    assert table.frame.loc[2, "to parent"] == "0.0 / 0.0"
    assert table.meta["made by"] == "edit, strength 0.5" and table.meta["compared at"] == "32 x 32"
    assert table.notes == ["How to read it."]
    draws = {"status": "no parents", "copies": 0, "reason": "class draws"}
    (table,) = item(spec, draws, _params())
    assert table.meta["status"] == "no parents" and table.frame.loc[0, "why"] == "class draws"


def test_the_edit_sweep_draws_auc_and_parent_closeness_against_the_strength():
    import io

    from PIL import Image

    from cxr_augment.report.study_report import assets, edit_sweep_figure, item

    aucs = {"ptx_densenet121": 0.58, "ptx_edit_s025": 0.52, "ptx_edit_s05": 0.50,
            "ptx_edit_s075": 0.60}  # fmt: skip
    table = _group_table(aucs, []).assign(split="validation")
    near = {f"ptx_edit_s0{n}": {"status": "ok", "strengths": [s], "parent_nearest_share": v}
            for n, s, v in (("25", 0.25, 0.89), ("5", 0.5, 0.12), ("75", 0.75, 0.02))}  # fmt: skip
    also = [f"{e}.copies_closeness" for e in near]
    spec = {"key": "es", "kind": "edit_sweep", "asset": "report.edit_sweep.table", "also": also,
            "title": "Edits", "command": "x"}  # fmt: skip
    sources = {f"{e}.copies_closeness": v for e, v in near.items()}
    out = item(spec, table, _params(), sources)
    assert isinstance(out[0], html.Figure) and out[0].key == "es-figure"
    assert Image.open(io.BytesIO(out[0].png)).size[0] > 300
    assert len(out[1].frame) == 4  # the validation table follows
    # the figure's points: strength, AUC and share, the reference as the baseline line
    import matplotlib.pyplot as plt

    drawn = []
    real = plt.subplots

    def spy(*a, **k):
        fig, ax = real(*a, **k)
        drawn.append(ax)
        return fig, ax

    plt.subplots = spy
    try:
        edit_sweep_figure(table, near)
    finally:
        plt.subplots = real
    ax = drawn[0]
    assert [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"] == [
        0.58
    ]
    right = [a for a in ax.figure.axes if a is not ax][0]
    (shares,) = right.get_lines()
    assert list(shares.get_xdata()) == [0.25, 0.5, 0.75]
    assert list(shares.get_ydata()) == [0.89, 0.12, 0.02]
    # closeness not made: no figure, the tables alone; the report reads the extra assets
    assert not isinstance(item(spec, table, _params(), {})[0], html.Figure)
    params = _params()
    assert set(also) <= set(assets(params))
