"""report.html in a real browser: headless Chromium runs the page's script, we read the DOM it leaves.

Checks what a reader would see: one row per (run, sample), the filters (set through the URL
fragment, as a shared link would) hiding exactly the rows they should, and every thumbnail strip
loaded; a deleted strip shows up as failed, so the image check can fail. Chromium is the Debian
package ``chromium`` (``make browser`` installs it when missing); without it the test skips.
"""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pytest

from harness.report.build import build_report
from tests.report_fixtures import write_runs

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium on PATH: `make browser` installs the Debian package `chromium` "
                "(apt-get, as root or with sudo); it could not be installed here")


class Page(HTMLParser):
    """The rendered DOM's sample rows, thumbnail images and the 'showing ...' line."""

    def __init__(self, dom: str):
        super().__init__()
        self.rows: list[dict[str, str | None]] = []
        self.images: list[dict[str, str | None]] = []
        self.shown = ""
        self._in_shown = False
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-status" in a:
            self.rows.append(a)
        elif tag == "img" and a.get("class") == "strip":
            self.images.append(a)
        self._in_shown = a.get("id") == "shown"

    def handle_data(self, data):
        if self._in_shown:
            self.shown += data

    def visible(self) -> list[dict[str, str | None]]:
        return [r for r in self.rows if "hidden" not in r]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    chromium()  # skip before building anything when there is no browser
    root = tmp_path_factory.mktemp("browser")
    out = root / "rep"
    build_report([write_runs(root)], out)
    return out / "report.html"


def render(page: Path, fragment: str = "", profile: Path | None = None) -> Page:
    url = page.resolve().as_uri() + (f"#{fragment}" if fragment else "")
    cmd = [chromium(), *FLAGS, f"--user-data-dir={profile or page.parent / '.chromium'}",
           "--virtual-time-budget=5000", "--dump-dom", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return Page(done.stdout)


def test_rows_and_thumbnails_load(report):
    page = render(report)
    assert len(page.rows) == 9 and len(page.visible()) == 9
    assert {r["data-status"] for r in page.rows} == {"correct", "wrong", "failed"}
    assert len(page.images) == 4 and not [i for i in page.images if i.get("data-failed")]
    assert page.shown == "showing 9 of 9 rows; thumbnails: 4 of 4 loaded"


def test_filters_from_the_url_fragment(report):
    failed = render(report, "status=failed")
    assert [(r["data-run"], r["data-status"]) for r in failed.visible()] == [("m/autogaze_gr0.2", "failed")]
    assert failed.shown.startswith("showing 1 of 9 rows")
    both = render(report, f"run={quote('m/random_match-autogaze_gr0.2')}&split={quote('kind=shape')}")
    assert len(both.visible()) == 2  # s0 and s2 are shape samples
    assert all(r["data-run"] == "m/random_match-autogaze_gr0.2" and "kind=shape" in r["data-splits"]
               for r in both.visible())
    text = render(report, "q=video%201")  # free text: the question of s1
    assert len(text.visible()) == 3


def test_a_missing_thumbnail_is_reported(report, tmp_path):
    broken = tmp_path / "copy"
    shutil.copytree(report.parent, broken)
    victim = next((broken / "thumbs").rglob("*.png"))
    victim.unlink()
    page = render(broken / "report.html", profile=tmp_path / "profile")
    assert page.shown == "showing 9 of 9 rows; thumbnails: 3 of 4 loaded, 1 failed"
    assert [i["src"] for i in page.images if i.get("data-failed") == "1"] == [
        victim.relative_to(broken).as_posix()]
