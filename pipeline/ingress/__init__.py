"""Stage 1 of the pipeline: Ardary's HTTP callbacks into Kafka (verify, parse, publish)."""

__all__: list[str] = []
