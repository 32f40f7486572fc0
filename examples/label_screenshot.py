"""The README's screenshot of the labeling page (docs/images/label-page.png), taken in headless Chromium.

    python examples/label_screenshot.py                   # MNIST from $ROBUSTAL_DATA (or the cache)
    python examples/label_screenshot.py --out /tmp/page.png --answer 200   # two rounds

In a temporary folder: the README's worked example on MNIST (examples/label_digits.py --source
mnist: a folder of MNIST test images, a project on it, and a simulated annotator who labels the
first ANSWER asked images with the true classes while rounds train in the background), then
``robustal label serve`` as its own process; in Chromium, a few images are labeled with the
keyboard, and the page is saved. Needs the extra robustal[label], selenium, and the Debian
packages chromium and chromium-driver.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from robustal.label.project import LabelProject

EXAMPLES = Path(__file__).resolve().parent
ANNOTATOR = "alice"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(project: Path, port: int) -> subprocess.Popen:
    """``robustal label serve`` in its own process, once it answers."""
    command = [sys.executable, "-m", "robustal", "label", "serve", str(project), "--port", str(port)]
    server = subprocess.Popen(command)
    for _ in range(300):
        if server.poll() is not None:
            raise SystemExit(f"the server stopped (exit status {server.returncode})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/progress", timeout=1):
                return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the server did not answer within 30 s")


def screenshot(url: str, project: LabelProject, truth: dict[str, int], out: Path, labels: int) -> None:
    """Open `url` in headless Chromium, label `labels` images with the keyboard, save the page."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,760", "--hide-scrollbars"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 20, poll_frequency=0.05)
        wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, "#plot circle"))
        idle = lambda: driver.find_element(By.ID, "main").get_attribute("aria-busy") == "false"  # noqa: E731
        for _ in range(labels):
            caption = wait.until(lambda _: idle() and driver.find_element(By.ID, "caption").text)
            item = int(caption.split()[1])
            answer = truth[project.item(item).path]
            driver.switch_to.active_element.send_keys(str(answer))  # MNIST classes are the digits: key 3 is "3"
            wait.until(lambda _: idle() and driver.find_element(By.ID, "message").text.startswith(f"Image {item}: "))
        wait.until(lambda _: driver.execute_script("return document.getElementById('image').complete"))
        time.sleep(0.3)  # the history's thumbnails
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=EXAMPLES.parent / "docs/images/label-page.png")
    parser.add_argument("--answer", type=int, default=350, help="images the simulated annotator labels first (350: three rounds)")
    parser.add_argument("--port", type=int, default=0, help="the server's port (default: a free one)")
    parser.add_argument("--keep", type=Path, help="make the example in this folder and keep it (reused when there)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        demo = (args.keep or Path(work)) / "label-demo"
        if not demo.exists():
            example = [sys.executable, str(EXAMPLES / "label_digits.py"), str(demo), "--source", "mnist", "--answer", str(args.answer)]
            subprocess.run(example, check=True)
        truth = {row["path"]: int(row["label"]) for row in csv.DictReader((demo / "answers.csv").open())}
        port = args.port or free_port()
        server = serve(demo / "project", port)
        project = LabelProject.open(demo / "project")
        try:
            screenshot(f"http://127.0.0.1:{port}/?annotator={ANNOTATOR}", project, truth, args.out, labels=6)
        finally:
            project.close()
            server.terminate()
            server.wait(10)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
