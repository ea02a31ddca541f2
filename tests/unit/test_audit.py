"""The CI audit step's verdict on pip-audit's JSON report: fail only on a fixable vulnerability."""

from __future__ import annotations

from pipeline.devtools.audit import audit_verdict


def test_a_vulnerability_with_a_fix_fails_the_step() -> None:
    report = {
        "dependencies": [
            {"name": "a", "version": "1", "vulns": [{"id": "PYSEC-1", "fix_versions": ["1.1"]}]},
            {"name": "b", "version": "2", "vulns": []},
        ]
    }
    status, lines = audit_verdict(report)
    assert status == 1
    assert lines[0] == "a 1: PYSEC-1 (fixed in: 1.1)"
    assert lines[-1].endswith("1 known vulnerabilities, 1 with a fix")


def test_a_vulnerability_without_a_fix_is_reported_but_passes() -> None:
    report = {
        "dependencies": [{"name": "a", "version": "1", "vulns": [{"id": "X", "fix_versions": []}]}]
    }
    status, lines = audit_verdict(report)
    assert status == 0
    assert lines[0] == "a 1: X (fixed in: no fix yet)"


def test_an_unreachable_service_skips_saying_so() -> None:
    reason = "Dependency not found on PyPI and could not be audited: a (1)"
    report = {"dependencies": [{"name": "a", "version": "1", "skip_reason": reason}]}
    status, lines = audit_verdict(report)
    assert status == 0
    assert lines == [
        "pip-audit: SKIPPED, the vulnerability service is unreachable from here "
        "(1 dependencies could not be audited)"
    ]
