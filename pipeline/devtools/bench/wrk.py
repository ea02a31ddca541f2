"""`wrk`, the compiled HTTP load generator: the Lua script cycling through URLs, and its report."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WrkResult", "parse_wrk", "run_wrk", "write_cycle_script"]

_LUA = """
local paths = {}
for line in io.lines("%(file)s") do paths[#paths + 1] = line end
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  i = (id or 0) * 7919
end
function request()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
"""


def write_cycle_script(directory: Path, paths: list[str]) -> Path:
    """Write the URL list and the Lua script that cycles through it; return the script."""
    path_file = directory / "paths.txt"
    path_file.write_text("\n".join(paths) + "\n", encoding="utf-8")
    script = directory / "cycle.lua"
    script.write_text(_LUA % {"file": path_file}, encoding="utf-8")
    return script


@dataclass(frozen=True, slots=True)
class WrkResult:
    """What one wrk run measured."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse_wrk(output: str) -> WrkResult:
    """Read wrk's `--latency` report."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    lat = {
        p: _ms(v, u)
        for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    }
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if rps is None or total is None or "50" not in lat or "99" not in lat:
        raise RuntimeError(f"cannot read wrk output:\n{output}")
    return WrkResult(
        requests_per_s=float(rps.group(1)),
        p50_ms=lat["50"],
        p99_ms=lat["99"],
        requests=int(total.group(1)),
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
    )


def run_wrk(url: str, script: Path, connections: int, threads: int, seconds: float) -> WrkResult:
    done = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    return parse_wrk(done.stdout)
