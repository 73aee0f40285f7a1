"""The page of ``inceptionnet serve`` in a real browser (issue 25): Debian's chromium, driven by
selenium through Debian's chromedriver (no browser download), loads the page from a uvicorn server
started here, uploads a Fashion-MNIST test image and shows the right class and the Grad-CAM picture.

The screenshot is kept: in the test's tmp_path, and copied to ``$INCEPTIONNET_TEST_ARTIFACTS``
(a folder, created if needed) when that is set. A machine without chromium or chromedriver skips
this test only, saying which is missing (``make setup`` installs both)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from inceptionnet import data as D

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# the flags Chromium needs here: root, no GPU, no network but loopback (docs/SERVING.md)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1200,1400")  # fmt: skip


def _missing() -> str | None:
    for p in (CHROMIUM, CHROMEDRIVER):
        if not p.exists():
            return f"{p} is not installed (apt-get install chromium chromium-driver; make setup does it)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """A real uvicorn server on a free loopback port, in a thread of this process."""
    pytest.importorskip("fastapi")
    import uvicorn

    from inceptionnet.serve.app import ServeConfig, create_app
    from inceptionnet.serve.engine import load_engine

    engine = load_engine(model_name="googlenet_small", weights="fashion_mnist", backend="eager", max_batch=4)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(engine, ServeConfig(max_batch=4)), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


def test_page_shows_the_class_and_the_cam(server_url: str, tmp_path: Path) -> None:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    x, y, _ = D.load_arrays("fashion_mnist", "test", None, 0)
    image = tmp_path / "ankle-boot.png"
    Image.fromarray(x[0].reshape(28, 28).numpy()).save(image)  # test image 0: the model gets it right
    expected = D.FASHION_MNIST_CLASSES[int(y[0])]

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    shot = tmp_path / "serve-page.png"
    try:
        driver.get(server_url + "/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_element(By.ID, "status").text == "ready")
        driver.find_element(By.ID, "file").send_keys(str(image))
        wait.until(lambda d: d.execute_script(
            "const c = document.getElementById('cam');"
            "return !document.getElementById('pictures').hidden && c.complete && c.naturalWidth > 0"))  # fmt: skip
        assert driver.find_element(By.ID, "top1").text == expected
        assert driver.find_element(By.CSS_SELECTOR, "#top li .label").text == expected
        assert driver.execute_script("return document.getElementById('cam').naturalWidth") == 224
        branches = driver.find_elements(By.CSS_SELECTOR, "#branch-grid img.branch")
        assert len(branches) == 4 and driver.find_element(By.ID, "branches").is_displayed()
        assert "error" not in (driver.find_element(By.ID, "status").get_attribute("class") or "")
    finally:
        driver.save_screenshot(str(shot))
        driver.quit()
    artifacts = os.environ.get("INCEPTIONNET_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / shot.name)
    with Image.open(shot) as im:
        assert im.width >= 1000
