"""Report: a self-contained HTML page with one dots-on-curves figure per law."""
from .coord_check_figure import plot_coord_check
from .density_figure import plot_density
from .figures import figure_png
from .html import render_report, write_report

__all__ = ["plot_coord_check", "plot_density", "figure_png", "render_report", "write_report"]
