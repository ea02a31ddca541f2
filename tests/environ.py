"""The environment of a user who configured nothing: none of the pipeline's variables.

A developer's shell (or CI) may export settings; tests that check defaults, or that start a
command as a new user would, must not see them. Every variable the pipeline reads starts with
one of `SETTING_PREFIXES`; the jar cache's location is kept (it is where Kafka is, not a
setting of the pipeline), so no test downloads Kafka again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["KEPT", "SETTING_PREFIXES", "new_user_env", "setting_variables"]

SETTING_PREFIXES = (
    "ARDARY_",
    "KAFKA_",
    "PIPELINE_",
    "SCHEMA_REGISTRY_",
    "WAREHOUSE_",
    "OUTBOUND_",
    "METRICS_",
    "LIFECYCLE_",
)
KEPT = frozenset({"ARDARY_KAFKA_CACHE"})


def setting_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """The names in `environ` (default: this process's) that configure the pipeline."""
    names = os.environ if environ is None else environ
    return sorted(n for n in names if n.upper().startswith(SETTING_PREFIXES) and n not in KEPT)


def new_user_env(**settings: str) -> dict[str, str]:
    """This process's environment without the pipeline's variables, plus `settings`."""
    cleared = set(setting_variables())
    env = {name: value for name, value in os.environ.items() if name not in cleared}
    env.update(settings)
    return env
