"""The live dashboard page, served by the worker at `/` (no CDN, no build step).

The page is one static file; it draws with uPlot, vendored in `pipeline/static/vendor/` (its
version and licence are in the README there) and served by the worker beside the page.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

__all__ = ["VENDOR_FILES", "dashboard_html", "register_dashboard", "vendor_file"]

VENDOR_FILES = {
    "uPlot.iife.min.js": "text/javascript",
    "uPlot.min.css": "text/css",
}
"""The vendored files the page loads (from `static/vendor/<name>`) and their content types."""


def dashboard_html() -> str:
    """The page: it polls the worker's `/metrics/sms` (JSON) and `/metrics` (Prometheus)."""
    return (resources.files("pipeline") / "static" / "dashboard.html").read_text(encoding="utf-8")


def vendor_file(name: str) -> str:
    """The text of one of `VENDOR_FILES`."""
    return (resources.files("pipeline") / "static" / "vendor" / name).read_text(encoding="utf-8")


def register_dashboard(app: Any) -> None:
    """Serve the dashboard at `/` and its vendored files at `/static/vendor/…`."""
    page = dashboard_html()

    async def dashboard(self: Any, request: Any) -> Any:
        return self.html(page)

    app.page("/", name="pipeline_dashboard")(dashboard)
    for index, (name, content_type) in enumerate(VENDOR_FILES.items()):
        app.page(f"/static/vendor/{name}", name=f"pipeline_dashboard_vendor{index}")(
            _static_view(vendor_file(name), content_type)
        )


def _static_view(body: str, content_type: str) -> Any:
    headers = {"Cache-Control": "public, max-age=3600"}

    async def serve(self: Any, request: Any) -> Any:
        return self.text(body, content_type=content_type, headers=headers)

    return serve
