"""Custom Kedro datasets (written the kedro-datasets way: fsspec paths, load/save/_describe)."""

from cxr_augment.datasets.image_folder_dataset import ImageFolderDataset
from cxr_augment.datasets.nifti_dataset import NiftiDataset

__all__ = ["ImageFolderDataset", "NiftiDataset"]
