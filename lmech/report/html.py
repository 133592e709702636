"""A self-contained HTML report: verdict table, then one dots-on-curves figure per law.

Figures are embedded as data URIs; there are no scripts, stylesheets or fonts to fetch. Every piece
of text taken from a verdict or config is HTML-escaped.
"""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from html import escape
from pathlib import Path

from .._version import __version__
from .figures import figure_data_uri
from .pillars import DESIDERATA, OPEN_DIRECTIONS, PILLARS
from .verdict import PASS, Verdict

_CSS = """
body{font-family:system-ui,sans-serif;margin:0;color:#222;display:flex;align-items:flex-start}
main{max-width:1200px;padding:0 1.5em 3em;min-width:0;flex:1}
nav#toc{position:sticky;top:0;height:100vh;overflow-y:auto;width:270px;flex:none;background:#f7f7f9;
border-right:1px solid #ddd;padding:0.8em;font-size:13px;box-sizing:border-box}
nav#toc ul{list-style:none;padding-left:0.4em;margin:0.2em 0 0.8em}nav#toc li{margin:2px 0}
nav#toc a{text-decoration:none;color:#1a4f8b}nav#toc h3{margin:0.8em 0 0.2em;font-size:13px}
.filters button{font-size:12px;margin:2px;padding:2px 6px;border:1px solid #aaa;background:#fff;cursor:pointer}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:14px}
.pass{background:#d9f2d9}.fail{background:#f8d7da}.inconclusive,.out-of-regime{background:#fff3cd}.diverged{background:#e2d9f3}
.badge{display:inline-block;padding:0 5px;border-radius:3px;font-size:11px;border:1px solid #bbb;white-space:nowrap}
pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:12px}img{max-width:100%}dt{font-weight:600}
section.law{border-top:1px solid #ddd;margin-top:1.5em}
body[data-filter=pass] .law:not([data-status=pass]),body[data-filter=fail] .law:not([data-status=fail]),
body[data-filter=other] .law[data-status=pass],body[data-filter=other] .law[data-status=fail]{display:none}
"""

_FILTER_JS = ("function show(s){document.body.dataset.filter=s;}"
              "document.querySelectorAll('.filters button').forEach(b=>b.addEventListener('click',"
              "()=>show(b.dataset.show)));")


_VIOLATED = {"claim": "violated: fails the law", "regime": "violated: out of regime",
             "data": "violated: inconclusive", "info": "not met (reported only)"}


def _fmt(x: float) -> str:
    return "nan" if x != x else f"{x:.4g}"


def _changed(meta: dict) -> str:
    """A warning for each earlier verdict of this store computed under other settings (``meta["settings_changed"]``)."""
    return "".join(f"<br><b>Settings changed</b> since the verdict of "
                   f"{datetime.fromtimestamp(c['created'] or 0, timezone.utc):%Y-%m-%d %H:%M} UTC, which used "
                   f"<code>{escape(str(c['settings']))}</code>" for c in meta.get("settings_changed", []))


def _badge(status: str) -> str:
    return f"<span class='badge {escape(status)}'>{escape(status)}</span>"


def _headline(v: Verdict) -> str:
    return f"{_fmt(v.error)} / {_fmt(v.tolerance)}"


def _anchor(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower())


def _pillar(v: Verdict) -> str:
    pillar = v.meta.get("pillar", "")
    return pillar if pillar in PILLARS else "other"


def _desiderata(v: Verdict) -> dict[str, bool]:
    """Which of the scored desiderata this verdict shows (:data:`~lmech.report.pillars.DESIDERATA`)."""
    kinds = [s.kind for p in v.panels for s in p.series]
    return {"Predictive": "theory" in kinds and bool({"measured", "curve"} & set(kinds)),
            "Quantitative": v.error == v.error and v.tolerance == v.tolerance,
            "Falsifiable": any(c.kind == "claim" for c in v.checks),
            "Humble (regime stated)": bool(v.meta.get("regime"))}


