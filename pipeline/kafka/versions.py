"""The Kafka client versions the adaptations in `pipeline.kafka` were verified against.

Each adaptation (see the package docstring) replaces or reads a piece of faust-streaming, mode,
aiokafka or kafka-python that is not public API; a different version may have moved it, and a
moved private attribute fails silently or, worse, half-works. So the installed versions are
checked when `pipeline.kafka` is first imported: an unverified one stops the command with exit
code 2 and one line naming the package, its version and the verified one. Setting
`ARDARY_ALLOW_UNVERIFIED_CLIENTS=1` runs anyway, with a warning logged at every start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from importlib import metadata

from pipeline.errors import ConfigError

__all__ = ["OVERRIDE_ENV", "VERIFIED", "UnverifiedClientVersion", "check_versions"]

log = logging.getLogger("pipeline.kafka")

OVERRIDE_ENV = "ARDARY_ALLOW_UNVERIFIED_CLIENTS"

VERIFIED: Mapping[str, str] = {
    "faust-streaming": "0.15.3",
    "mode-streaming": "0.7.1",
    "aiokafka": "0.14.0",
    "kafka-python": "3.0.12",
}
"""Distribution → the exact version `pipeline/kafka/` was verified against (pyproject pins it)."""


class UnverifiedClientVersion(ConfigError):
    """An installed Kafka client is not the version the adaptations were verified against."""


def _installed(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def check_versions(
    installed: Callable[[str], str | None] = _installed,
    environ: Mapping[str, str] = os.environ,
) -> list[str]:
    """Raise `UnverifiedClientVersion` unless every client is at its verified version.

    With the override set, log a warning per mismatch instead and return the mismatches.
    A package that is not installed at all is left to the import that needs it.
    """
    mismatches = []
    for distribution, verified in VERIFIED.items():
        version = installed(distribution)
        if version is not None and version != verified:
            mismatches.append(
                f"{distribution} {version} is installed; pipeline/kafka/ was verified against "
                f"{distribution} {verified}"
            )
    if not mismatches:
        return []
    if environ.get(OVERRIDE_ENV, "").strip().lower() in ("1", "true", "yes"):
        for line in mismatches:
            log.warning("UNVERIFIED KAFKA CLIENT: %s (%s is set)", line, OVERRIDE_ENV)
        return mismatches
    raise UnverifiedClientVersion(
        f"{mismatches[0]} (install that version, or set {OVERRIDE_ENV}=1 to run anyway)"
    )
