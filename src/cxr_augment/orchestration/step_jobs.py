"""Preloaded by the forkserver of a multiprocess executor after the code location's
definitions (``translate.warm_step_processes``): builds their repository and jobs once
(``step_server.resolve_jobs``), so that each step process forked from it finds them built
instead of building them again. ``CXR_STEP_PRELOAD=off`` leaves them to each step.
"""

from cxr_augment.orchestration import step_server

if not step_server._switched_off():
    step_server.resolve_jobs()
