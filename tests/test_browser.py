"""nnet serve in a real headless Chromium (Selenium): draw a 7, read the page's answer.

Needs Debian's ``chromium`` and ``chromium-driver`` (/usr/bin/chromium, /usr/bin/chromedriver)
and PyPI's ``selenium``; without them the test is skipped, unless the environment variable
CI is set: then it fails, because CI must run it. Selenium is told where both programs are,
so it never downloads a browser or a driver.

It trains a small network on the real MNIST first (a few seconds), so that the page shows
a real answer. With NNET_UPDATE_SCREENSHOT=1 the screenshot replaces docs/serve.png.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import nnet
from nnet.apps.serve import Server
from nnet.data.datasets import load, one_hot, to_inputs
from nnet.training.loop import Split, Trainer, evaluate
from nnet.training.optim import Adam

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "docs" / "serve.png"
WINDOW = (1200, 800)
TIMEOUT = 20  # seconds to wait for the page


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {reason}; install chromium, chromium-driver and selenium.")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def webdriver_module():
    try:
        import selenium  # noqa: F401
    except ImportError:
        _unavailable("selenium is not installed (pip install selenium)")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (path.is_file() and os.access(path, os.X_OK)):
            _unavailable(f"{path} is missing (apt-get install chromium chromium-driver)")
    from selenium import webdriver

    return webdriver


@pytest.fixture(scope="module")
def trained(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A 784-64-10 ReLU network trained 2 epochs on 20000 MNIST digits (>= 90% on test)."""
    data = load("mnist", mnist_dir, download=False, progress=False)
    x = to_inputs(data.x_train[:20000])
    y = data.y_train[:20000]
    x_test, y_test = to_inputs(data.x_test), data.y_test
    net = nnet.Network([784, 64, 10], "relu", loss="cross_entropy", seed=0)
    trainer = Trainer.gradient(
        net, Adam(), lr=2e-3, batch_size=100, epochs=2, rng=np.random.default_rng(0)
    )
    test = Split(x_test, one_hot(y_test), y_test)
    history = trainer.fit(Split(x, one_hot(y), y), {"test": test})
    _, accuracy = evaluate(net, test)
    assert accuracy is not None and accuracy >= 0.90, accuracy
    path = tmp_path_factory.mktemp("browser") / "model.npz"
    nnet.save(
        net,
        path,
        {
            "task": "classifier",
            "dataset": "mnist",
            "classes": [str(d) for d in range(10)],
            "history": history,
        },
    )
    return nnet.load(path), data.x_test, data.y_test


@pytest.fixture(scope="module")
def server(trained):
    net, images, labels = trained
    srv = Server(
        net, host="127.0.0.1", port=0, test_images=images, test_labels=labels, log="none", seed=1
    )
    thread = threading.Thread(target=srv.serve_forever)
    thread.daemon = True
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture(scope="module")
def driver(webdriver_module, tmp_path_factory: pytest.TempPathFactory):
    from selenium.webdriver.chrome.service import Service

    webdriver = webdriver_module
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SE_OFFLINE", "true")  # Selenium Manager: never download anything
        d = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    d.set_page_load_timeout(TIMEOUT)
    d.set_script_timeout(TIMEOUT)
    yield d
    d.quit()


# --------------------------------------------------------------------------- helpers


def post_predict(srv, request: dict) -> dict:
    host, port = srv.server_address[:2]
    req = urllib.request.Request(
        f"http://{host}:{port}/api/predict",
        data=json.dumps(request).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def wait_idle(driver, after: int):
    """Wait until a prediction newer than ``after`` is shown and nothing is pending."""
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d):
        return d.execute_script(
            "return document.body.dataset.state === 'idle' && window.nnetLast !== null"
            " && window.nnetShown > arguments[0];",
            after,
        )

    WebDriverWait(driver, TIMEOUT).until(ready)
    return driver.execute_script("return window.nnetLast;")


def shown_count(driver) -> int:
    return int(driver.execute_script("return window.nnetShown || 0;"))


