"""The labeling page in a real browser: headless Chromium through Selenium, against `robustal label
serve` running as a separate process. Label the validation set and the initial batch with the
keyboard, see the next round appear (trained in the background), kill -9 the server, restart it,
and find every label in the project."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from cli_helpers import start_robustal
from label_helpers import CLASSES, true_label, write_digits
from robustal.label.project import LabelProject
from run_helpers import PROJECT

selenium = pytest.importorskip("selenium", reason="the browser test needs selenium (pip install -e .[dev])")
pytest.importorskip("starlette", reason="the labeling page needs the extra robustal[label]")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (CI installs the Debian package chromium)"),
    pytest.mark.skipif(CHROMEDRIVER is None, reason="no chromedriver on PATH (Debian package chromium-driver)"),
]
# 4 validation images, an initial batch of 6, then rounds of 6; one epoch of 2-step PGD (seconds)
SETTINGS = {**PROJECT, "initial": 6, "per_round": 6, "budget": 18}
VALIDATION = 4
WAIT = 60.0  # seconds for a round to train (a fresh process imports torch first)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(project: Path, port: int) -> subprocess.Popen:
    """`robustal label serve PROJECT --port PORT` as its own process, once it answers."""
    server = start_robustal("label", "serve", project, "--port", port, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server stopped: {server.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/progress", timeout=1):
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise AssertionError(f"the server did not answer within 30 s: {server.stdout.read()}")


@pytest.fixture
def browser():
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def wait_for(driver, condition, timeout: float = 10.0, message: str = ""):
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda _: condition(), message)


def text(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def idle(driver) -> bool:
    """Whether the page has finished its last action (a key pressed now acts on what it shows)."""
    return driver.find_element(By.ID, "main").get_attribute("aria-busy") == "false"


def done(driver, message: str) -> None:
    """Wait until the page said `message` (the start of it) and finished that action."""
    wait_for(driver, lambda: text(driver, "message").startswith(message) and idle(driver), message=f"never said {message!r}")


def shown_item(driver) -> int | None:
    """The id of the image on the page once it is ready for a key; None while it waits."""
    if not idle(driver) or not driver.find_element(By.ID, "image").is_displayed():
        return None
    found = re.match(r"Image (\d+) ", text(driver, "caption"))
    return int(found.group(1)) if found else None


def press(driver, key: str) -> None:
    driver.switch_to.active_element.send_keys(key)


def key_of(label: int) -> str:
    return str(label)  # the classes are the digits 0-9: key 3 labels class "3"


def label_shown(driver, label: int) -> int:
    """Press the key of `label` for the image shown; its id, once the server acknowledged it."""
    item = wait_for(driver, lambda: shown_item(driver), message="no image to label")
    press(driver, key_of(label))
    done(driver, f"Image {item}: ")
    return item


def stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(10)


def stop_trainer(project: Path) -> None:
    """Kill a background trainer the test left running (its pid is in the store)."""
    opened = LabelProject.open(project)
    try:
        rows = opened.store.read("SELECT pid FROM trainer")
    finally:
        opened.close()
    for row in rows:
        try:
            os.kill(row["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_label_with_the_keyboard_see_a_round_train_survive_kill_9(tmp_path, browser):
    truth = write_digits(tmp_path / "images", 40)
    project_dir = tmp_path / "project"
    LabelProject.init(project_dir, tmp_path / "images", CLASSES, None, SETTINGS, validation=VALIDATION).close()
    reader = LabelProject.open(project_dir)  # the test's view of the store, as another process's
    port = free_port()
    server = start_server(project_dir, port)
    expected: dict[int, int | None] = {}
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        assert browser.switch_to.active_element.get_attribute("id") == "main"  # keys work at once

        # the validation set, then the initial batch, each image labeled with its key
        for index in range(VALIDATION + SETTINGS["initial"]):
            item = wait_for(browser, lambda: shown_item(browser))
            if index == VALIDATION + SETTINGS["initial"] - 1:
                # other annotators take the random images served while round 0 trains: the page waits
                taken = [reader.next_item(f"other-{number}") for number in range(SETTINGS["per_round"])]
                assert all(other is not None and other.id not in expected for other in taken)
                assert reader.next_item("one-more") is None
            answer = true_label(reader, item, truth)
            assert label_shown(browser, answer) == item
            expected[item] = answer
        assert [reader.item(item).role for item in expected] == ["validation"] * VALIDATION + ["initial"] * 6

        # the batch is complete: a round trains in the background (a new process needs seconds to
        # import torch), the page says so and polls; then round 1 is asked
        assert text(browser, "message").endswith(" · a training round started")
        assert text(browser, "waiting").startswith("Training round 0 in the background: the next images come")
        assert browser.find_element(By.ID, "training").is_displayed() and shown_item(browser) is None
        wait_for(browser, lambda: " · round 1: 0 of 6" in text(browser, "progress"), WAIT, "round 1 never came")
        wait_for(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, "#plot circle")) == 2, 10, "no point plotted")
        [summary] = reader.rounds()
        assert summary.round == 0 and summary.labeled == 6
        plotted = browser.find_element(By.ID, "plot").get_attribute("aria-label")
        latest = f"round 0, 6 labels: clean {100 * summary.clean_accuracy:.1f}%, robust {100 * summary.robust_accuracy:.1f}%"
        assert latest in plotted and latest in text(browser, "latest")
        first = wait_for(browser, lambda: shown_item(browser), message="round 1 asks nothing")
        assert reader.item(first).role == "round" and reader.item(first).round == 1

        # round 1 on the keyboard: label, undo (the image comes back), skip it, relabel a past one
        expected[label_shown(browser, 3)] = 3
        second = label_shown(browser, 4)
        press(browser, "u")
        done(browser, f"Undone: image {second}")
        assert shown_item(browser) == second and reader.item(second).label is None
        press(browser, "s")
        done(browser, f"Image {second} skipped")
        expected[second] = None
        press(browser, "r")  # the latest past image is the skipped one, r again: the one before
        wait_for(browser, lambda: shown_item(browser) == second)
        press(browser, "r")
        wait_for(browser, lambda: shown_item(browser) == first)
        assert "Relabeling image" in text(browser, "banner")
        press(browser, key_of(7))
        done(browser, f"Image {first}: relabeled 7")
        expected[first] = 7

        server.send_signal(signal.SIGKILL)
        server.wait(10)
        server = start_server(project_dir, port)
        browser.refresh()
        wait_for(browser, lambda: text(browser, "progress").startswith(f"{VALIDATION + 6 + 1} labeled"))
    finally:
        stop(server)
        stop_trainer(project_dir)
    reopened = LabelProject.open(project_dir)
    try:
        found = {item: reopened.item(item) for item in expected}
        assert {item: shown.label for item, shown in found.items()} == expected
        assert [item for item, shown in found.items() if shown.skipped] == [second]
        assert reopened.progress().labeled == VALIDATION + 6 + 1
    finally:
        reopened.close()
        reader.close()
