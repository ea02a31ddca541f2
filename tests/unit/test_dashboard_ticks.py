"""The dashboard's y-axis ticks (its own JavaScript, run by Node): distinct round numbers.

The browser test (`tests/integration/test_stack.py`) reads the labels a real Chromium drew; this
one runs the same function over many maxima in a second.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from pipeline.agents.dashboard import dashboard_html

MAXIMA = [0, 1, 2, 3, 4, 5, 7, 9, 10, 11, 19, 37, 99, 100, 101, 250, 999, 1234, 5001, 123_456]


def _ticks() -> dict[str, list[str]]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    page = dashboard_html()
    function = page[page.index("function niceTicks") : page.index("// end of niceTicks")]
    script = f"{function}\nconsole.log(JSON.stringify(Object.fromEntries("
    script += f"{json.dumps(MAXIMA)}.map(m => [m, niceTicks(m).labels]))));"
    done = subprocess.run([node, "-e", script], capture_output=True, text=True, check=True)
    labels: dict[str, list[str]] = json.loads(done.stdout)
    return labels


def test_ticks_are_distinct_round_numbers_from_zero_past_the_maximum() -> None:
    for maximum, labels in _ticks().items():
        values = [int(label.replace(",", "")) for label in labels]
        assert len(set(labels)) == len(labels), (maximum, labels)
        assert values[0] == 0 and values[-1] >= int(maximum), (maximum, labels)
        step = values[1]
        assert values == [step * i for i in range(len(values))], (maximum, labels)
        assert str(step).rstrip("0") in ("1", "2", "5"), (maximum, labels)
        assert 2 <= len(values) <= 6, (maximum, labels)


def test_a_maximum_of_two_reads_two_one_zero() -> None:
    assert _ticks()["2"] == ["0", "1", "2"]  # was "2, 2, 1, 1, 0" (max/4 steps, rounded)
