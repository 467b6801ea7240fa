"""A real browser runs the widgets in JupyterLab and uses them like a student would.

nbval executes notebooks without a frontend, so it cannot tell whether a widget *renders* or whether typing into
it does anything. These tests can: each starts JupyterLab on a free local port and opens a notebook in headless
Chromium. The first runs notebook 05, types class names into the prompt app's text box, and checks that the bar
chart changes. The second runs a small notebook with the image search app at k = 10 (an untrained model: the
layout is the point) and checks that the ten results render, wrap onto rows inside the notebook's width, and
change when a student types a new query.

Needs Chromium at /usr/bin/chromium (`apt-get install chromium chromium-driver`; .ci/run installs it) and the
playwright Python package (the dev extras); skipped with a message otherwise. Playwright drives the system
Chromium, so `playwright install` is never needed.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = "05_zero_shot_prompt_classifiers.ipynb"
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SERVER_START_S = 90  # JupyterLab's first start builds nothing, but imports are slow on a busy 2-core machine
RUN_ALL_S = 300  # in CI this may be the first notebook to need the main smoke model: it trains it (later ones load it)
WIDGET_S = 60

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"no Chromium at {CHROMIUM}: `apt-get install chromium chromium-driver` "
                                       "to run the real-browser test of the widgets")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, method: str = "GET", timeout: float = 5.0):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=timeout) as response:
        return response.status, response.read()


@pytest.fixture
def jupyter_lab(tmp_path):
    """A JupyterLab server on a free port whose root is a copy of the notebook; yields (base_url, token)."""
    pytest.importorskip("jupyterlab")
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOKS / NOTEBOOK, root / NOTEBOOK)
    env = dict(os.environ, MINICLIP_SMOKE="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.pop("MPLBACKEND", None)  # `make test` sets Agg; the browser must get inline PNG figures
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_WORKSPACES_DIR", "JUPYTERLAB_SETTINGS_DIR",
                 "IPYTHONDIR"):
        folder = tmp_path / name.lower()
        folder.mkdir()
        env[name] = str(folder)
    # Render every cell (no virtual scrolling) and fetch no news: the page then holds all we look for.
    settings = tmp_path / "jupyterlab_settings_dir"
    (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"}))
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))

    port, token = _free_port(), uuid.uuid4().hex
    log = open(tmp_path / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--allow-root", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                log_text = (tmp_path / "jupyterlab.log").read_text()[-3000:]
                pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log_text}")
            try:
                if _request(f"{base}/api/status?token={token}")[0] == 200:
                    break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within {SERVER_START_S} s")
            time.sleep(0.5)
        yield base, token
    finally:
        try:
            _request(f"{base}/api/shutdown?token={token}", method="POST")
            server.wait(timeout=20)
        except Exception:
            server.kill()
            server.wait(timeout=10)
        log.close()


def _output_texts(page) -> list[str]:
    return page.locator(".jp-OutputArea-output").all_inner_texts()


def _run_all(page, base: str, token: str, notebook: str, min_code_cells: int = 1) -> None:
    """Open `notebook` in JupyterLab, run all its cells and wait until every one has run and none raised."""
    page.set_default_timeout(30_000)
    page.goto(f"{base}/lab/tree/{notebook}?token={token}", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=SERVER_START_S * 1000)

    # The toolbar says "idle" before any kernel exists: wait for a named kernel, then for idle.
    page.wait_for_function(
        """() => { const k = document.querySelector('.jp-KernelName');
                   const t = k ? k.textContent.trim() : '';
                   return t !== '' && !t.includes('No Kernel'); }""",
        timeout=SERVER_START_S * 1000)
    idle = "() => document.querySelector('.jp-Notebook-ExecutionIndicator[data-status=\"idle\"]') !== null"
    page.wait_for_function(idle, timeout=SERVER_START_S * 1000)

    # Lab has no default shortcut for Run All: use the Run menu.
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    n_code = page.locator(".jp-CodeCell").count()
    assert n_code >= min_code_cells, f"{notebook} shows {n_code} code cells"
    # Done when every code cell has an execution count ([n]:, not [*]: or [ ]:) and the kernel is idle.
    page.wait_for_function(
        """(n) => { const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
                    const done = prompts.filter(p => /\\[\\d+\\]/.test(p.textContent));
                    const busy = document.querySelector('.jp-Notebook-ExecutionIndicator[data-status="busy"]');
                    return done.length === n && busy === null; }""",
        arg=n_code, timeout=RUN_ALL_S * 1000)
    texts = _output_texts(page)
    assert not [t for t in texts if "Traceback (most recent call last)" in t], "a cell raised:\n" + "\n".join(
        t for t in texts if "Traceback" in t)[-3000:]
    assert not [t for t in texts if "Error displaying widget" in t], "the widget frontend failed"
    assert not [t for t in texts if t.lstrip().startswith("VBox(children=")], \
        "the widget shows as text: the ipywidgets frontend is missing"


def test_prompt_classifier_widget_in_a_real_browser(jupyter_lab):
    sync_api = pytest.importorskip("playwright.sync_api")
    base, token = jupyter_lab
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            _run_all(page, base, token, NOTEBOOK, min_code_cells=6)

            app = page.locator(".miniclip-prompt-app")
            app.wait_for(state="visible", timeout=WIDGET_S * 1000)
            chart = app.locator(".miniclip-probs img")
            chart.first.wait_for(state="visible", timeout=WIDGET_S * 1000)
            before = chart.first.get_attribute("src")
            status_before = app.locator(".miniclip-status").inner_text()
            assert "prediction:" in status_before, status_before

            # Type new class names as a student would, and press Enter (the box applies on Enter).
            box = app.locator(".miniclip-classes input")
            box.click()
            box.fill("red circle, red square, red star")
            box.press("Enter")
            page.wait_for_function(
                """(old) => { const img = document.querySelector('.miniclip-prompt-app .miniclip-probs img');
                              return img !== null && img.getAttribute('src') !== old; }""",
                arg=before, timeout=WIDGET_S * 1000)
            status = app.locator(".miniclip-status")
            sync_api.expect(status).to_contain_text("3 classes", timeout=WIDGET_S * 1000)
            assert "prediction:" in status.inner_text()

            texts = _output_texts(page)
            assert not [t for t in texts if "Error displaying widget" in t]
            assert not [t for t in texts if "Traceback (most recent call last)" in t]
        finally:
            browser.close()


SEARCH_NOTEBOOK_CELLS = [  # the search app at k = 10 on an untrained model: seconds, and the layout is what is tested
    """import torch
