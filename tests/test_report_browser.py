"""The report in a real browser (issue 18, item 2): Debian's headless Chromium opens the page of
a trained run; it loads with no console error, no uncaught exception and no failed load, and its
screenshot is not blank. Skipped, with the reason, where Chromium is not installed or cannot
start (``scripts/setup --test`` installs it on Debian)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from browser_page import PageError, find_chromium, open_page
from composer.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    binary = find_chromium()
    if binary is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; scripts/setup --test installs it)")
    probe = tmp_path_factory.mktemp("probe") / "probe.html"
    probe.write_text("<!DOCTYPE html><title>probe</title><p>probe</p>")
    try:
        open_page(probe, 200, 200, binary=binary, timeout=30)
    except (PageError, OSError, TimeoutError) as exc:
        pytest.skip(f"Chromium ({binary}) cannot run here: {exc}")
    return binary


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    run = folder / "mmoe"
    assert main(["train", str(ROOT / "blueprints/mmoe.yaml"), "--data", "synthetic-msl:rows=2000", "--epochs", "1",
                 "--batch-size", "256", "--out", str(run), "--verbose", "0"]) == 0
    assert main(["report", str(run), "-o", str(folder / "report.html")]) == 0
    return folder / "report.html"


def blank(png: bytes) -> bool:
    """A screenshot that shows nothing: (nearly) one colour, or almost nothing off the background."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    return len(colours) < 16 or counts.max() / len(pixels) > 0.98


def test_the_report_loads_without_errors_and_shows_something(chromium, report):
    errors, png = open_page(report, 1280, 2000, binary=chromium)
    assert errors == []
    assert png.startswith(b"\x89PNG")
    assert not blank(png)


def test_errors_and_a_blank_page_would_be_caught(chromium, report, tmp_path):
    """The checks above can fail: a broken inline image (the page's own load check logs it), an
    uncaught exception and a missing local file are each reported; an empty page is blank."""
    page = report.read_text().replace(
        "</main>", "<img src='data:image/png;base64,AAAA' alt='broken plot'><img src='missing.png' alt='gone'>"
                   "<script>undefinedFunction()</script></main>")
    bad = tmp_path / "bad.html"
    bad.write_text(page)
    errors, _ = open_page(bad, 1280, 1000, binary=chromium)
    text = "\n".join(errors)
    assert "image did not load: broken plot" in text
    assert "undefinedFunction is not defined" in text
    assert "missing.png" in text
    empty = tmp_path / "empty.html"
    empty.write_text("<!DOCTYPE html><html><body></body></html>")
    errors, png = open_page(empty, 400, 300, binary=chromium)
    assert errors == [] and blank(png)
