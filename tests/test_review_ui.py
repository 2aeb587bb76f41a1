"""The review pages (/ui): session and CSRF refusals over HTTP, and the whole review loop in headless Chromium
against a real uvicorn server, a real RQ worker and the localhost test judge."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from rq import Queue, SimpleWorker

from slicelab.calibration.gold import BUNDLED, load_gold
from slicelab.service.api import Settings, create_app, parse_keys
from tests.conftest import make_samples

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
KEYS = ["full-key", "tag-key:tag", "cal-key:calibrations"]
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def settings(data: Path, redis_url: str, judge_url: str = "http://127.0.0.1:9/v1") -> Settings:
    return Settings(api_keys=parse_keys(KEYS), data_root=data, redis_url=redis_url, ui_secret="s" * 32,
                    judge={"backend": "openai", "base_url": judge_url, "model": "test-judge", "transport_retries": 0})


def write_samples(data: Path, n: int = 12) -> None:
    """An eval samples file (every third answer wrong) under the data root, for seed reviews."""
    data.mkdir(parents=True, exist_ok=True)
    rows = [{"id": s.id, "question": s.question, "answer": s.reference_answer, "task": "arith",
             "model_output": s.model_output, "correct": s.correct} for s in make_samples(n, wrong_every=3)]
    (data / "bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def client(tmp_path, redis_url, monkeypatch):
    monkeypatch.setenv("SLICELAB_HOME", str(tmp_path / "home"))
    write_samples(tmp_path / "data")
    return TestClient(create_app(settings(tmp_path / "data", redis_url)), base_url="https://testserver")


def login(client: TestClient, key: str = "cal-key", reviewer: str = "ann") -> str:
    """Log in; return the session's CSRF token (read from the review list)."""
    r = client.post("/ui/login", data={"key": key, "reviewer": reviewer}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return CSRF.search(client.get("/ui/reviews").text).group(1)


def test_pages_without_a_session_go_to_login_and_posts_are_refused(client):
    r = client.get("/ui/reviews", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=/ui/reviews"
    assert client.get("/ui/reviews/rev-20250101T000000-abcdef/items/1", follow_redirects=False).status_code == 303
    r = client.post("/ui/seed", data={"path": "bench.jsonl", "csrf": "x"}, follow_redirects=False)
    assert r.status_code == 401 and "log in first" in r.text
    page = client.get("/ui/login")
    assert page.status_code == 200 and 'name="key"' in page.text and 'name="reviewer"' in page.text


def test_login_refuses_an_unknown_key_a_key_without_the_scope_and_a_bad_name(client):
    r = client.post("/ui/login", data={"key": "nope", "reviewer": "ann"}, follow_redirects=False)
    assert r.status_code == 401 and "unknown API key" in r.text and "set-cookie" not in r.headers
    r = client.post("/ui/login", data={"key": "tag-key", "reviewer": "ann"}, follow_redirects=False)
    assert r.status_code == 403 and "calibrations" in r.text and "scope" in r.text and "set-cookie" not in r.headers
    r = client.post("/ui/login", data={"key": "cal-key", "reviewer": "../etc"}, follow_redirects=False)
    assert r.status_code == 422 and "reviewer" in r.text and "set-cookie" not in r.headers
    assert client.get("/ui/reviews", follow_redirects=False).status_code == 303  # still not logged in


def test_session_cookie_is_signed_secure_httponly_strict_and_scoped_to_ui(client):
    r = client.post("/ui/login", data={"key": "cal-key", "reviewer": "ann", "next": "/ui/seed"},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/seed"
    cookie = r.headers["set-cookie"]
    flags = [f.strip().lower() for f in cookie.split(";")]
    assert {"secure", "httponly", "samesite=strict", "path=/ui"} <= set(flags), cookie
    assert "cal-key" not in cookie  # the key is kept as a keyed hash, never in clear
    assert client.get("/ui/reviews").status_code == 200
    # a tampered cookie is no session
    value = client.cookies.get("slicelab_ui")
    payload, mac = value.split(".")
    other = json.loads(base64.urlsafe_b64decode(payload + "==")) | {"r": "mallory"}
    forged = base64.urlsafe_b64encode(json.dumps(other).encode()).decode().rstrip("=")
    for sent, status in ((value, 200), (f"{forged}.{mac}", 303), (f"{payload}.{mac[:-2]}", 303), (payload, 303)):
        fresh = TestClient(client.app, base_url="https://testserver")
        assert fresh.get("/ui/reviews", headers={"Cookie": f"slicelab_ui={sent}"},
                         follow_redirects=False).status_code == status, sent
    # an open redirect is not possible through next
    r = client.post("/ui/login", data={"key": "cal-key", "reviewer": "ann", "next": "https://evil.example/"},
                    follow_redirects=False)
    assert r.headers["location"] == "/ui/reviews"


def test_posts_without_or_with_a_wrong_csrf_token_are_forbidden(client, tmp_path):
    token = login(client)
    for data in ({"path": "bench.jsonl"}, {"path": "bench.jsonl", "csrf": "x" + token}):
        r = client.post("/ui/seed", data=data, follow_redirects=False)
        assert r.status_code == 403 and "CSRF" in r.text
    assert client.post("/ui/logout", follow_redirects=False).status_code == 403
    assert not list((tmp_path / "home").glob("reviews/rev-*"))  # nothing was created
    assert client.get("/ui/reviews").status_code == 200  # and the session still works


def test_a_foreign_origin_or_referer_is_forbidden(client):
    token = login(client)
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                    {"Referer": "https://evil.example/page"}):
        r = client.post("/ui/logout", data={"csrf": token}, headers=headers, follow_redirects=False)
        assert r.status_code == 403 and "another site" in r.text, headers
    r = client.post("/ui/login", data={"key": "cal-key", "reviewer": "ann"}, headers={"Origin": "https://evil.example"},
                    follow_redirects=False)
    assert r.status_code == 403 and "set-cookie" not in r.headers
    r = client.post("/ui/logout", data={"csrf": token}, headers={"Origin": "https://testserver"}, follow_redirects=False)
    assert r.status_code == 303 and "slicelab_ui=" in r.headers["set-cookie"]


def test_seed_review_decisions_are_saved_checked_and_shown_again(client, tmp_path):
    from slicelab.service.taxonomy import load_taxonomy

    token = login(client)
    r = client.post("/ui/seed", data={"path": "../outside.jsonl", "n": "3", "csrf": token})
    assert r.status_code == 422 and "outside the data root" in r.text
    r = client.post("/ui/seed", data={"path": "bench.jsonl", "n": "3", "csrf": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    review = r.headers["location"]
    assert "0 / 3 reviewed" in client.get(review).text
    page = client.get(f"{review}/items/1").text
    axes = load_taxonomy().axes("eval")
    labels = {a.name: a.ids[-1] for a in axes if a.kind == "single" and f'id="ax-{a.name}"' in page}
    form = labels | {"solving_operations": "arithmetic", "solving_operations__more": ["pattern_induction"],
                     "csrf": token}
    r = client.post(f"{review}/items/1", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("/items/2?saved=1")
    page = client.get(f"{review}/items/1").text
    for axis, label in labels.items():
        assert re.search(rf'<option value="{label}" title="[^"]*" selected>', page), axis
    assert re.search(r'name="solving_operations__more" value="pattern_induction"[^>]* checked', page)
    r = client.post(f"{review}/items/2", data={**form, "only": "task_type"})
    assert r.status_code == 200 and r.json()["saved"] == "task_type" and r.json()["progress"]["n_reviewed"] >= 1
    page = client.get(f"{review}/items/2").text
    assert re.search(rf'<option value="{labels["task_type"]}" title="[^"]*" selected>', page)
    assert 'data-state="task_type">saved' in page or 'data-state="task_type">changed' in page
    bad = client.post(f"{review}/items/1", data={**form, "solving_operations": ""})
    assert bad.status_code == 422 and "solving_operations" in bad.text
    bad = client.post(f"{review}/items/1", data={**form, "task_type": "no_such_label"})
    assert bad.status_code == 422 and "no_such_label" in bad.text
    assert client.get(f"{review}/items/99").status_code == 404
    # Redis down: re-calibrate refuses before exporting anything
    down = TestClient(create_app(settings(tmp_path / "data", "redis://127.0.0.1:1/0")), base_url="https://testserver",
                      cookies=client.cookies)
    r = down.post(f"{review}/recalibrate", data={"csrf": token})
    assert r.status_code == 503 and "Redis does not answer" in r.text
    assert not list((tmp_path / "home").glob("reviews/*/gold_*.jsonl"))
    assert client.get("/ui/reviews/rev-..%2F..%2Fetc/items/1").status_code == 404


# --------------------------------------------------------------------------- the loop in a browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """The application under uvicorn in a thread on 127.0.0.1:<free port>."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.server.started, "uvicorn did not start"
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def work(redis_url: str) -> None:
    conn = Redis.from_url(redis_url)
    SimpleWorker([Queue("slicelab", connection=conn)], connection=conn).work(burst=True)


def screenshot(driver, name: str, out: Path) -> None:
    """A 1280-wide screenshot of the whole page to ``out/name`` (and to $SLICELAB_UI_SCREENSHOTS when set)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": 1280, "height": min(height, 2400), "scale": 1}})
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_bytes(base64.b64decode(shot["data"]))
    if os.environ.get("SLICELAB_UI_SCREENSHOTS"):
        shutil.copy(out / name, Path(os.environ["SLICELAB_UI_SCREENSHOTS"]) / name)


@pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                    reason=f"needs Debian chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}); .ci/run installs them")
def test_review_loop_in_headless_chromium(tmp_path, redis_url, judge_server, monkeypatch):
    pytest.importorskip("selenium", reason="selenium is in the [test] extra")
    from selenium.webdriver.support.ui import WebDriverWait

    from slicelab.calibration.run import run_calibration
    from slicelab.service.judge import judge_spec

    monkeypatch.setenv("SLICELAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager download a driver
    write_samples(tmp_path / "data")
    record = run_calibration(BUNDLED["eval"], judge_spec(judge_url=judge_server.base_url, judge_model="test-judge"),
                             "", limit=8, workers=0, inline=True, lobo=False, n_boot=50)
    app = create_app(settings(tmp_path / "data", redis_url, judge_server.base_url))
    driver = browser()
    try:
        with Served(app) as base:
            wait = WebDriverWait(driver, 30)
            review_id = review_five_items(driver, wait, base, record["id"], tmp_path)
            export_and_recalibrate(driver, wait, base, review_id, redis_url)
            seed_review(driver, wait, base, tmp_path)
    finally:
        driver.quit()


def review_five_items(driver, wait, base, record_id, tmp_path) -> str:
    """Log in, start a review of the record, decide five items (keyboard and clicks), change a label, reload."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    driver.get(f"{base}/ui/reviews")
    assert "/ui/login" in driver.current_url  # a Secure cookie works over http://127.0.0.1 in Chromium
    driver.find_element(By.ID, "key").send_keys("cal-key")
    driver.find_element(By.ID, "reviewer").send_keys("ann")
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait.until(lambda d: d.current_url.endswith("/ui/reviews"))
    Select(driver.find_element(By.ID, "record_id")).select_by_value(record_id)
    driver.find_element(By.CSS_SELECTOR, "#create button").click()
    wait.until(lambda d: re.search(r"/ui/reviews/rev-[0-9T]+-[0-9a-f]{6}$", d.current_url))
    review_id = driver.current_url.rsplit("/", 1)[-1]
    driver.find_element(By.ID, "continue").click()
    # item 1 by keyboard: "2" picks the second option of the focused field, Enter saves and opens item 2
    wait.until(lambda d: d.current_url.endswith("/items/1"))
    first = driver.switch_to.active_element
    axis = first.get_attribute("data-axis")
    wanted = Select(first).options[1].get_attribute("value")
    first.send_keys("2")
    wait.until(lambda d: f"saved {axis}" in d.find_element(By.ID, "saved").text)
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    wait.until(lambda d: d.current_url.endswith("/items/2?saved=1"))
    screenshot(driver, "review-page.png", tmp_path / "shots")
    for n in (2, 3, 4, 5):  # the Save button, then Enter
        wait.until(lambda d: f"/items/{n}" in d.current_url)
        if n == 2:
            driver.find_element(By.ID, "save").click()
        else:
            driver.switch_to.active_element.send_keys(Keys.ENTER)
        wait.until(lambda d: f"/items/{n + 1}" in d.current_url)
    # change a label of item 1, reload: the change is kept
    driver.get(f"{base}/ui/reviews/{review_id}/items/1")
    assert Select(driver.find_element(By.ID, f"ax-{axis}")).first_selected_option.get_attribute("value") == wanted
    field = Select(driver.find_element(By.ID, "ax-task_type"))
    other = next(o.get_attribute("value") for o in field.options if not o.is_selected())
    field.select_by_value(other)
    wait.until(lambda d: "saved task_type" in d.find_element(By.ID, "saved").text)
    driver.refresh()
    field = Select(driver.find_element(By.ID, "ax-task_type"))
    assert field.first_selected_option.get_attribute("value") == other
    assert driver.find_element(By.ID, "progress").text == "5 / 8 reviewed"
    return review_id


def export_and_recalibrate(driver, wait, base, review_id, redis_url) -> None:
    """Export a new gold version, then re-calibrate on it: a worker runs the task, the page shows the gate."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{base}/ui/reviews/{review_id}")
    driver.find_element(By.CSS_SELECTOR, "#export button").click()
    path = Path(wait.until(lambda d: d.find_element(By.ID, "export-path")).text)
    gold = load_gold(path)
    assert "ann" in gold.labels and len(gold.labels["ann"]) == 5
    driver.get(f"{base}/ui/reviews/{review_id}")
    driver.find_element(By.CSS_SELECTOR, "#recalibrate input[name=limit]").send_keys("8")
    driver.find_element(By.CSS_SELECTOR, "#recalibrate button").click()
    wait.until(lambda d: "/ui/tasks/" in d.current_url)
    assert driver.find_element(By.ID, "state").text in ("queued", "started", "finished")
    work(redis_url)  # a real RQ worker runs the calibration; the page reloads itself until it ends
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.ID, "gate"))
    gate = driver.find_element(By.ID, "gate").text
    assert "task_type" in gate and ("pass" in gate or "fail" in gate)
    assert driver.find_element(By.ID, "record-id").text.startswith("cal-")


def seed_review(driver, wait, base, tmp_path) -> None:
    """The seed page creates a review of items picked from a file under the data root."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/ui/seed")
    driver.find_element(By.ID, "path").send_keys("bench.jsonl")
    n = driver.find_element(By.ID, "n")
    n.clear()
    n.send_keys("5")
    driver.find_element(By.ID, "benchmark").send_keys("arith")
    screenshot(driver, "seed-page.png", tmp_path / "shots")
    driver.find_element(By.CSS_SELECTOR, "#seed button").click()
    wait.until(lambda d: re.search(r"/ui/reviews/rev-[0-9T]+-[0-9a-f]{6}$", d.current_url))
    assert len(driver.find_elements(By.CSS_SELECTOR, "#items tr")) == 1 + 5
    driver.find_element(By.ID, "continue").click()
    wait.until(lambda d: d.current_url.endswith("/items/1"))
    assert driver.find_element(By.ID, "question").text.startswith("What is ")  # an item of bench.jsonl


def test_odd_numbers_paths_and_names_are_refused_and_an_unscored_wrong_item_is_completable(client, tmp_path):
    for name in ("gold", "annotator_a", "bob\nx", "-x"):
        r = client.post("/ui/login", data={"key": "cal-key", "reviewer": name}, follow_redirects=False)
        assert r.status_code == 422 and "reviewer" in r.text and "set-cookie" not in r.headers, name
    token = login(client, reviewer="1alice")  # the rule of the CLI: a leading digit is fine
    for data, field in (({"path": "bench.jsonl", "n": "²"}, "n:"), ({"path": "bench.jsonl", "n": "3" * 5000}, "n:"),
                        ({"path": "x" * 5000, "n": "3"}, "path:")):
        r = client.post("/ui/seed", data=data | {"csrf": token})
        assert r.status_code == 422 and field in r.text, data
    # scored wrong without a model output: failure_mode does not apply (the gold-set rule), the item saves
    (tmp_path / "data" / "noout.jsonl").write_text(json.dumps(
        {"id": "nf1", "question": "What is 2+2?", "reference_answer": "4", "correct": False}) + "\n")
    r = client.post("/ui/seed", data={"path": "noout.jsonl", "n": "3", "csrf": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    review = r.headers["location"]
    page = client.get(f"{review}/items/1").text
    assert 'id="ax-failure_mode"' not in page and "not applicable" in page
    from slicelab.calibration.review_sets import load_review

    item = load_review(review.rsplit("/", 1)[-1]).items[0]
    form = {k: v for k, v in item.prefill.items() if v is not None and not isinstance(v, list)}
    ops = item.prefill["solving_operations"]
    form |= {"solving_operations": ops[0], "solving_operations__more": ops[1:], "csrf": token}
    r = client.post(f"{review}/items/1", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert "1 / 1 reviewed" in client.get(review).text
    r = client.post(f"{review}/items/1", data=form | {"only": "failure_mode"})
    assert r.status_code == 422 and "does not apply to this item" in r.text
    r = client.get(f"{review}/items/abc")
    assert r.status_code == 422 and "item number" in r.text
    assert client.get(f"{review}/items/2").status_code == 404
