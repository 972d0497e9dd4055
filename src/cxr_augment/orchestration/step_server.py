"""Preloaded by the forkserver of a multiprocess executor (``translate.warm_step_processes``):
every step process it forks runs torch with ``CXR_WORKER_THREADS`` threads (default 1), and
finds the libraries its node needs already imported.

A step process that Dagster starts the default way caps its threads when it imports the
definitions (``threads.limit_threads``: its command line says ``execute_step``). A forked one
finds the definitions already imported by the forkserver, a process that is not itself a step
worker; so the forkserver sets the cap in its environment, which its children inherit before
they import torch.

The project's pipelines import their node modules lightly (a code load stays quick), so a node
imports torch, torchvision, diffusers, scikit-learn and the project's own modules when it
first runs: about 3-4 s in every step process, each step being a new process. Imported here
once (``preload``), after the thread cap, they are in every step forked from the forkserver.
"""

from __future__ import annotations

import importlib
import os
import pkgutil

from cxr_augment.orchestration.threads import worker_threads

#: the project's packages whose modules hold the nodes' work (not orchestration, which the
#: definitions import, nor the command-line entry points)
NODE_PACKAGES = (
    "augment",
    "classify",
    "datasets",
    "generation",
    "pipelines",
    "preprocess",
    "render",
    "report",
)
#: what node functions import on first use, beyond what the project's modules import
LIBRARIES = (
    "matplotlib.pyplot",
    "safetensors.torch",
    "scipy.stats",
    "sklearn.linear_model",
    "sklearn.metrics",
    "statsmodels.stats.contingency_tables",
    "statsmodels.stats.multitest",
    "timm",
)


def step_modules() -> list[str]:
    """The modules ``preload`` imports: the project's node packages' modules, then
    ``LIBRARIES``."""
    import cxr_augment

    prefix = f"{cxr_augment.__name__}."
    names = [
        m.name
        for m in pkgutil.walk_packages(cxr_augment.__path__, prefix)
        if m.name[len(prefix) :].split(".")[0] in NODE_PACKAGES
    ]
    return [*names, *LIBRARIES]


def preload() -> list[str]:
    """Imports ``step_modules()``; returns those that failed (a step that needs one imports it
    itself and reports its error there). ``CXR_STEP_PRELOAD=off`` imports nothing."""
    if os.environ.get("CXR_STEP_PRELOAD", "on").strip().lower() in ("off", "0", "false", "no"):
        return []
    failed = []
    for name in step_modules():
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001  (the step's own import says what is wrong)
            failed.append(name)
    return failed


for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, str(worker_threads()))
preload()
