"""Architecture rules a test can check: pure packages import no I/O; compose runs real commands,
each in the image it needs."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import click
import pytest
import yaml

from pipeline.cli import COMMANDS, cli
from pipeline.devtools.kafkajars import KAFKA_VERSION
from tests.unit.test_kafka_boundary import parse

ROOT = Path(__file__).resolve().parents[2]
IO_MODULES = {
    "faust",
    "mode",
    "aiokafka",
    "kafka",
    "httpx",
    "starlette",
    "granian",
    "uvicorn",
    "duckdb",
    "psycopg",
    "pyarrow",
    "socket",
    "requests",
    "aiohttp",
}


def imported_roots(path: Path) -> set[str]:
    tree = parse(path)  # the boundary test's parse (the garbage collector held off)
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", ["core", "ardary"])
def test_pure_packages_import_no_io_library(package: str) -> None:
    files = sorted((ROOT / "pipeline" / package).rglob("*.py"))
    assert files, f"pipeline/{package} is empty"
    for path in files:
        bad = imported_roots(path) & IO_MODULES
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_every_registered_command_loads() -> None:
    ctx = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(ctx, name)
        assert isinstance(command, click.Command), name
        assert command.help or command.callback.__doc__, f"{name} has no help text"


def test_compose_services_run_real_subcommands() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert "kafka" in services and services["kafka"]["image"].startswith("apache/kafka")
    ctx = click.Context(cli)
    pipeline_services = {n: s for n, s in services.items() if n != "kafka"}
    assert {"ingress", "worker", "sink", "simulator", "topics"} <= set(pipeline_services)
    for name, service in pipeline_services.items():
        argv = service["command"]
        command = cli.get_command(ctx, argv[0])
        assert command is not None, f"service {name}: {argv[0]} is not a subcommand"
        args = argv[1:]
        if isinstance(command, click.Group):
            sub = command.get_command(ctx, args[0])
            assert sub is not None, f"service {name}: {argv[:2]} is not a subcommand"
            command, args = sub, args[1:]
        # parse (without running) the flags the service passes: a typo fails here
        command.make_context(name, list(args), resilient_parsing=False)
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert service["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"


def runtime_command_modules() -> set[str]:
    """The CLI modules pyproject's import-linter contract keeps free of the developer tooling."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [
        c for c in contracts["contracts"] if c["name"].startswith("No runtime module imports")
    ]
    return {m for m in contract["source_modules"] if m.startswith("pipeline.cli.")}


def dockerfile_stages() -> dict[str, list[str]]:
    """deploy/Dockerfile's stages by name, each with its lines, in file order."""
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines():
        if line.startswith("FROM "):
            current = stages.setdefault(line.split(" AS ")[1].strip(), [])
        current.append(line)
    return stages


def test_the_runtime_image_has_no_developer_tooling_and_the_dev_image_has() -> None:
    stages = dockerfile_stages()
    assert list(stages)[-1] == "runtime"  # what `docker build` makes without --target
    runtime_installs = [line for line in stages["runtime"] if "pip install" in line]
    assert runtime_installs and not any("[dev]" in line for line in runtime_installs)
    assert any('"ardary-pipeline[dev]"' in line for line in stages["dev"])


def test_compose_builds_the_dev_image_only_for_developer_commands() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    runtime = runtime_command_modules()
    assert {"pipeline.cli.ingress", "pipeline.cli.worker", "pipeline.cli.sink"} <= runtime
    targets = {}
    for name, service in services.items():
        if name == "kafka":
            continue
        module = COMMANDS[service["command"][0]][0].partition(":")[0]
        targets[name] = service["build"]["target"]
        assert targets[name] == ("runtime" if module in runtime else "dev"), name
    assert targets["simulator"] == "dev"
    images = {services[n]["image"] for n, t in targets.items() if t == "runtime"}
    assert len(images) == 1 and services["simulator"]["image"] not in images  # no tag clash


def test_compose_runs_the_local_brokers_kafka_version() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