from miniclip import CLIPConfig, MiniCLIP, Tokenizer
from miniclip.course.widgets import ImageSearchApp
from miniclip.data import shapes

torch.manual_seed(0)
data = shapes.generate(40, seed=3)
tokenizer = Tokenizer.train(data.captions, vocab_size=300, context_length=32)
model = MiniCLIP(CLIPConfig.preset("shapes-tiny", eot_token_id=tokenizer.end_id)).eval()""",
    """search = ImageSearchApp(model, tokenizer, data.images, query="a red circle", k=10,
                        labels=[data.captions_of(i)[0] for i in range(data.num_images)])
search""",
]


def test_search_app_at_k10_in_a_real_browser(jupyter_lab, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    base, token = jupyter_lab
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
              "source": source} for i, source in enumerate(SEARCH_NOTEBOOK_CELLS)]
    notebook = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "root" / "search_app.ipynb").write_text(json.dumps(notebook))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1000})  # a laptop's browser window
            _run_all(page, base, token, "search_app.ipynb", min_code_cells=2)
            app = page.locator(".miniclip-search-app")
            app.wait_for(state="visible", timeout=WIDGET_S * 1000)
            tiles = app.locator(".miniclip-result")
            sync_api.expect(tiles).to_have_count(10, timeout=WIDGET_S * 1000)
            page.wait_for_function(  # every result image loaded
                """() => [...document.querySelectorAll('.miniclip-result img')]
                         .every(img => img.complete && img.naturalWidth > 0)""", timeout=WIDGET_S * 1000)
            page.screenshot(path=str(tmp_path / "search_app_k10.png"), full_page=True)  # to look at when it fails

            # Readable: full-size images with a label under each, inside the output's width, on more than one row.
            layout = page.evaluate(
                """() => { const box = document.querySelector('.miniclip-search-app .miniclip-results');
                           const r = box.getBoundingClientRect();
                           const tiles = [...box.querySelectorAll('.miniclip-result')].map(t => {
                               const b = t.getBoundingClientRect(), img = t.querySelector('img').getBoundingClientRect();
                               return {left: b.left, right: b.right, top: b.top, img: img.width,
                                       text: t.innerText}; });
                           return {left: r.left, right: r.right, scroll: box.scrollWidth, client: box.clientWidth,
                                   tiles}; }""")
            tiles_at = layout["tiles"]
            assert layout["scroll"] <= layout["client"] + 1, f"the results overflow sideways: {layout}"
            assert all(layout["left"] - 1 <= t["left"] and t["right"] <= layout["right"] + 1 for t in tiles_at), layout
            assert all(t["img"] >= 96 for t in tiles_at), f"result images shrank below 96 px: {tiles_at}"
            rows = sorted({round(t["top"]) for t in tiles_at})
            assert 2 <= len(rows) <= 3, f"ten results should wrap onto 2-3 rows at this width, not {len(rows)}"
            assert all("#" in t["text"] and "cosine" in t["text"] for t in tiles_at)
            assert "#1 cosine" in tiles_at[0]["text"].replace("\n", " ")

            # A student types a new query and presses Enter: the results and the status change.
            status_before = app.locator(".miniclip-status").inner_text()
            order_before = tiles.all_inner_texts()
            box = app.locator(".miniclip-query input")
            box.click()
            box.fill("three green hearts")
            box.press("Enter")
            page.wait_for_function(
                """(old) => [...document.querySelectorAll('.miniclip-result')].map(t => t.innerText).join('|') !== old""",
                arg="|".join(order_before), timeout=WIDGET_S * 1000)
            sync_api.expect(tiles).to_have_count(10, timeout=WIDGET_S * 1000)
            assert "best match" in app.locator(".miniclip-status").inner_text()
            assert app.locator(".miniclip-status").inner_text() != status_before or tiles.all_inner_texts() != order_before
        finally:
            browser.close()
