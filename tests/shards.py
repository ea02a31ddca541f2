"""`make test`'s runner: the suite as two pytest processes at once, one closing line for both.

The suite is mostly waiting on JVMs, sockets and subprocesses, so two halves side by side take
about the time of the longer one (`--shard`, tests/conftest.py says which test goes where).
The first half prints as it runs; the second's output follows once both are done. Each half
writes its per-test durations to `.ci/pytest-report-<n>.xml`; the last line is the plain
`pytest: N passed, N failed, N skipped` of both together. Exit status: the first non-zero of
the two (0 only if both passed).
"""

from __future__ import annotations

import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / ".ci"


def _counts(report: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) of one half, from its JUnit XML (errors count as failed)."""
    if not report.is_file():
        return 0, 0, 0
    passed = failed = skipped = 0
    for case in ET.parse(report).iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


def main(extra: list[str]) -> int:
    REPORTS.mkdir(exist_ok=True)
    started = time.monotonic()
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=15"]
    second_log = REPORTS / "pytest-shard-2.log"
    reports = [REPORTS / f"pytest-report-{n}.xml" for n in (1, 2)]
    for report in reports:
        report.unlink(missing_ok=True)
    with second_log.open("wb") as out:
        second = subprocess.Popen(
            [*base, "--shard=2/2", f"--junitxml={reports[1]}", *extra],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        first_code = subprocess.call(
            [*base, "--shard=1/2", f"--junitxml={reports[0]}", *extra], cwd=ROOT
        )
        second_code = second.wait()
    print("\n---- the second half of the suite ----", flush=True)
    sys.stdout.write(second_log.read_text(encoding="utf-8", errors="replace"))
    passed, failed, skipped = (sum(c) for c in zip(*(_counts(r) for r in reports), strict=True))
    print(f"\nboth halves in {time.monotonic() - started:.0f} s", flush=True)
    print(f"pytest: {passed} passed, {failed} failed, {skipped} skipped", flush=True)
    codes = [code for code in (first_code, second_code) if code != 0]
    if not codes and passed == 0:
        return 5  # no test ran: as pytest says it
    return codes[0] if codes else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
