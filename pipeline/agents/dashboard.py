"""The live dashboard page, served by the worker at `/` (one static file, no CDN, no build)."""

from __future__ import annotations

from importlib import resources
from typing import Any

__all__ = ["dashboard_html", "register_dashboard"]


def dashboard_html() -> str:
    """The page: it polls the worker's `/metrics/sms` (JSON) and `/metrics` (Prometheus)."""
    return (resources.files("pipeline") / "static" / "dashboard.html").read_text(encoding="utf-8")


def register_dashboard(app: Any) -> None:
    """Serve the dashboard at `/` on the worker's web server."""
    page = dashboard_html()

    async def dashboard(self: Any, request: Any) -> Any:
        return self.html(page)

    app.page("/", name="pipeline_dashboard")(dashboard)
