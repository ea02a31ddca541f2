"""The environment of a user who configured nothing: none of the pipeline's variables.

A developer's shell (or CI) may export settings; tests that check defaults, or that start a
command as a new user would, must not see them. A setting is every field of `Settings` (in any
letter case, as pydantic-settings reads them) and anything under one of `SETTING_PREFIXES`
(variables read outside `Settings`, e.g. ARDARY_SCHEMA_DIR); the jar cache's location and the
local nodes' JVM options are kept (where Kafka is and how its JVMs run on this machine, not
settings of the pipeline), so no test downloads Kafka again or starts a node with the full JIT.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pipeline.settings import Settings

__all__ = ["FIELDS", "KEPT", "SETTING_PREFIXES", "new_user_env", "setting_variables"]

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
KEPT = frozenset({"ARDARY_KAFKA_CACHE", "ARDARY_BROKER_JVM_OPTIONS"})


FIELDS = frozenset(name.upper() for name in Settings.model_fields)


def setting_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """The names in `environ` (default: this process's) that configure the pipeline."""
    names = os.environ if environ is None else environ
    return sorted(
        n
        for n in names
        if (n.upper() in FIELDS or n.upper().startswith(SETTING_PREFIXES)) and n not in KEPT
    )


def new_user_env(**settings: str) -> dict[str, str]:
    """This process's environment without the pipeline's variables, plus `settings`."""
    cleared = set(setting_variables())
    env = {name: value for name, value in os.environ.items() if name not in cleared}
    env.update(settings)
    return env
