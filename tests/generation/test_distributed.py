"""Data-parallel training under a multi-process launch (two CPU processes, gloo), as
``accelerate launch --multi_gpu`` runs it on several GPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    sys.path.insert(0, {tests!r})
    from test_diffusion import TINY, SCHEDULE, ArrayStore, two_class_images
    from cxr_augment.generation.models import build_unet, state_dict_hash
    from cxr_augment.generation.training import (
        DiffusionTrainConfig, ImageSet, distributed, train_unet)
    from cxr_augment.classify.training import CheckpointStore

    rank, world = distributed()
    x, y = two_class_images(32)
    data = ImageSet(ArrayStore(x), np.arange(32), 16)
    torch.manual_seed(4)
    cfg = DiffusionTrainConfig(epochs=2, batch_size=4, grad_accumulation=2, lr=2e-3,
                               progress=False, checkpoint_every=2, seed=4, device="cpu")
    unet, hist = train_unet(build_unet(TINY, "grey", 2), data, y, SCHEDULE, cfg,
                            CheckpointStore({ck!r}, stem="step", digits=8))
    out = {{"rank": rank, "world": world, "hash": state_dict_hash(unet.state_dict()),
           "loss": hist["loss"].tolist()}}
    open({out!r} + f"/rank{{rank}}.json", "w").write(json.dumps(out))
    """
)


def test_two_processes_train_one_model(tmp_path):
    script = tmp_path / "train.py"
    tests = str(Path(__file__).parent)
    script.write_text(SCRIPT.format(tests=tests, ck=str(tmp_path / "ck"), out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    import socket

    with socket.socket() as sock:  # a free port on this machine for the process group
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    torchrun = Path(sys.executable).with_name("torchrun")
    run = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "--master_port", str(port), str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert (r0["world"], r1["world"]) == (2, 2)
    assert r0["hash"] == r1["hash"]  # gradients averaged: one model in both processes
    assert r0["loss"] == r1["loss"]  # the history is the mean over processes
    # 32 images x 2 epochs / (batch 4 x accumulation 2 x 2 processes) = 4 steps
    assert len(r0["loss"]) == 4
    assert sorted(p.name for p in (tmp_path / "ck").glob("step_*.pt")) == [
        "step_00000001.pt",
        "step_00000003.pt",
    ]
