"""Preloaded by the forkserver of a multiprocess executor (``translate.warm_step_processes``):
every step process it forks runs torch with ``CXR_WORKER_THREADS`` threads (default 1).

A step process that Dagster starts the default way caps its threads when it imports the
definitions (``threads.limit_threads``: its command line says ``execute_step``). A forked one
finds the definitions already imported by the forkserver, a process that is not itself a step
worker; so the forkserver sets the cap in its environment, which its children inherit before
they import torch.
"""

from __future__ import annotations

import os

from cxr_augment.orchestration.threads import worker_threads

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, str(worker_threads()))
