"""Drives the hub console in headless Chromium over WebDriver (issue #15).

usage: console_browser.py HUB_URL ADMIN_TOKEN PENDING_PEER_URL SCREENSHOT_PATH

Checks, in one browser session: admin actions refused without the token; search and a filter;
a free call run from the capability page; a capability page's example, key status and trust
breakdown; a priced call's 402 explained, then paid through a
demo channel opened from the page (the answer and the hub's receipt shown); a hostile
description rendered inert; approving a pending peer and finding its capability searchable;
an invocation made outside the browser (urllib, like curl) appearing in the live feed within
2 s, and in the per-capability and per-provider breakdowns. On any failure it saves a screenshot to SCREENSHOT_PATH and exits 1.
"""

import json
import shutil
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

HUB, TOKEN, PENDING, SHOT = sys.argv[1:5]
WAIT = 10


def chrome():
    profile = tempfile.mkdtemp(prefix="console-chrome-")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--user-data-dir=" + profile, "--window-size=1400,1000"]:
        options.add_argument(flag)
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(options=options, service=service)


def wait(driver, what, check):
    try:
        return WebDriverWait(driver, WAIT).until(lambda d: check(d))
    except Exception as e:
        raise AssertionError("timed out waiting for " + what) from e


def text(driver, css):
    return driver.find_element(By.CSS_SELECTOR, css).text


def rows(driver, table):
    return driver.find_elements(By.CSS_SELECTOR, "#" + table + " tbody tr")


def search(driver, intent="", budget=""):
    driver.get(HUB + "/#catalog")
    wait(driver, "the search form", lambda d: d.find_element(By.ID, "q-intent"))
    for field, value in [("q-intent", intent), ("q-budget", budget)]:
        box = driver.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    before = text(driver, "#search-status")
    driver.execute_script("document.getElementById('search-status').textContent = ''")
    driver.find_element(By.ID, "search-go").click()
    wait(driver, "search results", lambda d: text(d, "#search-status") != "")
    return [r.get_attribute("data-capability") for r in rows(driver, "results")]


def fetch_status(driver, method, path, body):
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[1], {method: arguments[0], headers: {'Content-Type': 'application/json'},"
        " body: arguments[2]}).then(r => done(r.status), e => done(String(e)));",
        method, path, body)


