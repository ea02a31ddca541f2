"""ardary-pipeline: Ardary SMS callbacks and sends as Kafka streams."""

__all__ = ["__version__"]

__version__ = "0.1.0"
