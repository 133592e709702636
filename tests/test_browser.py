"""The report and the diagnose page in a real browser: Debian's chromium driven by Playwright (no browser download;
`.ci/run` installs chromium when it is missing). No console errors, no broken images, a section for every law in
the atlas, every in-page link resolving, the status filter working; screenshots saved."""
import shutil

import pytest
import torch

import lmech
from lmech.laws import LAWS
from lmech.report import write_report
from lmech.report.verdict import Check, Panel, Series
from lmech.store.runs import Runs

pytestmark = pytest.mark.slow  # needs chromium and `pip install -e '.[browser]'` (make test-slow)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _verdicts():
    """A verdict per registered law (the report's machinery on every law's metadata; the numbers are made up)."""
    out = []
    for i, law in enumerate(LAWS.values()):
        panel = Panel(f"{law.id}: a long title that would run into the next panel without wrapping", "x", "y",
                      [Series.of("theory", [1, 2, 3], [1, 2, 3], "theory"),
                       Series.of("measured", [1, 2, 3], [1.1, 1.9, 3.2], "measured")], xscale="log", yscale="log")
        ok = i % 5 != 0
        v = law.verdict(Runs(), metric="relative error", error=0.05 if ok else 0.5, tolerance=0.1, summary="made up",
                        checks=[Check("headline", 0.05 if ok else 0.5, "<= 0.1", ok, headline=True)], panels=[panel])
        v.scale = "quick"
        out.append(v)
    return out


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: apt-get install chromium (.ci/run does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _open(browser, path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return page, errors


def _broken_images(page):
    return page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).length")


def _dangling_links(page):
    return page.evaluate("""Array.from(document.querySelectorAll('a[href^="#"]'))
        .map(a => a.getAttribute('href').slice(1)).filter(id => !document.getElementById(id))""")


def test_report_in_chromium(browser, tmp_path):
    path = write_report(_verdicts(), tmp_path / "report.html")
    page, errors = _open(browser, path)
    assert errors == [] and _broken_images(page) == 0 and _dangling_links(page) == []
    sections = page.evaluate("Array.from(document.querySelectorAll('section.law')).map(s => s.id)")
    assert sorted(sections) == sorted(LAWS)  # every law from `lmech list`
    assert page.evaluate("document.images.length") == len(LAWS)
    page.screenshot(path=str(tmp_path / "report.png"))
    page.click("button[data-show=fail]")  # the filter: only failing laws stay visible
    visible = page.evaluate("Array.from(document.querySelectorAll('section.law')).filter(s => s.offsetParent !== null)"
                            ".map(s => s.dataset.status)")
    assert visible and set(visible) == {"fail"}
    page.click(f"nav a[href='#{next(iter(LAWS))}']")
    assert page.evaluate("location.hash") == f"#{next(iter(LAWS))}"
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_diagnose_page_in_chromium(browser, tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker = lmech.Tracker(model, lmech.half_mse, x, y, optimizer=opt, every=10)
    for _ in range(40):
        opt.zero_grad()
        lmech.half_mse(model(x), y).backward()
        opt.step()
        tracker.step()
    diagnosis = lmech.diagnose(tracker.close())
    page, errors = _open(browser, diagnosis.write_html(tmp_path / "diagnosis.html"))
    assert errors == [] and _broken_images(page) == 0 and page.evaluate("document.images.length") == 1
    rows = page.evaluate("Array.from(document.querySelectorAll('table tr')).length")
    assert rows == len(diagnosis.findings) + 1
    page.screenshot(path=str(tmp_path / "diagnosis.png"))
