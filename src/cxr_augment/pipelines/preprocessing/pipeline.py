"""Wiring of ``preprocessing``.

Images are decoded into the tensor store before the labels and the split, so that the
quarantine (ingestion's and the store's) comes first and Tables 6 and 7, the split and the
split table count only the images that are used.
"""

from kedro.pipeline import Node, Pipeline

from cxr_augment.pipelines.preprocessing import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.ingest_chexpert,
                [
                    "chexpert_train_csv",
                    "chexpert_valid_csv",
                    "chexpert_groundtruth_csv",
                    "chexpert_images",
                    "params:preprocessing",
                ],
                "manifest_ingested",
                name="ingest_chexpert",
            ),
            Node(
                nodes.find_unlisted_images,
                ["manifest_ingested", "chexpert_images", "params:preprocessing"],
                "unlisted_images",
                name="find_unlisted_images",
            ),
            Node(
                nodes.build_tensor_store,
                ["manifest_ingested", "chexpert_images", "params:preprocessing.images"],
                "tensor_store",
                name="build_tensor_store",
            ),
            Node(
                nodes.quarantine_images,
                ["manifest_ingested", "tensor_store", "params:preprocessing"],
                ["manifest_usable", "quarantine"],
                name="quarantine_unusable_images",
            ),
            Node(
                nodes.apply_label_policies,
                ["manifest_usable", "params:preprocessing.labels"],
                ["manifest_labelled", "label_distribution_table", "label_distribution_markdown"],
                name="apply_label_policies",
            ),
            Node(
                nodes.policy_truth_agreement,
                ["manifest_usable", "chexpert_truth", "params:preprocessing.labels"],
                "policy_truth_agreement",
                name="compare_policies_with_truth",
            ),
            Node(
                nodes.split_by_patient,
                ["manifest_labelled", "params:preprocessing.split"],
                ["manifest_split", "split_table"],
                name="split_by_patient",
            ),
            Node(
                nodes.finalize_manifest,
                [
                    "manifest_split",
                    "tensor_store",
                    "quarantine",
                    "unlisted_images",
                    "params:preprocessing",
                ],
                ["manifest", "preprocessing_report"],
                name="finalize_manifest",
            ),
            Node(
                nodes.mask_figure,
                ["tensor_store", "manifest", "params:preprocessing.masks"],
                "mask_figure",
                name="draw_mask_figure",
            ),
        ],
        tags="preprocessing",
    )
