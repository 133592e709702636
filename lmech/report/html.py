"""A self-contained HTML report: verdict table, then one dots-on-curves figure per law.

Figures are embedded as data URIs; there are no scripts, stylesheets or fonts to fetch. Every piece
of text taken from a verdict or config is HTML-escaped.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from .._version import __version__
from .verdict import Verdict
from .figures import figure_data_uri

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:14px}
.pass{background:#d9f2d9}.fail{background:#f8d7da}.inconclusive,.out-of-regime{background:#fff3cd}.diverged{background:#e2d9f3}
pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:12px}img{max-width:100%}dt{font-weight:600}
"""


_VIOLATED = {"claim": "violated: fails the law", "regime": "violated: out of regime",
             "data": "violated: inconclusive", "info": "not met (reported only)"}


def _fmt(x: float) -> str:
    return "nan" if x != x else f"{x:.4g}"


def _changed(meta: dict) -> str:
    """A warning for each earlier verdict of this store computed under other settings (``meta["settings_changed"]``)."""
    return "".join(f"<br><b>Settings changed</b> since the verdict of "
                   f"{datetime.fromtimestamp(c['created'] or 0, timezone.utc):%Y-%m-%d %H:%M} UTC, which used "
                   f"<code>{escape(str(c['settings']))}</code>" for c in meta.get("settings_changed", []))


def _law_section(v: Verdict) -> str:
    m = v.meta
    ordered = sorted(v.checks, key=lambda c: not c.headline)  # the law's headline comparisons first
    checks = "".join(
        f"<tr class='{'pass' if c.ok else 'fail'}'><td>{'<b>' if c.headline else ''}{escape(c.name)}"
        f"{'</b>' if c.headline else ''}</td><td>{escape(c.kind)}</td><td>{escape(_fmt(c.value))}</td>"
        f"<td>{escape(c.bound)}</td><td>{'ok' if c.ok else _VIOLATED[c.kind]}</td></tr>" for c in ordered)
    figure = f"<img alt='{escape(v.law)} figure' src='{figure_data_uri(v.panels)}'>" if v.panels else ""
    configs = escape(json.dumps({"systems": v.systems, "runs": v.runs}, indent=1, sort_keys=True))
    return f"""
<section id="{escape(v.law)}">
<h2>{escape(v.law)}: {escape(m.get('title', ''))} <span class="{escape(v.status)}">[{escape(v.status)}]</span></h2>
<p>{escape(v.summary)}</p>
{figure}
<dl>
<dt>Claim</dt><dd>{escape(m.get('claim', ''))}</dd>
<dt>Pillar</dt><dd>{escape(m.get('pillar', ''))}</dd>
<dt>Citation</dt><dd>{escape(m.get('citation', ''))}</dd>
<dt>Regime of validity</dt><dd>{escape(m.get('regime', ''))}</dd>
<dt>Tolerance</dt><dd>{escape(m.get('tolerance', ''))}</dd>
<dt>Error metric</dt><dd>{escape(v.metric)} = {escape(_fmt(v.error))} (tolerance {escape(_fmt(v.tolerance))})</dd>
<dt>Settings ({escape(v.scale)})</dt><dd><code>{escape(str(m.get('settings', '')))}</code>{_changed(m)}</dd>
</dl>
<table><tr><th>check</th><th>kind</th><th>value</th><th>bound</th><th></th></tr>{checks}</table>
<details><summary>Exact configuration ({len(v.systems)} systems)</summary><pre>{configs}</pre></details>
</section>"""


def html_page(title: str, body: str) -> str:
    """A self-contained page: ``body`` (HTML) under the report's style, nothing fetched."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{_CSS}</style></head>
<body>{body}
</body></html>
"""


def render_report(verdicts: list[Verdict]) -> str:
    """The report as one HTML string."""
    rows = "".join(
        f"<tr class='{escape(v.status)}'><td><a href='#{escape(v.law)}'>{escape(v.law)}</a></td><td>{escape(v.scale)}</td>"
        f"<td>{escape(v.status)}</td><td>{escape(_fmt(v.error))}</td><td>{escape(_fmt(v.tolerance))}</td>"
        f"<td>{escape(v.meta.get('pillar', ''))}</td></tr>" for v in verdicts)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = "".join(_law_section(v) for v in verdicts)
    return html_page("lmech report", f"""<h1>lmech report</h1><p>lmech {escape(__version__)}, {escape(stamp)}. Theory as
lines, measurements as dots.</p>
<table><tr><th>law</th><th>scale</th><th>verdict</th><th>error</th><th>tolerance</th><th>pillar</th></tr>{rows}</table>
{body}""")


def write_report(verdicts: list[Verdict], path: str | Path) -> Path:
    """Write :func:`render_report` to ``path`` (folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(verdicts), encoding="utf-8")
    return path
