"""Switches set in the environment: a feature is on unless its variable says ``off``.

The Dagster side's switches (``CXR_WARM_RELOAD``, ``CXR_SNAPSHOT_CACHE``, ``CXR_CODE_ZYGOTE``,
``CXR_DAGSTER_FORKSERVER``, ``CXR_STEP_PRELOAD``) read ``off``, ``0``, ``false`` or ``no`` (any
case, surrounding spaces ignored) as off; anything else, or the variable unset, as on.

    >>> import os
    >>> os.environ["CXR_EXAMPLE"] = " False "
    >>> switched_on("CXR_EXAMPLE")
    False
    >>> del os.environ["CXR_EXAMPLE"]; switched_on("CXR_EXAMPLE")
    True
"""

from __future__ import annotations

import os

OFF = ("off", "0", "false", "no")


def switched_on(name: str) -> bool:
    """Whether the feature that environment variable ``name`` switches is on."""
    return os.environ.get(name, "on").strip().lower() not in OFF
