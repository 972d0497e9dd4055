"""kill -9 at seeded random points of classifier and diffusion training, then resume.

    python scripts/kill_resume.py                  # 10 points per training
    python scripts/kill_resume.py --points 3 --trainings diffusion --seed 1

For each training (a tiny DenseNet classifier; a tiny class-conditional diffusion UNet with
gradient accumulation), on CPU with one thread:

1. an uninterrupted run with the fixed seed gives the reference weights, and counts its
   forward passes and checkpoint saves;
2. for each point, a child process trains into an empty checkpoint folder and is killed with
   SIGKILL at a point drawn from the seed (``KINDS``): at a forward pass (``step``: the child
   kills itself there), after a forward pass the parent reads from the child's progress lines
   (``async``: the kill lands wherever the child has got to), half-way through writing a
   checkpoint's temporary file (``write``), with the temporary file written but not renamed
   (``rename``), or renamed but the older checkpoints not yet deleted (``prune``);
3. the training is run again to completion on that folder, and every tensor of its final
   weights (the classifier's best-epoch and last-epoch weights, the diffusion model's EMA
   weights) must be ``torch.equal`` to the reference's, its history the same, and no
   temporary file may be left in the folder.

The summary is printed and saved as JSON (``bench/results/kill_resume.json``); the exit status
is 1 if any point differs. ``tests/test_faults.py`` runs three points of each training.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAININGS = ("classifier", "diffusion")
KINDS = ("step", "async", "write", "rename", "prune")
SAVE_KINDS = ("write", "rename", "prune")


@dataclass(frozen=True)
class Point:
    training: str
    kind: str
    index: int  # the forward pass (step, async) or checkpoint save (others), from 1
    fraction: float = 0.5  # write: the share of the temporary file written before the kill


# --- the two trainings, tiny ----------------------------------------------------------------


def _classifier(folder: str | None) -> dict:
    import numpy as np
    import torch
    from torch.utils.data import TensorDataset

    from cxr_augment.classify.models import ModelConfig, build_model
    from cxr_augment.classify.training import CheckpointStore, TrainConfig, train

    rng = np.random.default_rng(0)
    n = 48
    y = (np.arange(n) % 3 == 0).astype(np.float32)
    x = rng.integers(0, 80, (n, 1, 24, 20)).astype(np.float32)
    x[y == 1, :, 4:12, 4:10] += 120
    x = torch.from_numpy(x / 255.0)
    t = torch.from_numpy(y)
    torch.manual_seed(5)  # the initial weights
    model = build_model(ModelConfig("tiny_densenet", drop_rate=0.1))
    config = TrainConfig(
        epochs=4, batch_size=8, lr=3e-3, patience=10, seed=5, device="cpu", progress=False
    )
    result = train(
        model,
        TensorDataset(x[:32], t[:32]),
        TensorDataset(x[32:], t[32:]),
        y[32:],
        config,
        checkpoints=None if folder is None else CheckpointStore(folder),
        train_targets=y[:32],
    )
    weights = {f"best.{k}": v for k, v in result.state_dict.items()}
    weights.update({f"last.{k}": v.detach().cpu() for k, v in model.state_dict().items()})
    return {
        "weights": weights,
        "history": result.history["val_auc"].tolist() + result.history["train_loss"].tolist(),
        "resumed_from": result.resumed_from,
    }


def _diffusion(folder: str | None) -> dict:
    import numpy as np
    import torch

    from cxr_augment.classify.training import CheckpointStore
    from cxr_augment.generation.models import ScheduleConfig, UNetConfig, build_unet
    from cxr_augment.generation.training import DiffusionTrainConfig, ImageSet, train_unet

    class Images:  # what ImageSet reads of a tensor store: rows by index
        def __init__(self, images):
            self.images = images

        def __getitem__(self, i):
            return self.images[i]

    rng = np.random.default_rng(0)
    n = 24
    y = np.arange(n) % 2
    x = rng.integers(20, 60, (n, 20, 18)).astype(np.uint8)
    x[y == 1, :, :9] += 150
    x[y == 0, :, 9:] += 150
    unet_config = UNetConfig(
        sample_size=16,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )
    schedule = ScheduleConfig(num_train_timesteps=200, beta_end=0.1)
    config = DiffusionTrainConfig(
        epochs=100,
        max_steps=8,
        batch_size=4,
        grad_accumulation=2,
        lr=2e-3,
        checkpoint_every=2,
        seed=4,
        device="cpu",
        progress=False,
    )
    torch.manual_seed(4)  # the initial weights
    unet = build_unet(unet_config, "grey", 2)
    ck = None if folder is None else CheckpointStore(folder, stem="step", digits=8)
    unet, history = train_unet(
        unet, ImageSet(Images(x), np.arange(n), 16), y, schedule, config, ck, {"kill": 1}
    )
    return {
        "weights": {k: v.detach().cpu() for k, v in unet.state_dict().items()},
        "history": history["loss"].tolist() + history["lr"].tolist(),
        "resumed_from": None,
    }


RUNS = {"classifier": _classifier, "diffusion": _diffusion}


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)


# --- counting (reference) and killing (child) -----------------------------------------------


@contextlib.contextmanager
def instrumented(on_forward=None, on_write=None, on_prune=None):
    """Count (and call back at) each forward pass of a model and each checkpoint save, with
    nothing that touches a random number generator. ``on_write(n, store, tmp, state, write)``
    replaces the n-th write of a temporary file (``write`` is the store's own);
    ``on_prune(n)`` runs after the n-th rename, before older checkpoints are deleted."""
    import torch

    from cxr_augment.classify.training import CheckpointStore

    counts = {"forward": 0, "save": 0}
    real_write, real_prune = CheckpointStore._write, CheckpointStore._prune
    real_call = torch.nn.Module.__call__
    stack: list = []

    def write(self, tmp, state):
        counts["save"] += 1
        if on_write is not None:
            on_write(counts["save"], self, tmp, state, real_write)
        else:
            real_write(self, tmp, state)

    def prune(self):
        if on_prune is not None:
            on_prune(counts["save"])
        real_prune(self)

    def call(self, *args, **kwargs):
        if not stack:  # the model's own forward pass (not those of its layers)
            counts["forward"] += 1
            if on_forward is not None:
                on_forward(counts["forward"])
        stack.append(self)
        try:
            return real_call(self, *args, **kwargs)
        finally:
            stack.pop()

    CheckpointStore._write, CheckpointStore._prune = write, prune
    torch.nn.Module.__call__ = call
    try:
        yield counts
    finally:
        CheckpointStore._write, CheckpointStore._prune = real_write, real_prune
        torch.nn.Module.__call__ = real_call


def reference(training: str) -> dict:
    """The uninterrupted run's weights and history, and how many forward passes and
    checkpoint saves it makes (the ranges the kill points are drawn from)."""
    with instrumented() as counts, tempfile.TemporaryDirectory() as folder:
        out = RUNS[training](str(Path(folder) / "ck"))
    return {**out, "forwards": counts["forward"], "saves": counts["save"]}


def draw_points(training: str, n: int, seed: int, ref: dict, kinds=KINDS) -> list[Point]:
    """``n`` points, the kinds in turn; each kind's forward passes or saves drawn from the
    seed without repeats (until its range is used up)."""
    rng = random.Random(f"{seed}/{training}")
    last = {
        "step": ref["forwards"],
        "async": max(1, ref["forwards"] * 2 // 3),  # early enough to land before the end
        **{k: ref["saves"] for k in SAVE_KINDS},
    }
    order: dict[str, list[int]] = {}
    points = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if not order.get(kind):
            order[kind] = rng.sample(range(1, last[kind] + 1), last[kind])
        index = order[kind].pop()
        points.append(Point(training, kind, index, round(rng.uniform(0.05, 0.95), 3)))
    return points


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def child(point: Point, folder: str) -> None:
    """Train into ``folder``, killing this process at ``point``."""
    _single_thread()

    def on_forward(n):
        if point.kind == "async":
            print(f"forward {n}", flush=True)
        elif point.kind == "step" and n == point.index:
            _die()

    def on_write(n, store, tmp, state, write):
        if point.kind == "write" and n == point.index:
            import torch

            buf = io.BytesIO()
            torch.save(state, buf)
            data = buf.getvalue()
            with open(tmp, "wb") as f:
                f.write(data[: int(len(data) * point.fraction)])
                f.flush()
            _die()
        write(store, tmp, state)
        if point.kind == "rename" and n == point.index:
            _die()

    def on_prune(n):
        if point.kind == "prune" and n == point.index:
            _die()

    with instrumented(on_forward, on_write, on_prune):
        RUNS[point.training](folder)
    print("finished", flush=True)


# --- one point: kill, then resume -----------------------------------------------------------


def leftovers(folder: Path) -> list[str]:
    """Temporary files of unfinished saves under ``folder``."""
    if not folder.exists():
        return []
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if ".partial-" in p.name or p.name.startswith(".tmp-")
    )


def kill_and_resume(point: Point, folder: Path, ref: dict, timeout: float = 300.0) -> dict:
    """Kill a child at ``point``, resume in this process; compare with ``ref``."""
    folder = Path(folder)
    cmd = [sys.executable, str(Path(__file__).resolve()), "child", json.dumps(asdict(point))]
    cmd.append(str(folder))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    finished = False
    try:
        for line in proc.stdout:
            if line.startswith("finished"):
                finished = True
            if point.kind == "async" and line.startswith("forward "):
                if int(line.split()[1]) >= point.index:
                    proc.send_signal(signal.SIGKILL)
                    break
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    killed = proc.returncode == -signal.SIGKILL
    after_kill = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    t1 = time.perf_counter()
    out = RUNS[point.training](str(folder))
    t2 = time.perf_counter()
    a, b = ref["weights"], out["weights"]
    differ = sorted(k for k in a if k not in b or not _equal(a[k], b[k]))
    differ += sorted(k for k in b if k not in a)
    left = leftovers(folder)
    return {
        **asdict(point),
        "killed": killed and not finished,
        "returncode": proc.returncode,
        "files_after_kill": after_kill,
        "resumed_from": out["resumed_from"],
        "identical": not differ and out["history"] == ref["history"],
        "differing_tensors": differ[:10],
        "same_history": out["history"] == ref["history"],
        "tensors": len(a),
        "leftovers": left,
        "kill_s": round(t1 - t0, 2),
        "resume_s": round(t2 - t1, 2),
    }


def _equal(a, b) -> bool:
    import torch

    return a.dtype == b.dtype and a.shape == b.shape and bool(torch.equal(a, b))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "child":
        child(Point(**json.loads(argv[1])), argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=10, help="kill points per training")
    parser.add_argument("--seed", type=int, default=0, help="draws the kill points")
    parser.add_argument("--trainings", default=",".join(TRAININGS))
    parser.add_argument("--out", default=str(ROOT / "bench/results/kill_resume.json"))
    args = parser.parse_args(argv)
    _single_thread()
    summary: dict = {"seed": args.seed, "points_per_training": args.points, "trainings": {}}
    ok = True
    for training in args.trainings.split(","):
        t0 = time.perf_counter()
        ref = reference(training)
        points = draw_points(training, args.points, args.seed, ref)
        print(
            f"{training}: reference in {time.perf_counter() - t0:.1f} s, "
            f"{ref['forwards']} forward passes, {ref['saves']} checkpoint saves"
        )
        rows = []
        for point in points:
            with tempfile.TemporaryDirectory() as tmp:
                row = kill_and_resume(point, Path(tmp) / "ck", ref)
            rows.append(row)
            good = row["killed"] and row["identical"] and not row["leftovers"]
            ok &= good
            print(
                f"  {point.kind:>6} #{point.index:<3} killed={row['killed']!s:5} "
                f"after kill: {row['files_after_kill']}  identical={row['identical']} "
                f"leftovers={row['leftovers']}  ({row['kill_s']} + {row['resume_s']} s)"
            )
        summary["trainings"][training] = {
            "forward_passes": ref["forwards"],
            "checkpoint_saves": ref["saves"],
            "points": rows,
            "all_killed": all(r["killed"] for r in rows),
            "all_identical": all(r["identical"] for r in rows),
            "no_leftovers": all(not r["leftovers"] for r in rows),
        }
    summary["ok"] = ok
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{'all identical' if ok else 'FAILED'}; saved {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
