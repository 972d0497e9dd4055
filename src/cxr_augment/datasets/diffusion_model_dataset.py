"""``DiffusionModelDataset``: a trained diffusion model as diffusers ``save_pretrained`` folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro.io.core import AbstractDataset, DatasetError

from cxr_augment.leftovers import owned_name, remove_leftovers

if TYPE_CHECKING:  # torch and diffusers are imported on first load or save
    from cxr_augment.generation.models import DiffusionModel


class DiffusionModelDataset(AbstractDataset["DiffusionModel", "DiffusionModel"]):
    """Saves a ``DiffusionModel`` as one folder per UNet, each a diffusers ``DDPMPipeline``
    (``unet/`` as safetensors, ``scheduler/``), plus ``model.json`` (conditioning, channels,
    noise schedule, training facts). Written into a staging folder and renamed into place.

    An unconditional model's folders open in plain diffusers
    (``DDPMPipeline.from_pretrained(".../0")``); safetensors never run code on loading.

    Examples:
        >>> import tempfile, torch
        >>> from cxr_augment.generation.models import (
        ...     DiffusionModel, ScheduleConfig, UNetConfig, build_unet)
        >>> cfg = UNetConfig(sample_size=8, block_out_channels=(8, 8), norm_num_groups=4,
        ...     down_block_types=("DownBlock2D", "DownBlock2D"),
        ...     up_block_types=("UpBlock2D", "UpBlock2D"))
        >>> model = DiffusionModel({"0": build_unet(cfg)}, ScheduleConfig(), "per_class", "grey")
        >>> ds = DiffusionModelDataset(path=tempfile.mkdtemp() + "/m")
        >>> ds.save(model)
        >>> ds.load().checkpoint_hash() == model.checkpoint_hash()
        True
    """

    def __init__(self, *, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(path)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}

    def _exists(self) -> bool:
        return (self._path / "model.json").is_file()

    def load(self) -> DiffusionModel:
        from diffusers import UNet2DModel

        from cxr_augment.generation.models import DiffusionModel, ScheduleConfig

        meta_path = self._path / "model.json"
        if not meta_path.is_file():
            raise DatasetError(
                f"no diffusion model at {self._path} (model.json missing): run "
                "`kedro run --pipelines generation` first"
            )
        meta = json.loads(meta_path.read_text())
        unets = {}
        for name in meta["unets"]:
            folder = self._path / name / "unet"
            if not (folder / "config.json").is_file():
                raise DatasetError(f"{self._path}: UNet {name!r} missing ({folder})")
            unets[name] = UNet2DModel.from_pretrained(str(folder), local_files_only=True).eval()
        return DiffusionModel(
            unets=unets,
            schedule=ScheduleConfig(**meta["schedule"]),
            conditioning=meta["conditioning"],
            channels=meta["channels"],
            info=meta.get("info", {}),
        )

    def save(self, data: DiffusionModel) -> None:
        import os
        from dataclasses import asdict

        if int(os.environ.get("RANK", "0")) != 0:
            return  # a multi-process launch: the processes hold the same weights; one writes

        from diffusers import DDPMPipeline

        self._path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self._path.parent, self._path.name, ("staging", "old"))
        staging = self._path.with_name(owned_name(self._path.name, "staging"))
        try:
            for name, unet in data.unets.items():
                pipe = DDPMPipeline(unet=unet, scheduler=data.schedule.scheduler())
                pipe.save_pretrained(str(staging / name), safe_serialization=True)
            meta = {
                "conditioning": data.conditioning,
                "channels": data.channels,
                "schedule": asdict(data.schedule),
                "unets": sorted(data.unets),
                "checkpoint_hash": data.checkpoint_hash(),
                "info": data.info,
            }
            (staging / "model.json").write_text(json.dumps(meta, indent=2, default=str))
            old = None
            if self._path.exists():
                old = self._path.with_name(owned_name(self._path.name, "old"))
                self._path.rename(old)
            staging.rename(self._path)
            if old is not None:
                shutil.rmtree(old)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
