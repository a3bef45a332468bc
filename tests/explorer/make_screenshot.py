"""Save a screenshot of a report for the README (``docs/img/report.png``).

Usage (from the repository root)::

    python tests/explorer/make_screenshot.py --scan SCAN_DIR [--extras EXTRAS.json] [-o
    docs/img/report.png]
    python tests/explorer/make_screenshot.py --html report.html
    python tests/explorer/make_screenshot.py            # a synthetic 30 x 9 model

It opens the report in headless Chromium (``/usr/bin/chromium``), picks a relation,
opens the panel of its best head and captures the top of the page: model card,
heatmap and head panel.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from playwright.sync_api import sync_playwright

from headmaps.explorer import synthetic_scan, write_report
from headmaps.scoring import ScanResult

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scan", type=Path, help="a saved scan")
    ap.add_argument("--extras", type=Path, help="extras JSON in the report schema")
    ap.add_argument("--html", type=Path,
                    help="an existing report (then --scan is only used to pick the head)")
    ap.add_argument("--relation", default="overview",
                    help="relation to show, or 'overview' (the first view; the default)")
    ap.add_argument("-o", "--output", type=Path, default=Path("docs/img/report.png"))
    ap.add_argument("--width", type=int, default=1440)
    args = ap.parse_args(argv)

    if args.scan:
        scan = ScanResult.load(args.scan)
        extras = json.loads(args.extras.read_text()) if args.extras else None
    else:
        scan, extras = synthetic_scan(30, 9, 20, seed=1)
    html = args.html
    if html is None:
        html = Path(tempfile.mkdtemp()) / "report.html"
        write_report(html, scan, extras)
    overview = args.relation == "overview"
    rel = args.relation if args.relation in scan.relations else scan.relations[0]
    r = scan.relations.index(rel)
    best = scan.scores.max(axis=0) if overview else scan.scores[r]
    layer, head = np.unravel_index(np.argmax(best), scan.scores.shape[1:])
    if overview:
        rel = "overview"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": 1000},
                                device_scale_factor=1)
        page.goto(html.resolve().as_uri())
        page.wait_for_function("() => window.__headmapsReady === true")
        if not overview:
            page.select_option("#hm-rel", str(r))
        page.click(f'#hm-grid [data-head="{layer}.{head}"]')
        page.mouse.move(0, 0)
        bottom = page.evaluate("() => { const r = "
                               "document.getElementById('hm-map-sec').getBoundingClientRect(); "
                               "return r.bottom + window.scrollY; }")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.output),
                        clip={"x": 0, "y": 0, "width": args.width, "height": bottom + 12},
                        full_page=True)
        browser.close()
    print(f"wrote {args.output} ({rel}, head {layer}.{head})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