def draw(driver, canvas, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw polylines on ``canvas`` with a mouse pointer; points in 0..1 of its size."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    w, h = canvas.size["width"], canvas.size["height"]
    mouse = PointerInput(interaction.POINTER_MOUSE, "mouse")
    actions = ActionBuilder(driver, mouse=mouse, duration=0)
    pointer = actions.pointer_action

    def to_offset(p: tuple[float, float]) -> tuple[int, int]:
        # Selenium 4 measures offsets from the element's centre
        return round((p[0] - 0.5) * w), round((p[1] - 0.5) * h)

    for stroke in strokes:
        pointer.move_to(canvas, *to_offset(stroke[0]))
        pointer.pointer_down()
        for a, b in zip(stroke, stroke[1:], strict=False):
            steps = max(1, round(max(abs(b[0] - a[0]) * w, abs(b[1] - a[1]) * h) / 8))
            for s in range(1, steps + 1):
                t = s / steps
                pointer.move_to(
                    canvas, *to_offset((a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])))
                )
                pointer.pause(0.01)
        pointer.pointer_up()
    actions.perform()


SEVEN = [[(0.27, 0.24), (0.72, 0.22), (0.70, 0.30), (0.58, 0.50), (0.49, 0.68), (0.45, 0.80)]]


def check_page_matches_api(driver, srv, last: dict) -> dict:
    """The page shows exactly what the API answers to the request it sent."""
    from selenium.webdriver.common.by import By

    answer = post_predict(srv, last["request"])
    assert answer["digit"] == last["response"]["digit"]
    np.testing.assert_allclose(
        last["response"]["probabilities"], answer["probabilities"], rtol=1e-6, atol=1e-9
    )
    shown = driver.find_element(By.ID, "digit")
    assert shown.get_attribute("data-digit") == str(answer["digit"])
    assert shown.text == answer["label"]
    bars = driver.find_elements(By.CSS_SELECTOR, "#bars li")
    assert len(bars) == 10
    top = driver.find_elements(By.CSS_SELECTOR, "#bars li.top .name")
    assert [e.text for e in top] == [answer["label"]]
    return answer


# --------------------------------------------------------------------------- the test


def test_draw_a_digit_in_the_browser(driver, server, trained, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    net, images, labels = trained
    driver.get(server.url)
    WebDriverWait(driver, TIMEOUT).until(
        lambda d: (
            d.find_element(By.ID, "random").is_enabled()
            and len(d.find_elements(By.CSS_SELECTOR, "#bars li")) == 10
        )
    )
    assert "784 → 64 → 10" in driver.find_element(By.ID, "model").text

    # the hidden layer: one row of 64 cells
    rows = driver.find_elements(By.CSS_SELECTOR, "#layers .layer")
    assert len(rows) == net.L - 1 == 1
    cells = rows[0].find_elements(By.CSS_SELECTOR, ".cells .cell")
    assert len(cells) == net.sizes[1] == 64

    # a random test digit: sent as 28x28, as it is; the page shows its true label
    before = shown_count(driver)
    driver.find_element(By.ID, "random").click()
    last = wait_idle(driver, before)
    assert last["request"]["preprocess"] is False
    assert np.array(last["request"]["pixels"]).shape == (28, 28)
    answer = check_page_matches_api(driver, server, last)
    truth = driver.find_element(By.ID, "truth").text
    assert "true label" in truth
    index = int(truth.split("#")[1].split(":")[0])
    x = images[index].reshape(1, 784) / 255.0
    assert answer["digit"] == int(np.argmax(net.forward(x)))
    assert f"true label {labels[index]}" in truth

    # draw a 7 on a cleared pad: sent with preprocess, converted like nnet predict
    driver.find_element(By.ID, "clear").click()
    assert driver.find_element(By.ID, "digit").get_attribute("data-digit") == ""
    before = shown_count(driver)
    draw(driver, driver.find_element(By.ID, "pad"), SEVEN)
    last = wait_idle(driver, before)
    assert shown_count(driver) - before >= 2  # it answered while the pen was still down
    request = last["request"]
    assert request["preprocess"] is True
    pixels = np.array(request["pixels"])
    assert pixels.shape == (140, 140) and 0 <= pixels.min() and pixels.max() <= 1
    assert pixels.max() > 0.9 and pixels[0].max() == 0  # white ink, black border
    answer = check_page_matches_api(driver, server, last)
    assert answer["digit"] == 7, answer["probabilities"]
    np.testing.assert_allclose(last["response"]["input"], answer["input"])

    # every hidden cell was coloured by the answer
    colours = driver.execute_script(
        "return [...document.querySelectorAll('#layers .cell')].map(c => c.style.backgroundColor);"
    )
    assert len(colours) == 64 and all(colours)

    # nothing went wrong in the page (script errors, CSP violations, failed requests)
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe

    shot = tmp_path / "serve.png"
    assert driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("NNET_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
