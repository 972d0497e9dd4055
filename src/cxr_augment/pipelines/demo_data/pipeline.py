"""Wiring of ``demo_data``."""

from kedro.pipeline import Node, Pipeline

from cxr_augment.pipelines.demo_data import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.build_projection_atlas,
                ["demo_ct", "demo_ct_labels", "demo_ct_structures", "params:demo_data.atlas"],
                "demo_projection_atlas",
                name="build_projection_atlas",
            ),
            Node(
                nodes.plan_demo_cohort,
                ["demo_projection_atlas", "params:demo_data"],
                "demo_render_plan",
                name="plan_demo_cohort",
            ),
            Node(
                nodes.export_chexpert_tables,
                ["demo_render_plan", "demo_projection_atlas"],
                [
                    "chexpert_train_csv",
                    "chexpert_valid_csv",
                    "chexpert_groundtruth_csv",
                    "chexpert_truth",
                ],
                name="export_chexpert_tables",
            ),
            Node(
                nodes.render_demo_images,
                ["demo_render_plan", "demo_projection_atlas", "params:demo_data.image"],
                "chexpert_images",
                name="render_demo_images",
            ),
            Node(
                nodes.label_distribution,
                "chexpert_train_csv",
                "demo_label_distribution",
                name="tabulate_demo_labels",
            ),
            Node(
                nodes.contact_sheet,
                ["chexpert_images", "demo_render_plan", "params:demo_data.contact_sheet"],
                "demo_contact_sheet",
                name="draw_contact_sheet",
            ),
        ],
        tags="demo_data",
    )
