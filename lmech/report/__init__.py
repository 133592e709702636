"""Report: a self-contained HTML page with one dots-on-curves figure per law."""
from .figures import figure_png
from .html import render_report, write_report

__all__ = ["figure_png", "render_report", "write_report"]
