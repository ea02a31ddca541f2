"""The demo's closing summary as a newcomer sees it: nothing wraps in a 130-column terminal."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from pipeline.devtools.stack.demo import print_summary
from pipeline.devtools.stack.summary import DemoSummary

WAREHOUSE = Path("/srv/ardary/.runs/run-20261130T165150/warehouse.duckdb")
SUMMARY = DemoSummary(
    messages=1_000_000,  # the most `demo --messages` accepts: the longest title
    by_state={"DELIVERED": 940_000, "FAILED": 50_000, "SUPPRESSED": 10_000},
    delivered_pct=94.0,
    click_through_pct=35.2,
    p50_delivery_ms=412.0,
    p95_delivery_ms=1_210.5,
    optouts=3_012,
    rejections_by_code={"#003": 10_000},
)


@pytest.mark.parametrize("width", [80, 130])
def test_the_summary_table_title_and_caption_stay_on_one_line(width: int) -> None:
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, legacy_windows=False)
    print_summary(console, SUMMARY, WAREHOUSE, "http://127.0.0.1:6066", 12.3)
    lines = out.getvalue().splitlines()
    titles = [line for line in lines if "Demo summary" in line]
    assert [t.strip() for t in titles] == ["Demo summary — 1000000 messages"]
    assert any(line.strip() == "read from the warehouse" for line in lines), lines
    caption = next(i for i, line in enumerate(lines) if "read from" in line)
    table = lines[lines.index(titles[0]) + 1 : caption]
    assert any("time to deliver p95" in row and "1,210.5 ms" in row for row in table)
    if width >= 130:  # the lines after the table: one each, whole
        assert f"warehouse: {WAREHOUSE.resolve()}" in lines
        assert f"  query it: duckdb {WAREHOUSE} 'FROM sms_lifecycle'" in lines
