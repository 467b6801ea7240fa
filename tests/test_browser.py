"""A real browser runs notebook 05 in JupyterLab and uses the prompt-classifier widget like a student would.

nbval executes notebooks without a frontend, so it cannot tell whether a widget *renders* or whether typing into
it does anything. This test can: it starts JupyterLab on a free local port, opens notebook 05 in headless
Chromium, runs all cells, types class names into the app's text box, and checks that the bar chart changes.

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


def test_prompt_classifier_widget_in_a_real_browser(jupyter_lab):
    sync_api = pytest.importorskip("playwright.sync_api")
    base, token = jupyter_lab
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}", wait_until="domcontentloaded")
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
            assert n_code > 5
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