def _systems_used(v: Verdict) -> str:
    """What was trained: run count by architecture, data and optimizer."""
    counts = Counter(f"{c['architecture'].get('kind', '?')} on {c['data'].get('kind', '?')}, "
                     f"{c['rule'].get('optimizer', '?')}" if "architecture" in c else f"tracked {c.get('model', 'model')}"
                     for c in v.systems.values())
    return "; ".join(f"{n} x {k}" for k, n in counts.most_common())


def _law_section(v: Verdict) -> str:
    m = v.meta
    ordered = sorted(v.checks, key=lambda c: not c.headline)  # the law's headline comparisons first
    checks = "".join(
        f"<tr class='{'pass' if c.ok else 'fail'}'><td>{'<b>' if c.headline else ''}{escape(c.name)}"
        f"{'</b>' if c.headline else ''}</td><td>{escape(c.kind)}</td><td>{escape(_fmt(c.value))}</td>"
        f"<td>{escape(c.bound)}</td><td>{'ok' if c.ok else _VIOLATED[c.kind]}</td></tr>" for c in ordered)
    figure = f"<img alt='{escape(v.law)} figure' src='{figure_data_uri(v.panels)}'>" if v.panels else ""
    configs = escape(json.dumps({"systems": v.systems, "runs": v.runs}, indent=1, sort_keys=True))
    shown = ", ".join(f"{name.split(' ')[0].lower()} {'yes' if ok else 'no'}" for name, ok in _desiderata(v).items())
    regime_checks = sum(c.kind == "regime" for c in v.checks)
    return f"""
<section class="law" id="{escape(v.law)}" data-status="{escape(v.status)}">
<h2>{escape(v.law)}: {escape(m.get('title', ''))} {_badge(v.status)}</h2>
<p><b>{escape(v.metric)}</b> = {escape(_fmt(v.error))} (tolerance {escape(_fmt(v.tolerance))}). {escape(v.summary)}</p>
{figure}
<dl>
<dt>Claim</dt><dd>{escape(m.get('claim', ''))}</dd>
<dt>Pillar</dt><dd>{escape(m.get('pillar', ''))}</dd>
<dt>Citation</dt><dd>{escape(m.get('citation', ''))}</dd>
<dt>Regime of validity</dt><dd>{escape(m.get('regime', ''))} ({regime_checks} regime check(s) below)</dd>
<dt>Prediction and tolerance</dt><dd>{escape(m.get('tolerance', ''))}</dd>
<dt>Systems used</dt><dd>{escape(_systems_used(v))}</dd>
<dt>Desiderata shown</dt><dd>{escape(shown)}</dd>
<dt>Settings ({escape(v.scale)})</dt><dd><code>{escape(str(m.get('settings', '')))}</code>{_changed(m)}</dd>
</dl>
<table><tr><th>check</th><th>kind</th><th>value</th><th>bound</th><th></th></tr>{checks}</table>
<details><summary>Exact configuration ({len(v.systems)} systems)</summary><pre>{configs}</pre></details>
</section>"""