def main(driver):
    # Read-only without the token: buttons disabled, the API refuses the action.
    driver.get(HUB + "/#federation")
    wait(driver, "the pending peer", lambda d: any(r.get_attribute("data-peer") == PENDING
                                                  for r in rows(d, "pending")))
    assert text(driver, "#token-state") == "read-only"
    buttons = driver.find_elements(By.CSS_SELECTOR, "#pending button.admin")
    assert buttons and all(not b.is_enabled() for b in buttons), "admin buttons enabled"
    status = fetch_status(driver, "POST", "/ai-market/v2/federation/peers/approve",
                          json.dumps({"url": PENDING}))
    assert status == 401, "approve without the token answered %s" % status

    # Search and filter: a budget of 0 leaves only free capabilities.
    found = search(driver)
    assert {"echo@v1", "priced@v1", "hostile@v1"} <= set(found), found
    found = search(driver, budget="0")
    assert "priced@v1" not in found and "echo@v1" in found, found

    # The hostile description is text, and ran nothing.
    hostile = [r for r in rows(driver, "results") if r.get_attribute("data-capability") == "hostile@v1"]
    hostile[0].click()
    wait(driver, "the capability page", lambda d: d.find_element(By.ID, "capability").is_displayed())
    assert "<img" in text(driver, "#cap-description"), text(driver, "#cap-description")
    assert driver.execute_script("return window.__pwned === undefined"), "the description ran"
    assert not driver.find_elements(By.CSS_SELECTOR, "#cap-description img")

    # A free call from the form.
    search(driver, intent="echo")
    [r for r in rows(driver, "results") if r.get_attribute("data-capability") == "echo@v1"][0].click()
    field = wait(driver, "the input form", lambda d: d.find_element(By.CSS_SELECTOR, "#cap-form [data-field=text]"))
    field.send_keys("hello console")
    driver.find_element(By.ID, "cap-run").click()
    wait(driver, "the free call's answer", lambda d: "hello console" in text(d, "#cap-output"))
    assert "HTTP 200" in text(driver, "#cap-output")

    # A priced call: the 402 explained.
    search(driver)
    [r for r in rows(driver, "results") if r.get_attribute("data-capability") == "priced@v1"][0].click()
    wait(driver, "the input form", lambda d: d.find_element(By.CSS_SELECTOR, "#cap-form [data-field=text]")).send_keys("x")
    driver.find_element(By.ID, "cap-run").click()
    # The page shows an example call, who lists it with which key, and its trust breakdown.
    assert "priced@v1" in text(driver, "#cap-example") and "curl" in text(driver, "#cap-example")
    key = wait(driver, "the key status", lambda d: "Ed25519" in text(d, "#cap-key") and text(d, "#cap-key"))
    assert "SHA256:" in key and "Listed by" in key, key
    wait(driver, "the trust breakdown", lambda d: d.find_elements(By.CSS_SELECTOR, "#cap-trust [data-component=age]"))
    wait(driver, "the 402 explanation", lambda d: d.find_element(By.ID, "cap-explain").is_displayed())
    assert "Payment required" in text(driver, "#cap-explain"), text(driver, "#cap-explain")

    # Paid with a demo channel opened from the page: the answer and the receipt are shown.
    pay = driver.find_element(By.ID, "cap-pay")
    assert pay.is_displayed(), "no demo-channel payment offered"
    pay.click()
    wait(driver, "the paid call's answer", lambda d: "HTTP 200" in text(d, "#cap-output"))
    answer = json.loads(text(driver, "#cap-output").split("\n", 1)[1])
    receipt = answer["routing_receipt"]
    assert receipt["payment_rail"] == "hub_channel", receipt
    assert abs(receipt["price_usd"] - 0.0101) < 1e-9, receipt
    assert answer.get("receipt"), answer
    paid = wait(driver, "the payment summary", lambda d: d.find_element(By.ID, "cap-paid").is_displayed() and text(d, "#cap-paid"))
    assert receipt["nonce"] in paid and "demo channel" in paid, paid
    assert not driver.find_element(By.ID, "cap-explain").is_displayed()

    # The token, entered once for this tab, enables approve; the peer becomes searchable.
    driver.get(HUB + "/#federation")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.ID, "token-save").click()
    wait(driver, "admin mode", lambda d: text(d, "#token-state").startswith("admin"))
    assert TOKEN not in driver.current_url
    assert not driver.get_cookies(), driver.get_cookies()
    row = wait(driver, "the pending row", lambda d: [r for r in rows(d, "pending")
                                                    if r.get_attribute("data-peer") == PENDING])
    row[0].find_element(By.XPATH, ".//button[text()='Approve']").click()
    wait(driver, "the approval", lambda d: "approve done" in text(d, "#fed-status"))
    found = search(driver)
    assert "alpha@v1" in found, found

    # An invocation made outside the browser appears in the feed within 2 s.
    driver.get(HUB + "/#floor")
    wait(driver, "the live stream", lambda d: text(d, "#c-stream") == "live")
    before = len(rows(driver, "feed"))
    request = urllib.request.Request(
        HUB + "/ai-market/v2/invoke", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"product_id": "prod-fake", "capability_id": "echo@v1",
                         "input": {"text": "from curl"}}).encode())
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    sent = time.monotonic()
    WebDriverWait(driver, 2).until(lambda d: len(rows(d, "feed")) > before)
    assert time.monotonic() - sent <= 2.5
    assert "echo@v1" in rows(driver, "feed")[0].text
    # Calls and revenue by capability and by provider; the chart can show one of them.
    assert any("echo@v1" in r.text for r in rows(driver, "by-capability")), "no per-capability row"
    assert rows(driver, "by-provider"), "no per-provider row"
    options = [o.get_attribute("value") for o in driver.find_elements(By.CSS_SELECTOR, "#chart-by option")]
    assert any(o.startswith("capability:") and "echo@v1" in o for o in options), options


if __name__ == "__main__":
    driver = chrome()
    try:
        main(driver)
        driver.save_screenshot(SHOT.replace("failure", "console"))
        print("ok")
    except Exception:
        driver.save_screenshot(SHOT)
        raise
    finally:
        driver.quit()
