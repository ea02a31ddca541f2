"""`ardary-pipeline topics create|list`: provision and inspect the pipeline's topics."""

from __future__ import annotations

import click

from pipeline.cli.connect import connect
from pipeline.kafka.admin import describe_topics, ensure_topics
from pipeline.settings import load_settings
from pipeline.topics import TOPICS

__all__ = ["topics"]


@click.group()
def topics() -> None:
    """Create or list the pipeline's topics (names after PIPELINE_TOPIC_PREFIX)."""


@topics.command("create")
def create() -> None:
    """Create the missing topics; existing ones are left unchanged (safe to run twice)."""
    settings = load_settings()
    cluster = connect(settings)
    created = ensure_topics(
        cluster.client,
        settings.pipeline_topic_prefix,
        settings.pipeline_partitions,
        settings.pipeline_replication_factor,
    )
    for name in created:
        click.echo(f"created {name}")
    click.echo(f"{len(created)} created, {len(TOPICS) - len(created)} already present")


@topics.command("list")
def list_() -> None:
    """Print the pipeline's topics as they are on the broker, with their configs."""
    settings = load_settings()
    prefix = settings.pipeline_topic_prefix
    states = {s.name: s for s in describe_topics(connect(settings).client, prefix)}
    click.echo(f"{'topic':<44} {'partitions':>10}  {'key':<14} configs")
    for spec in TOPICS:
        name = spec.full_name(prefix)
        state = states.get(name)
        if state is None:
            click.echo(f"{name:<44} {'missing':>10}  {spec.key.label:<14}")
            continue
        configs = " ".join(f"{k}={v}" for k, v in sorted(state.config.items()))
        click.echo(f"{name:<44} {state.partitions:>10}  {spec.key.label:<14} {configs}")
