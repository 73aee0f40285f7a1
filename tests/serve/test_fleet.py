"""Serving in a fleet (issue 30, items 3-5): readiness apart from liveness (warm-up, drain), API keys,
several worker processes. A fake engine (8 x 8 gray input, three classes) in a TestClient for the
routes; one real ``inceptionnet serve --workers 2`` of the shipped model in a subprocess for the module
(two pids answer, metrics summed, SIGTERM drains both with /readyz at 503 and /healthz at 200)."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from inceptionnet import data as D
from inceptionnet.errors import UsageError

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from inceptionnet.commands.serve import warn_if_open  # noqa: E402
from inceptionnet.serve.app import WORKER_HEADER, ServeConfig, create_app, serving_problem  # noqa: E402
from inceptionnet.serve.auth import ENV, read_keys  # noqa: E402
from inceptionnet.serve.engine import Engine  # noqa: E402

KEYS = ("first-key", "second-key")
CFG = ServeConfig(max_batch=4, max_wait_ms=2, max_queue=16, timeout_s=5, max_files=8, api_keys=KEYS)


def fake_engine(run: Callable[[torch.Tensor], Any]) -> Engine:
    icfg = D.InputConfig(8, 1, (0.5,), (0.5,))
    return Engine(
        "fake", "fake weights", icfg, ["ant", "bee", "cat"], run, "eager", "fp32", max_pixels=10_000
    )


def good(x: torch.Tensor) -> torch.Tensor:
    return torch.arange(3.0).repeat(len(x), 1)


def png_bytes(size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (size, size), 128).save(buf, format="PNG")
    return buf.getvalue()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with TestClient(create_app(fake_engine(good), CFG)) as c:
        yield c


def test_model_routes_need_a_key(client: Any) -> None:
    files = {"file": ("a.png", png_bytes(), "image/png")}
    infer = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 8, 8], "data": [0.0] * 64}]}
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("post", "/v1/predict", {"files": files}), ("post", "/v1/explain", {"files": files}),
        ("get", "/v1/models", {}), ("get", "/v2", {}), ("get", "/v2/models/fake", {}),
        ("post", "/v2/models/fake/infer", {"json": infer}),
    ]  # fmt: skip
    for method, path, kw in calls:
        for headers in ({}, bearer("wrong-key"), {"Authorization": "Basic Zmlyc3Qta2V5"}):
            r = getattr(client, method)(path, headers=headers, **kw)
            assert r.status_code == 401, (path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer" and "API key" in r.json()["error"]
            assert "first-key" not in r.text
    assert client.post("/v1/predict", files=files, headers=bearer("first-key")).status_code == 200
    assert client.post("/v1/predict", files=files, headers=bearer("second-key")).status_code == 200
    assert client.get("/v2/models/fake", headers=bearer("second-key")).status_code == 200
    r = client.post("/v2/models/fake/infer", json=infer, headers=bearer("first-key"))
    assert r.status_code == 200, r.text


def test_health_routes_metrics_and_page_stay_open(client: Any) -> None:
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/v2/models/fake/ready",
                 "/v2/models/fake/versions/1/ready", "/metrics", "/", "/static/app.js"):  # fmt: skip
        assert client.get(path).status_code == 200, path


def test_readiness_waits_for_the_warm_up_batch() -> None:
    release = threading.Event()

    def run(x: torch.Tensor) -> torch.Tensor:
        release.wait(10)
        return good(x)

    with TestClient(create_app(fake_engine(run), ServeConfig(max_wait_ms=1, warm_up=True))) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and "warming up" in r.json()["error"], r.text
        assert c.get("/v2/health/ready").status_code == 503
        assert c.get("/healthz").status_code == 200  # alive all the same
        release.set()
        for _ in range(200):
            if c.get("/readyz").status_code == 200:
                break
            time.sleep(0.01)
        assert c.get("/readyz").json()["status"] == "ready"


def test_a_failed_warm_up_keeps_the_server_not_ready_naming_why() -> None:
    cfg = ServeConfig(max_wait_ms=1, warm_up=True)
    with TestClient(create_app(fake_engine(lambda x: torch.zeros(len(x), 5)), cfg)) as c:
        for _ in range(200):
            r = c.get("/readyz")
            if "warm-up batch failed" in r.text:
                break
            time.sleep(0.01)
        assert r.status_code == 503 and re.search(r"shape \(\d+, 5\)", r.json()["error"]), r.text


def test_draining_is_not_ready_but_alive() -> None:
    class Idle:
        def problem(self, stuck_after_s: float | None = None) -> str | None:
            return None

    state: dict[str, Any] = {"batcher": Idle(), "warm": True}
    assert serving_problem(state, CFG, ready=True) is None
    state["draining"] = True
    assert "draining" in (serving_problem(state, CFG, ready=True) or "")
    assert serving_problem(state, CFG) is None  # liveness


def test_keys_from_a_file_or_the_environment(tmp_path: Path) -> None:
    f = tmp_path / "keys"
    f.write_text("# ops team\n\n  first-key  \nsecond-key\n")
    assert read_keys(str(f), {}) == KEYS
    assert read_keys(None, {ENV: "first-key, second-key,"}) == KEYS
    assert read_keys(None, {}) == ()
    f.write_text("# only a comment\n\n")
    with pytest.raises(UsageError, match="holds no key"):
        read_keys(str(f), {})
    f.write_text("good-key\nsecret with spaces\n")
    with pytest.raises(UsageError, match="line 2 of --api-key-file") as e:
        read_keys(str(f), {})
    assert "secret" not in str(e.value)
    with pytest.raises(UsageError, match="holds no key"):
        read_keys(None, {ENV: " , "})


def test_a_public_bind_without_keys_warns_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    warn_if_open("0.0.0.0", "0.0.0.0", keys=False)
    assert "warning: --host 0.0.0.0" in capsys.readouterr().err.replace("\n", " ")
    warn_if_open("0.0.0.0", "0.0.0.0", keys=True)
    warn_if_open("127.0.0.1", "127.0.0.1", keys=False)
    warn_if_open("::1", "::1", keys=False)
    err = capsys.readouterr().err
    assert "warning" not in err and "--api-key-file" not in err


# -- one real server with two workers ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """``serve --workers 2 --drain-seconds 3`` of the shipped model, keys from the environment, once
    /readyz has answered 200 from both workers (process, url, log)."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("fleet") / "server.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "inceptionnet", "serve", "--model", "googlenet_small", "--weights", "fashion_mnist",
         "--backend", "eager", "--port", str(port), "--workers", "2", "--drain-seconds", "3",
         "--max-wait-ms", "1", "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1", ENV: "k1,k2"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        ready: set[str] = set()
        for _ in range(900):  # up to 180 s: two workers load torch and the model on a busy machine
            if proc.poll() is not None:
                pytest.fail("the server exited: " + log_path.read_text())
            try:
                r = httpx.get(f"{url}/readyz", timeout=2)
                if r.status_code == 200:
                    ready.add(r.headers[WORKER_HEADER])
            except httpx.TransportError:
                pass
            if len(ready) == 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"ready workers: {ready}; " + log_path.read_text())
        yield proc, url, log_path
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        log.close()