def _overview(verdicts: list[Verdict], groups: dict[str, list[Verdict]]) -> str:
    rows = "".join(
        f"<tr><td><a href='#pillar-{_anchor(p)}'>{escape(p)}</a></td><td>{escape(PILLARS.get(p, ''))}</td><td>"
        + " ".join(f"<a href='#{escape(v.law)}' title='{escape(v.metric)}'>{_badge(v.status)} {escape(v.law)} "
                   f"({escape(_headline(v))})</a>" for v in vs)
        + f"</td><td>{sum(v.status == PASS for v in vs)}/{len(vs)}</td></tr>" for p, vs in groups.items())
    shown = [_desiderata(v) for v in verdicts]
    score = "".join(f"<tr><td>{escape(name)}</td><td>{escape(what)}</td><td>{sum(s[name] for s in shown)}/"
                    f"{len(verdicts)}</td></tr>" for name, what in DESIDERATA)
    table = "".join(
        f"<tr class='{escape(v.status)}'><td><a href='#{escape(v.law)}'>{escape(v.law)}</a></td><td>{escape(v.scale)}</td>"
        f"<td>{escape(v.status)}</td><td>{escape(_fmt(v.error))}</td><td>{escape(_fmt(v.tolerance))}</td>"
        f"<td>{escape(v.meta.get('pillar', ''))}</td></tr>" for v in verdicts)
    directions = "".join(f"<tr><td>{escape(od)}</td><td>{escape(q)}</td><td>{escape(how)}</td></tr>"
                         for od, q, how in OPEN_DIRECTIONS)
    return f"""<section id="overview"><h2>Overview</h2>
<p>Each law pairs a first-principles prediction with a measurement on real training runs and a tolerance; the
badge is its verdict and the number its error / tolerance.</p>
<table><tr><th>pillar</th><th>what it covers</th><th>laws (error / tolerance)</th><th>pass</th></tr>{rows}</table>
<h3>Scorecard of the desiderata</h3>
<table><tr><th>desideratum</th><th>what a law shows for it</th><th>laws</th></tr>{score}</table>
<h3>All verdicts</h3>
<table><tr><th>law</th><th>scale</th><th>verdict</th><th>error</th><th>tolerance</th><th>pillar</th></tr>{table}</table>
</section>
<section id="open-directions"><h2>Open directions</h2>
<p>The field's open questions (Simon et al. 2026, Sec. 5) and whether lmech can make each measurable.</p>
<table><tr><th></th><th>question</th><th>measurable with lmech</th></tr>{directions}</table></section>"""


def _nav(groups: dict[str, list[Verdict]]) -> str:
    parts = "".join(
        f"<h3><a href='#pillar-{_anchor(p)}'>{escape(p)}</a></h3><ul>"
        + "".join(f"<li class='law' data-status='{escape(v.status)}'><a href='#{escape(v.law)}'>{_badge(v.status)} "
                  f"{escape(v.law)}</a></li>" for v in vs) + "</ul>" for p, vs in groups.items())
    return f"""<nav id="toc"><b>lmech atlas</b>
<div class="filters">show: <button data-show="all">all</button><button data-show="pass">pass</button>
<button data-show="fail">fail</button><button data-show="other">other</button></div>
<ul><li><a href="#overview">Overview</a></li><li><a href="#open-directions">Open directions</a></li></ul>{parts}</nav>"""


def html_page(title: str, body: str, *, nav: str = "", script: str = "") -> str:
    """A self-contained page: ``body`` (HTML) under the report's style, an optional ``nav`` sidebar and inline
    ``script``; nothing fetched."""
    js = f"<script>{script}</script>" if script else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{_CSS}</style></head>
<body data-filter="all">{nav}<main>{body}</main>{js}
</body></html>
"""


def render_report(verdicts: list[Verdict]) -> str:
    """The report as one HTML string: the overview (pillars, scorecard, all verdicts), the open directions, then a
    section per pillar with a section per law; a sticky navigation with a status filter."""
    groups: dict[str, list[Verdict]] = {p: [] for p in PILLARS}
    for v in verdicts:
        groups.setdefault(_pillar(v), []).append(v)
    groups = {p: vs for p, vs in groups.items() if vs}
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    counts = ", ".join(f"{n} {status}" for status, n in sorted(Counter(v.status for v in verdicts).items()))
    pillars = "".join(
        f"<section id='pillar-{_anchor(p)}'><h2>Pillar: {escape(p)}</h2><p>{escape(PILLARS.get(p, ''))}</p>"
        + "".join(_law_section(v) for v in vs) + "</section>" for p, vs in groups.items())
    body = f"""<h1>lmech report</h1><p>lmech {escape(__version__)}, {escape(stamp)}: {len(verdicts)} laws ({escape(counts)}).
Theory as lines, measurements as dots.</p>
{_overview(verdicts, groups)}
{pillars}"""
    return html_page("lmech report", body, nav=_nav(groups), script=_FILTER_JS)


def write_report(verdicts: list[Verdict], path: str | Path) -> Path:
    """Write :func:`render_report` to ``path`` (folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(verdicts), encoding="utf-8")
    return path
