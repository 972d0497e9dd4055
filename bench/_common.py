"""What the benchmark scripts share: finding demo images, the UNet presets, saving results."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def unet_preset(name: str):
    """The ``UNetConfig`` of a preset in conf/base/parameters_generation.yml."""
    import yaml

    from cxr_augment.generation.models import UNetConfig

    params = yaml.safe_load((ROOT / "conf/base/parameters_generation.yml").read_text())
    return UNetConfig(**params["generation"]["presets"][name])


def demo_train_files(n: int) -> tuple[dict, list[str]]:
    """The demo's image files (relative path -> reader) and the first ``n`` training keys, from
    the project's demo dataset or else the benchmark cache."""
    from cxr_augment.datasets import ImageFolderDataset

    for source in (
        ROOT / "data/01_raw/chexpert_demo",
        ROOT / "bench/.cache/demo_2500",
        ROOT / "bench/.cache/demo_gpu",  # bench/gpu_prepare.py's training images
    ):
        if (source / "CheXpert-v1.0-small").exists():
            break
    else:
        raise FileNotFoundError("no demo images: run `make run` first")
    files = ImageFolderDataset(path=str(source)).load()
    return files, [k for k in files if "/train/" in k][:n]


def save_results(results: dict, out: str | Path) -> None:
    """Write the results as JSON and say where."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {out}")
