"""Custom Kedro datasets (written the kedro-datasets way: load/save/_describe/_exists)."""

from cxr_augment.datasets.diffusion_model_dataset import DiffusionModelDataset
from cxr_augment.datasets.image_folder_dataset import ImageFolderDataset
from cxr_augment.datasets.nifti_dataset import NiftiDataset
from cxr_augment.datasets.process_memory_dataset import ProcessMemoryDataset
from cxr_augment.datasets.read_only_dataset import AbsentDataset, ReadOnlyDataset
from cxr_augment.datasets.report_datasets import BytesDataset, OptionalDataset, ProvenanceDataset
from cxr_augment.datasets.tensor_store_dataset import TensorStoreDataset
from cxr_augment.datasets.torch_datasets import (
    CheckpointFolderDataset,
    SafetensorsDataset,
    TorchStateDictDataset,
)

__all__ = [
    "AbsentDataset",
    "BytesDataset",
    "CheckpointFolderDataset",
    "DiffusionModelDataset",
    "ImageFolderDataset",
    "NiftiDataset",
    "OptionalDataset",
    "ProcessMemoryDataset",
    "ProvenanceDataset",
    "ReadOnlyDataset",
    "SafetensorsDataset",
    "TensorStoreDataset",
    "TorchStateDictDataset",
]
