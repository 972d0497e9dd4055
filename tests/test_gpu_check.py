"""The GPU check (bench/gpu_check.sh) as far as a CPU can take it: its checks run and can fail,
the wheels bench/gpu_prepare.py downloads are what the CUDA machine's image lacks, and the
check imports nothing beyond the image and what those distributions bring."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def prepare():
    return _load("gpu_prepare")


@pytest.fixture(scope="module")
def check():
    return _load("gpu_check")


def test_the_wheels_are_what_the_image_lacks(prepare):
    image = prepare.image_packages()
    assert {"torch", "torchvision", "numpy", "opencv-python-headless", "pyyaml"} <= set(image)
    assert image["torch"] == "2.11.0" and image["pyyaml"] is None  # a version where listed
    names = dict(prepare.needed("3.12"))
    # the check's own needs, at the versions installed here (requirements.lock's)
    for name in prepare.NEEDS:
        assert names[prepare.norm(name)] == md.version(name)
    assert "omegaconf" in names and "dynaconf" in names  # kedro's, recursively
    assert not set(names) & set(image)  # the image's huggingface_hub 1.33 meets diffusers'
    # a listed version that does not meet a requirement brings this environment's
    older = dict(prepare.needed("3.12", have={**image, "huggingface-hub": "1.0.0"}))
    assert older["huggingface-hub"] == md.version("huggingface-hub")
    # with everything there, nothing is downloaded
    assert prepare.needed("3.12", have={**image, **dict.fromkeys(names)}) == []
    assert "dynaconf" not in dict(prepare.needed("3.12", have={**image, "dynaconf": None}))
    # on the machine, what is installed is read: here everything is met
    assert prepare.unmet() == []


def test_a_check_fails_beyond_its_tolerance(check, monkeypatch):
    cpu = torch.device("cpu")
    # bf16 against fp32 on the CPU: a real, small difference (about 1 %)
    ok = check.check_sampling(cpu, "small", 2, 2)
    assert ok["ok"] and ok["eps_relative_error_fp32"] == 0.0
    assert 0.0 < ok["eps_relative_error_bf16"] <= check.TOLERANCE["eps_bf16"]
    monkeypatch.setitem(check.TOLERANCE, "eps_bf16", ok["eps_relative_error_bf16"] / 2)
    failed = check.check_sampling(cpu, "small", 2, 2)
    assert failed["ok_fp32"] and not failed["ok_bf16"] and not failed["ok"]
    assert failed["eps_relative_error_bf16"] == ok["eps_relative_error_bf16"]  # seeded


_BLOCKER = """
import importlib.abc, json, sys
blocked = set(json.loads(sys.argv[1]))
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ImportError(f"{name} is neither on the CUDA image nor among the wheels")
sys.meta_path.insert(0, Blocker())
sys.path[:0] = [sys.argv[2] + "/bench", sys.argv[2] + "/src"]
# what bench_generation.py --gpu and bench_training.py import, lazily included
import bench_generation, bench_training, _common
import cxr_augment.datasets, cxr_augment.preprocess.tensor_store, cxr_augment.preprocess.imaging
import cxr_augment.generation.metrics, cxr_augment.generation.inception
import diffusers.training_utils, pytorch_fid.inception, pytorch_fid.fid_score
import gpu_check
sys.argv = ["gpu_check.py", "--device", "cpu", "--quick", "--out", sys.argv[3]]
sys.exit(gpu_check.main())
"""


def test_the_check_runs_with_only_the_image_and_the_wheels(prepare, tmp_path):
    # what the check may import: the image's distributions and everything NEEDS brings, here;
    # an image's distribution stands in with this environment's version, and its own needs
    # (huggingface_hub 2.4's httpx2, which the image's 1.33 does not need) are allowed too
    allowed = set(prepare.image_packages()) | {n for n, _ in prepare.needed("3.12", have={})}
    allowed |= {"cxr-augment"}
    blocked = sorted(
        module
        for module, dists in md.packages_distributions().items()
        if not any(prepare.norm(d) in allowed for d in dists)
    )
    # the test can fail: packages installed here that the image lacks are really blocked
    assert {"dagster", "dagster_celery", "kedro_viz"} <= set(blocked)
    assert not {"kedro", "diffusers", "nibabel", "torch"} & set(blocked)
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        [sys.executable, "-c", _BLOCKER, json.dumps(blocked), str(ROOT), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["all_ok"]
    assert set(result["checks"]) == {
        "sampling_small",
        "diffusion_step",
        "classifier",
        "classifier_train",
    }
    train = result["checks"]["classifier_train"]
    assert train["weights_moved"] and train["finite"] and train["epochs"] == 1
