"""The pure Ardary layer imports no Kafka, HTTP or pydantic code: the ingress stays lean."""

from __future__ import annotations

import subprocess
import sys

MODULES = ("phones", "times", "segments", "keywords", "callbacks")
FORBIDDEN = ("faust", "aiokafka", "kafka", "httpx", "starlette", "granian", "pydantic")


def test_pure_modules_import_no_io_libraries() -> None:
    imports = "; ".join(f"import pipeline.ardary.{m}" for m in MODULES)
    probe = (
        f"import sys; {imports}; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
