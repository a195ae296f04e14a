"""The dashboard in a real browser: Debian's headless Chromium, driven through Debian's
ChromeDriver (never a downloaded browser), against ``orders serve`` and a real worker.

``.ci/run`` installs ``chromium`` and ``chromium-driver``; without them these tests
fail under ORDERS_REQUIRE_SERVICES and are skipped loudly otherwise.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from sqlalchemy import Engine, select

from commands import AddItem, CreateOrder, PayOrder
from commands.client import CommandClient
from readmodels.tables import revenue_daily
from tests.support.api_server import ApiServer
from tests.support.services import unavailable
from tests.support.workers import WorkerProcess

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        unavailable("Chromium", RuntimeError("apt-get install chromium chromium-driver"))
    profile = tempfile.mkdtemp(prefix="orders-chromium-")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1400",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def site(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str]
) -> Iterator[ApiServer]:
    start_worker()
    server = ApiServer(worker_env).wait_ready()
    yield server
    server.stop()


def until(probe: Callable[[], bool], what: str, timeout: float = 10.0) -> float:
    """Seconds it took for ``probe`` to hold."""
    started = time.monotonic()
    while not probe():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def rows(browser: WebDriver) -> list[str]:
    # Read in one script: the page swaps its live part in while it is read, and an
    # element found before a swap is gone after it.
    found: list[str] = browser.execute_script(
        "return [...document.querySelectorAll('#orders tr[data-order]')]"
        ".map(row => row.dataset.order)"
    )
    return found


def row_text(browser: WebDriver, order_id: str) -> str:
    text: str = browser.execute_script(
        "const row = document.querySelector(`tr[data-order='${arguments[0]}']`);"
        "return row ? row.textContent : '';",
        order_id,
    )
    return text


def bars(browser: WebDriver) -> list[dict[str, str]]:
    found: list[dict[str, str]] = browser.execute_script(
        "return [...document.querySelectorAll('#revenue-chart rect.bar')].map(bar => ({"
        "day: bar.dataset.day, revenue: bar.dataset.revenue,"
        "height: bar.getAttribute('height')}))"
    )
    return found


def test_a_new_order_appears_without_a_reload_and_its_page_shows_its_timeline(
    browser: WebDriver, site: ApiServer, client: CommandClient, tmp_path: Path
) -> None:
    browser.get(site.url + "/")
    assert browser.title == "Orders: overview"
    marker = browser.execute_script("window.notReloaded = true; return window.notReloaded")
    assert marker is True

    outcome = client.send(CreateOrder("order-live", "customer-live")).wait(timeout=30)
    assert outcome.accepted
    took = until(lambda: "order-live" in rows(browser), "the new order on the page")

    # Live, not reloaded: the script's marker survived. And well within the refresh
    # budget (one poll every 500 ms, and the read models' own delay).
    assert browser.execute_script("return window.notReloaded") is True
    assert took < 5, took
    for command in (AddItem("order-live", "apple", 2, Decimal("1.50")),
                    PayOrder("order-live", "card")):  # fmt: skip
        assert client.send(command).wait(timeout=30).accepted
    until(lambda: "paid" in row_text(browser, "order-live"), "its status to change to paid")

    browser.find_element(By.LINK_TEXT, "order-live").click()
    until(lambda: browser.title == "Order order-live", "the order's page")
    timeline = browser.find_elements(By.CSS_SELECTOR, "#timeline [data-command]")
    assert [entry.get_attribute("data-command") for entry in timeline] == [
        "CreateOrder",
        "AddItem",
        "PayOrder",
    ]
    events = browser.find_elements(By.CSS_SELECTOR, "#timeline [data-event]")
    assert [e.get_attribute("data-event") for e in events] == [
        "OrderCreated",
        "ItemAdded",
        "OrderPaid",
    ]
    assert browser.find_element(By.ID, "total").text == "$3.00"


def test_a_rejected_command_shows_its_reason_in_the_timeline(
    browser: WebDriver, site: ApiServer, client: CommandClient
) -> None:
    assert client.send(CreateOrder("order-r", "customer-r")).wait(timeout=30).accepted
    rejected = client.send(PayOrder("order-r", "card")).wait(timeout=30)
    assert rejected.error == "NothingToPay"

    def shown() -> bool:
        # The order's page exists once the read models have it (a wake-up window after
        # the commit): a user who came too early reloads.
        browser.get(site.url + "/orders/order-r")
        return bool(browser.find_elements(By.CSS_SELECTOR, "#timeline .command.rejected"))

    until(shown, "the order's page shows its rejected command")
    entry = browser.find_element(By.CSS_SELECTOR, "#timeline .command.rejected")
    assert "PayOrder" in entry.text
    assert "NothingToPay" in entry.text


def test_the_chart_bars_are_the_revenue_in_the_database(
    browser: WebDriver, site: ApiServer, client: CommandClient, pg: Engine
) -> None:
    for n, price in enumerate(("4.00", "2.50")):
        for command in (
            CreateOrder(f"order-c{n}", "customer-c"),
            AddItem(f"order-c{n}", "apple", 1, Decimal(price)),
            PayOrder(f"order-c{n}", "card"),
        ):
            assert client.send(command).wait(timeout=30).accepted
    browser.get(site.url + "/")

    def drawn() -> dict[str, Decimal]:
        return {
            bar["day"]: Decimal(bar["revenue"]) for bar in bars(browser) if Decimal(bar["revenue"])
        }

    until(lambda: sum(drawn().values()) == Decimal("6.50"), "both orders in the chart")
    with pg.connect() as conn:
        stored = {row.day.isoformat(): row.revenue for row in conn.execute(select(revenue_daily))}
    assert drawn() == stored
    # The tallest bar is the highest day, and heights follow the revenue.
    heights = {bar["day"]: float(bar["height"]) for bar in bars(browser)}
    top_day = max(stored, key=lambda day: stored[day])
    assert heights[top_day] == max(heights.values()) > 0


def test_a_screenshot_of_the_page_is_not_blank(
    browser: WebDriver, site: ApiServer, client: CommandClient, tmp_path: Path
) -> None:
    assert client.send(CreateOrder("order-shot", "customer-s")).wait(timeout=30).accepted
    browser.get(site.url + "/")
    until(lambda: "order-shot" in rows(browser), "the order")
    shot = tmp_path / "dashboard.png"

    assert browser.save_screenshot(str(shot))

    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG")
    # A blank page compresses to a few kB; text, tables and a chart do not.
    assert len(png) > 30_000, len(png)
    colours = browser.execute_script(
        "const c = document.createElement('canvas');"
        "return getComputedStyle(document.querySelector('header')).backgroundColor;"
    )
    assert colours not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)")
