"""`make audit`: pip-audit over the installed dependencies; fails only on a fixable vulnerability.

Every known vulnerability is reported; the exit status is 1 only when one has a fixed version
to move to (one without a fix is something to watch, not a red build). When the vulnerability
service cannot be reached (no network, a mirror without vulnerability data: pip-audit then
marks every dependency "could not be audited" and says "No known vulnerabilities"), the step
says so in one line and exits 0 instead of passing silently.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

__all__ = ["audit_verdict", "main"]


def audit_verdict(report: dict[str, Any]) -> tuple[int, list[str]]:
    """The exit status and the lines to print for a `pip-audit -f json` report."""
    deps = report.get("dependencies", [])
    audited = [d for d in deps if "skip_reason" not in d]
    unreachable = [d for d in deps if "could not be audited" in d.get("skip_reason", "")]
    if not audited and unreachable:
        return 0, [
            f"pip-audit: SKIPPED, the vulnerability service is unreachable from here "
            f"({len(unreachable)} dependencies could not be audited)"
        ]
    lines: list[str] = []
    fixable = 0
    for dep in audited:
        for vuln in dep.get("vulns", []):
            fixes = ", ".join(vuln.get("fix_versions", [])) or "no fix yet"
            lines.append(f"{dep['name']} {dep['version']}: {vuln['id']} (fixed in: {fixes})")
            fixable += bool(vuln.get("fix_versions"))
    lines.append(
        f"pip-audit: {len(audited)} dependencies audited, {len(lines)} known vulnerabilities, "
        f"{fixable} with a fix"
    )
    return (1 if fixable else 0), lines


def main() -> int:
    pip_audit = shutil.which("pip-audit") or f"{sys.prefix}/bin/pip-audit"
    done = subprocess.run(
        [pip_audit, "--skip-editable", "--progress-spinner", "off", "-f", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        if "Name or service not known" in done.stderr or "ConnectionError" in done.stderr:
            print(f"pip-audit: SKIPPED, the vulnerability service is unreachable ({last})")
            return 0
        print(f"pip-audit failed: {last}")
        return 2
    status, lines = audit_verdict(report)
    print("\n".join(lines))
    return status


if __name__ == "__main__":
    sys.exit(main())
