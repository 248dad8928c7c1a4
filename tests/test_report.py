"""imgkit report (and eval -o's gallery): one static page, checked in a real browser.

Headless Chromium opens the page from its file: every image must load, and a file
named like HTML must show as its name. Where Chromium is absent the browser tests
skip with the reason (:func:`needs_chromium` is the one place that decides).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import need
from PIL import Image

from tests.cli_helpers import invoke
from tests.seg_data import write_disc_pairs
from tests.tiny_bundles import save_classifier, save_segmenter

HOSTILE = "<img src=x onerror=alert(1)>.png"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
# Added to a copy of the page only: the page itself has no script. After the load
# event (images included) it writes which images failed into the DOM.
CHECK = """<script>
addEventListener("load", () => {
  const broken = [...document.images]
    .filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.getAttribute("src"));
  const out = document.createElement("pre");
  out.id = "imgkit-check";
  out.textContent = JSON.stringify({images: document.images.length, broken});
  document.body.appendChild(out);
});
</script>"""


def needs_chromium() -> str:
    """The Chromium executable, or a skip that says why (CI turns skips into failures)."""
    need(
        CHROMIUM is not None,
        "headless Chromium is not installed (Debian: apt-get install chromium)",
    )
    return CHROMIUM


def chromium(profile: Path, *args) -> str:
    run = [needs_chromium(), *FLAGS, f"--user-data-dir={profile}", *map(str, args)]
    done = subprocess.run(run, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def browser_check(page: Path, tmp_path: Path) -> tuple[dict, str]:
    """Open ``page`` in headless Chromium; (what the check found, the rendered DOM)."""
    html = page.read_text(encoding="utf-8")
    probe = page.with_name("browser-check.html")
    probe.write_text(html.replace("</body>", CHECK + "</body>"), encoding="utf-8")
    dom = chromium(
        tmp_path / "profile", "--virtual-time-budget=20000", "--dump-dom", probe.as_uri()
    )
    probe.unlink()
    found = re.search(r'<pre id="imgkit-check">(.*?)</pre>', dom, re.DOTALL)
    assert found, dom[-2000:]
    return json.loads(found.group(1)), dom


def _static(html: str) -> None:
    """No script, nothing from the network."""
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)


@pytest.fixture
def classified(tmp_path) -> tuple[Path, Path]:
    """The brightness bundle and a labelled folder it gets partly wrong (a hostile name)."""
    run = save_classifier(tmp_path / "run", temperature=1.5, polarity=None)
    rng = np.random.default_rng(0)
    photos = tmp_path / "photos"
    for label, (low, high) in {"dim": (10, 170), "lit": (90, 250)}.items():
        (photos / label).mkdir(parents=True)
        for i, level in enumerate(rng.integers(low, high, size=8)):
            name = HOSTILE if (label, i) == ("dim", 0) else f"{label}.{i}.png"
            pixels = np.full((10, 12), level, dtype=np.uint8)
            Image.fromarray(pixels).save(photos / label / name)
    # The hostile image is surely a mistake: a bright "dim" image is among the top losses.
    Image.fromarray(np.full((10, 12), 240, dtype=np.uint8)).save(photos / "dim" / HOSTILE)
    data = tmp_path / "data"
    assert invoke("prep", photos, "-o", data, "--val", "0", "--test", "0").exit_code == 0
    return run, data


def test_classification_report_renders_with_every_image(classified, tmp_path):
    run, data = classified
    out = tmp_path / "report"
    result = invoke("report", run, "-o", out, "--truth", data, "--split", "train")
    assert result.exit_code == 0, result.output
    page = out / "index.html"
    assert result.stdout.strip() == str(page)
    html = page.read_text(encoding="utf-8")
    _static(html)
    for section in ("confusion", "losses", "pairs", "calibration", "threshold", "cell-0-1"):
        assert f'id="{section}"' in html
    assert 'href="#cell-0-1"' in html  # a confusion cell links to its images
    # The hostile name is text, escaped, never markup.
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in html
    assert "<img src=x" not in html
    images = re.findall(r'<img src="([^"]+)"', html)
    assert images and all((out / src).is_file() for src in images)
    found, dom = browser_check(page, tmp_path)
    assert found == {"images": len(images), "broken": []}
    assert '<img src="x"' not in dom and "onerror" not in dom.replace("onerror=alert(1)&gt;", "")
    shot = tmp_path / "shot.png"
    chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri())
    with Image.open(shot) as img:
        colours = len(np.unique(np.asarray(img.convert("RGB")).reshape(-1, 3), axis=0))
    assert colours > 200  # text, tables, thumbnails and plots: not a blank page


def test_segmentation_report_shows_the_worst_masks(tmp_path):
    run = save_segmenter(tmp_path / "run")
    images, masks = write_disc_pairs(tmp_path / "pairs", n=10, size=(24, 24))
    data = tmp_path / "segdata"
    result = invoke("prep", images, "--masks", masks, "-o", data, "--val", "0", "--test", "0")
    assert result.exit_code == 0, result.output
    out = tmp_path / "report"
    result = invoke("report", run, "-o", out, "--truth", data, "--split", "train")
    assert result.exit_code == 0, result.output
    html = (out / "index.html").read_text(encoding="utf-8")
    _static(html)
    assert 'id="worst"' in html and "mean IoU" in html
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) == 8  # the 8 worst of 10 panels
    found, _ = browser_check(out / "index.html", tmp_path)
    assert found == {"images": 8, "broken": []}


def test_report_without_truth_and_with_predictions(classified, tmp_path):
    run, data = classified
    bare = invoke("report", run, "-o", tmp_path / "bare")
    assert bare.exit_code == 0, bare.output
    html = (tmp_path / "bare" / "index.html").read_text(encoding="utf-8")
    assert 'id="settings"' in html and 'id="confusion"' not in html
    preds = tmp_path / "preds.csv"
    assert invoke("predict", run, data, "--split", "train", "-o", preds).exit_code == 0
    result = invoke("report", run, "-o", tmp_path / "r", "--predictions", preds, "--truth", data)
    assert result.exit_code == 0, result.output
    assert 'id="calibration"' in (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    lone = invoke("report", run, "-o", tmp_path / "x", "--predictions", preds)
    assert lone.exit_code == 1 and "--truth" in lone.output


def test_eval_writes_the_same_gallery(classified, tmp_path):
    run, data = classified
    preds = tmp_path / "preds.csv"
    assert invoke("predict", run, data, "--split", "train", "-o", preds).exit_code == 0
    result = invoke("eval", preds, "--truth", data, "-o", tmp_path / "ev")
    assert result.exit_code == 0, result.output
    html = (tmp_path / "ev" / "index.html").read_text(encoding="utf-8")
    _static(html)
    assert 'href="#cell-0-1"' in html and 'id="cell-0-1"' in html
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in html and "<img src=x" not in html
    images = re.findall(r'<img src="([^"]+)"', html)
    assert images and all((tmp_path / "ev" / src).is_file() for src in images)