def _predict(url: str, key: str = "k2") -> Any:
    return httpx.post(
        f"{url}/v1/predict", files={"file": ("a.png", png_bytes(28))}, headers=bearer(key), timeout=30
    )


def test_two_workers_serve_and_their_metrics_are_summed(fleet: tuple[Any, str, Path]) -> None:
    _, url, _ = fleet
    assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 401
    pids: set[str] = set()
    codes: list[int] = []
    for _ in range(10):  # a new connection each time: the kernel hands them to either worker
        with ThreadPoolExecutor(4) as pool:
            rs = list(pool.map(lambda _: _predict(url), range(4)))
        pids |= {r.headers[WORKER_HEADER] for r in rs}
        codes += [r.status_code for r in rs]
        if len(pids) == 2:
            break
    assert len(pids) == 2 and set(codes) == {200}, (pids, codes)
    text = httpx.get(f"{url}/metrics", timeout=10).text  # from one worker: both workers' images
    assert re.search(rf"^inceptionnet_images_total {len(codes)}\.0$", text, re.M), text


def test_sigterm_drains_every_worker_not_ready_but_alive(fleet: tuple[Any, str, Path]) -> None:
    proc, url, log_path = fleet
    proc.send_signal(signal.SIGTERM)
    seen: set[str] = set()
    for _ in range(100):  # --drain-seconds 3: both workers keep answering, not ready
        r = httpx.get(f"{url}/readyz", timeout=5)
        if r.status_code == 503:
            assert "draining" in r.json()["error"]
            seen.add(r.headers[WORKER_HEADER])
        if len(seen) == 2:
            break
        time.sleep(0.02)
    assert len(seen) == 2, log_path.read_text()
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    assert _predict(url, "k1").status_code == 200  # still served while draining
    assert proc.wait(60) in (0, -signal.SIGTERM), log_path.read_text()


# -- the page: no broken images, the key asked for once ---------------------------------------------

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")  # fmt: skip


@pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()), reason="no chromium / chromedriver")
def test_page_hides_empty_images_and_asks_for_the_key_once(tmp_path: Path) -> None:
    webdriver = pytest.importorskip("selenium.webdriver")
    import uvicorn
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(fake_engine(good), CFG), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    image = tmp_path / "gray.png"
    image.write_bytes(png_bytes())
    try:
        driver.get(f"http://127.0.0.1:{sock.getsockname()[1]}/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.find_element(By.ID, "key-box").is_displayed())
        for img in ("input", "cam"):  # before any upload: no broken-image box
            assert not driver.find_element(By.ID, img).is_displayed()
        driver.find_element(By.ID, "key").send_keys("second-key\n")
        wait.until(lambda d: d.find_element(By.ID, "status").text == "ready")
        driver.refresh()  # the same tab: the key is remembered, not asked again
        wait.until(lambda d: d.find_element(By.ID, "status").text == "ready")
        assert not driver.find_element(By.ID, "key-box").is_displayed()
        driver.find_element(By.ID, "file").send_keys(str(image))
        wait.until(lambda d: d.find_element(By.ID, "top1").text == "cat")
    finally:
        driver.quit()
        server.should_exit = True
        thread.join(20)
        sock.close()
