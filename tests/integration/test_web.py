"""The web console in a real browser (Debian's headless Chromium through Selenium) against
a real `trunkplane serve`, its embedded agent registering at a real Kamailio. Screenshots
go to the test's folder, and to $TRUNKPLANE_SCREENSHOTS when set (the README's come from
there: `TRUNKPLANE_SCREENSHOTS=docs/console pytest tests/integration/test_web.py`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from infra.config.settings import KafkaSettings
from tests.brokers import free_port
from tests.integration.browser import by_id, chromium, overflows, unlabelled_inputs, wait_for
from tests.integration.test_cli import CLI, Server
from tests.kamailio import Kamailio

PASSWORD = "Kamailio-Password-1001"


class Site:
    """The service, its console, and the tokens the tests sign in with."""

    def __init__(self, server: Server, url: str, auditor: str) -> None:
        self.server, self.url, self.auditor = server, url, auditor

    def trunks(self) -> list[dict[str, object]]:
        listing = self.server.cli("--json", "trunk", "list")
        assert listing.returncode == 0, listing.stderr
        found: list[dict[str, object]] = json.loads(listing.stdout).get("trunks", [])
        return found


@pytest.fixture
def kamailio(tmp_path: Path) -> Iterator[Kamailio]:
    """No subscriber yet: the first REGISTER is refused (403 Unknown User) until the test
    provisions 1001, so the status cell has a change to show while the page watches."""
    with Kamailio(tmp_path / "kamailio", {}) as running:
        yield running


@pytest.fixture
def site(tmp_path: Path, kamailio: Kamailio) -> Iterator[Site]:
    """`trunkplane serve` with its console on a port of the test's own."""
    (tmp_path / "serve").mkdir()
    web_port = free_port()
    server = Server(tmp_path / "serve", TRUNKPLANE_SIP_STARTUP_SPREAD="0",
                    TRUNKPLANE_SIP_BACKOFF_BASE="1", TRUNKPLANE_SIP_BACKOFF_MAX="3",
                    TRUNKPLANE_WEB_LISTEN=f"127.0.0.1:{web_port}")
    server.start()
    url = f"https://127.0.0.1:{web_port}"
    assert f"web console on {url}" in server.log.read_text()
    auditor = subprocess.run(
        [*CLI, "tokens", "create", "--principal", "audrey@example.com", "--role", "auditor"],
        env=server.local_env(), capture_output=True, text=True, timeout=30, check=True)
    try:
        yield Site(server, url, auditor.stdout.strip())
    finally:
        assert server.stop() == 0
    assert PASSWORD not in server.log.read_text()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    driver = chromium(tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        driver.quit()


def shot(browser: webdriver.Chrome, tmp_path: Path, name: str, whole: bool = False) -> Path:
    """whole: the page's full height (a long form with errors far down), not the window."""
    path = tmp_path / f"{name}.png"
    size = browser.get_window_size()
    if whole:
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(size["width"], int(height) + 140)  # the window's own chrome
    assert browser.save_screenshot(str(path))
    browser.set_window_size(size["width"], size["height"])
    if os.environ.get("TRUNKPLANE_SCREENSHOTS"):
        target = Path(os.environ["TRUNKPLANE_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / path.name)
    return path


def sign_in(browser: webdriver.Chrome, site: Site, token: str) -> None:
    browser.get(f"{site.url}/signin")
    by_id(browser, "token").send_keys(token)
    by_id(browser, "signin").click()
    wait_for(browser, lambda b: b.current_url.endswith("/trunks"), message="not signed in")


def sign_out(browser: webdriver.Chrome, site: Site) -> None:
    by_id(browser, "signout").click()
    wait_for(browser, lambda b: b.current_url.endswith("/signin"))
    browser.get(f"{site.url}/trunks")  # the session is gone: back to the sign-in page
    assert browser.current_url.endswith("/signin")


def fill(browser: webdriver.Chrome, name: str, value: str) -> None:
    field = browser.find_element(By.NAME, name)
    field.clear()
    field.send_keys(value)


def cell_text(browser: webdriver.Chrome, trunk_id: str) -> str:
    """The live cell is swapped by every status update: one found just before a swap is
    gone when read ("Node with given id does not belong to the document"), so look again."""
    return wait_for(browser, lambda b: str(by_id(b, f"status-{trunk_id}").text))


def add_user(kamailio: Kamailio, user: str) -> None:
    with sqlite3.connect(kamailio.dir / "kamailio.db") as database:
        database.execute("INSERT INTO subscriber (username, domain, password) VALUES (?, ?, ?)",
                         (user, "127.0.0.1", PASSWORD))


def create_trunk(browser: webdriver.Chrome, site: Site, kamailio: Kamailio,
                 tmp_path: Path) -> str:
    """From the TheVoĉo template: a wrong host is refused next to its field, with the other
    mistake of the same request beside its own field, and nothing is stored."""
    by_id(browser, "add-trunk").click()
    by_id(browser, "template-thevoco").click()
    assert not by_id(browser, "f-peer_addresses").is_displayed()  # a register trunk's fields
    assert by_id(browser, "f-host").get_attribute("value") == "sip.thevoco.com"
    assert unlabelled_inputs(browser) == []
    fill(browser, "name", "voco")
    fill(browser, "host", "sip thevoco com")
    fill(browser, "username", "1001")
    fill(browser, "password", PASSWORD)
    fill(browser, "call_limits.max_concurrent_calls", "2")
    fill(browser, "call_limits.max_inbound_calls", "5")
    by_id(browser, "save").click()
    host_error = wait_for(browser, lambda b: b.find_element(By.ID, "host-error"))
    assert "is not a valid domain name" in host_error.text
    limit_error = by_id(browser, "call_limits-max_inbound_calls-error")
    assert "exceeds max_concurrent_calls (2)" in limit_error.text
    assert by_id(browser, "f-host").get_attribute("aria-invalid") == "true"
    assert site.trunks() == []
    shot(browser, tmp_path, "trunk-form-errors", whole=True)

    fill(browser, "host", f"127.0.0.1:{kamailio.udp}")
    fill(browser, "call_limits.max_inbound_calls", "")
    by_id(browser, "save").click()
    row = wait_for(browser, lambda b: b.find_element(By.CSS_SELECTOR, "tr[data-name=voco]"))
    return str(row.get_attribute("id")).removeprefix("trunk-")


def watch_status(browser: webdriver.Chrome, kamailio: Kamailio, trunk_id: str) -> None:
    """The registrar refuses the unknown user, then accepts it once provisioned: the cell
    follows without a reload (the page's own marker survives)."""
    wait_for(browser, lambda b: "live" in b.find_element(By.ID, "live").text)
    browser.execute_script("window.notReloaded = true")
    wait_for(browser, lambda b: "403 Unknown User" in cell_text(b, trunk_id), 15,
             f"no 403 shown: {cell_text(browser, trunk_id)}")
    assert "forbidden" in cell_text(browser, trunk_id)
    add_user(kamailio, "1001")
    wait_for(browser, lambda b: "registered" in cell_text(b, trunk_id), 20,
             f"not registered: {cell_text(browser, trunk_id)}")
    text = cell_text(browser, trunk_id)
    assert "200 OK" in text and "reg 1/1" in text and "calls 0/2" in text
    assert browser.execute_script("return window.notReloaded === true")
    assert kamailio.contacts("1001")


def drag(browser: webdriver.Chrome, item: str, before: str) -> None:
    """SortableJS's pointer fallback follows the mouse: press on the handle, move in steps
    over the target's upper half, release."""
    handle = browser.find_element(By.CSS_SELECTOR, f"li[data-codec={item}] .handle")
    target = browser.find_element(By.CSS_SELECTOR, f"li[data-codec={before}]")
    actions = ActionChains(browser, duration=50)
    actions.click_and_hold(handle).move_by_offset(0, -4)
    actions.move_to_element_with_offset(target, 0, -8).move_by_offset(0, -3).release()
    actions.perform()


def codec_order(browser: webdriver.Chrome) -> list[str]:
    return [str(e.get_attribute("data-codec"))
            for e in browser.find_elements(By.CSS_SELECTOR, "li.codec")]


def reorder_codecs(browser: webdriver.Chrome, site: Site, trunk_id: str,
                   tmp_path: Path) -> None:
    browser.get(f"{site.url}/trunks/{trunk_id}/edit")
    order = [e.get_attribute("data-codec") for e in browser.find_elements(By.CSS_SELECTOR,
                                                                          "li.codec")]
    assert order == ["PCMU", "PCMA", "OPUS", "G729"]  # the template's three, then the rest
    by_id(browser, "codec-G729").find_element(By.XPATH, "../button[contains(@class,'up')]"
                                              ).send_keys(Keys.ENTER)  # by keyboard
    assert codec_order(browser) == ["PCMU", "PCMA", "G729", "OPUS"]
    browser.switch_to.active_element.find_element(By.XPATH, "../button[contains(@class,"
                                                  "'down')]").send_keys(Keys.ENTER)
    assert codec_order(browser) == ["PCMU", "PCMA", "OPUS", "G729"]
    drag(browser, "OPUS", "PCMU")
    order = [e.get_attribute("data-codec") for e in browser.find_elements(By.CSS_SELECTOR,
                                                                          "li.codec")]
    assert order == ["OPUS", "PCMU", "PCMA", "G729"]
    fill(browser, "reason", "prefer opus, ticket OPS-7")
    by_id(browser, "save").click()
    wait_for(browser, lambda b: b.current_url.endswith("/trunks"))
    assert site.trunks()[0]["codecs"] == ["OPUS", "PCMU", "PCMA"]


def read_history(browser: webdriver.Chrome, site: Site, trunk_id: str,
                 tmp_path: Path) -> None:
    browser.get(f"{site.url}/trunks/{trunk_id}/history")
    entry = browser.find_element(By.CSS_SELECTOR, "tr[data-event=CodecsReordered]")
    assert entry.find_element(By.CSS_SELECTOR, ".before").text == "PCMU, PCMA, OPUS"
    assert entry.find_element(By.CSS_SELECTOR, ".after").text == "OPUS, PCMU, PCMA"
    assert "prefer opus, ticket OPS-7" in entry.text and "ops@example.com" in entry.text
    created = browser.find_element(By.CSS_SELECTOR, "tr[data-event=TrunkCreated]")
    assert "password: — → (set)" in created.text and PASSWORD not in browser.page_source
    shot(browser, tmp_path, "trunk-history")
    fill(browser, "version", "1")
    by_id(browser, "show-at").click()
    wait_for(browser, lambda b: "as it was at version 1" in b.find_element(By.TAG_NAME,
                                                                           "h1").text)
    assert by_id(browser, "s-codecs").text == "PCMU, PCMA, OPUS"
    assert by_id(browser, "s-version").text == "1"


def edit_after_someone_else(browser: webdriver.Chrome, site: Site, trunk_id: str) -> None:
    """A change saved by someone else after the form was opened: refused, not overwritten."""
    browser.get(f"{site.url}/trunks/{trunk_id}/edit")
    meanwhile = site.server.cli("trunk", "update", "voco", "--description", "theirs")
    assert meanwhile.returncode == 0, meanwhile.stderr
    fill(browser, "description", "mine")
    by_id(browser, "save").click()
    refusal = wait_for(browser, lambda b: b.find_element(By.ID, "form-errors"))
    assert "Someone changed this trunk after you opened it" in refusal.text
    assert site.trunks()[0]["description"] == "theirs"


def test_an_administrator_adds_a_trunk_watches_it_register_and_reorders_its_codecs(
        site: Site, browser: webdriver.Chrome, kamailio: Kamailio, tmp_path: Path) -> None:
    sign_in(browser, site, site.server.token)
    trunk_id = create_trunk(browser, site, kamailio, tmp_path)
    watch_status(browser, kamailio, trunk_id)
    shot(browser, tmp_path, "trunks")
    reorder_codecs(browser, site, trunk_id, tmp_path)
    read_history(browser, site, trunk_id, tmp_path)
    edit_after_someone_else(browser, site, trunk_id)
    sign_out(browser, site)


def forged_post(browser: webdriver.Chrome, path: str, with_csrf: bool) -> dict[str, object]:
    """A POST the page offers no control for, sent from the signed-in page itself."""
    answer: dict[str, object] = browser.execute_async_script("""
        const [path, withCsrf, done] = arguments;
        const body = new URLSearchParams({etag: ""});
        if (withCsrf) body.set("csrf", document.body.dataset.csrf);
        fetch(path, {method: "POST", body: body, credentials: "same-origin"})
          .then(r => r.text().then(t => done({status: r.status, text: t})));""",
        path, with_csrf)
    return answer


def test_an_auditor_sees_no_edit_control_and_a_forged_post_is_refused(
        site: Site, browser: webdriver.Chrome, tmp_path: Path) -> None:
    created = site.server.cli("trunk", "create", "carrier", "--type", "peer", "--peer",
                              "127.0.0.1:9", "--codecs", "PCMA")
    assert created.returncode == 0, created.stderr
    trunk_id = str(site.trunks()[0]["id"])
    sign_in(browser, site, site.auditor)
    header = browser.find_element(By.TAG_NAME, "header").text
    assert "audrey@example.com (auditor)" in header
    assert [a.text for a in browser.find_elements(By.CSS_SELECTOR, "header nav a")] == [
        "Trunks", "Routes", "History"]
    assert browser.find_elements(By.ID, "add-trunk") == []
    assert browser.find_elements(By.CSS_SELECTOR, "#trunks a.edit, #trunks form") == []
    browser.get(f"{site.url}/routes")
    assert browser.find_elements(By.CSS_SELECTOR, "form[method=post]:not([action='/signout'])"
                                 ) == []
    refused = forged_post(browser, f"/trunks/{trunk_id}/disable", with_csrf=True)
    assert refused["status"] == 403 and "PERMISSION_DENIED" in str(refused["text"])
    assert "needs the role admin or operator" in str(refused["text"])
    no_token = forged_post(browser, f"/trunks/{trunk_id}/disable", with_csrf=False)
    assert no_token["status"] == 403 and "not from your session" in str(no_token["text"])
    assert site.trunks()[0]["enabled"] is True
    browser.get(f"{site.url}/history")
    assert "TrunkCreated" in by_id(browser, "changes").text
    sign_out(browser, site)


def test_pages_fit_a_phone(site: Site, tmp_path: Path) -> None:
    phone = chromium(tmp_path / "phone-profile", phone=True)
    try:
        sign_in(phone, site, site.server.token)
        assert phone.execute_script("return window.innerWidth") == 390
        for page in ("/trunks", "/routes", "/history", "/ops", "/trunks/new?template=thevoco"):
            phone.get(f"{site.url}{page}")
            assert not overflows(phone), page
            assert unlabelled_inputs(phone) == [], page
        shot(phone, tmp_path, "phone-trunk-form")
    finally:
        phone.quit()


def fetch_text(browser: webdriver.Chrome, path: str) -> str:
    text: str = browser.execute_async_script("""
        const [path, done] = arguments;
        fetch(path, {credentials: "same-origin"}).then(r => r.text()).then(done);""", path)
    return text


def route_order(site: Site) -> list[str]:
    listing = site.server.cli("--json", "route", "outbound", "list")
    assert listing.returncode == 0, listing.stderr
    return [r["name"] for r in json.loads(listing.stdout)["routes"]]


def test_routes_history_and_operations(site: Site, browser: webdriver.Chrome,
                                       tmp_path: Path) -> None:
    for name in ("carrier", "backup"):
        made = site.server.cli("trunk", "create", name, "--type", "peer", "--peer",
                               "127.0.0.1:9", "--codecs", "PCMA")
        assert made.returncode == 0, made.stderr
    assert site.server.cli("trunk", "update", "carrier", "--codecs", "PCMU,PCMA").returncode == 0
    made = site.server.cli("route", "outbound", "create", "Intl", "--pattern", "011|.",
                           "--trunk", "backup")
    assert made.returncode == 0, made.stderr
    sign_in(browser, site, site.server.token)

    browser.get(f"{site.url}/routes")
    browser.find_element(By.CSS_SELECTOR, "#outbound-form").find_element(
        By.XPATH, "./ancestor::details/summary").click()
    fill(browser, "name", "US")
    fill(browser, "dial_patterns", "1+9|NXXNXXXXXX")
    fill(browser, "trunks", "nope")
    fill(browser, "allowed_extensions", "1XXX")
    browser.find_element(By.CSS_SELECTOR, "#outbound-form button[type=submit]").click()
    assert "no trunk 'nope'" in wait_for(browser, lambda b: b.find_element(
        By.ID, "o-trunks-error")).text
    assert route_order(site) == ["Intl"]
    fill(browser, "trunks", "carrier\nbackup")
    browser.find_element(By.CSS_SELECTOR, "#outbound-form button[type=submit]").click()
    wait_for(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "li.route")) == 2)
    assert route_order(site) == ["Intl", "US"]

    us = browser.find_element(By.CSS_SELECTOR, "li.route:nth-child(2) .handle")
    first = browser.find_element(By.CSS_SELECTOR, "li.route:nth-child(1)")
    browser.execute_script("window.beforeTheDrop = true")
    actions = ActionChains(browser, duration=50)
    actions.click_and_hold(us).move_by_offset(0, -4)
    actions.move_to_element_with_offset(first, 0, -20).move_by_offset(0, -3).release()
    actions.perform()
    wait_for(browser, lambda b: route_order(site) == ["US", "Intl"], message="not moved")
    wait_for(browser, lambda b: b.execute_script(  # the page reloads after the move
        "return window.beforeTheDrop !== true && document.readyState === 'complete'"))
    assert browser.find_element(By.CSS_SELECTOR, "li.route:nth-child(1) h3").text == "1. US"

    browser.find_element(By.CSS_SELECTOR, "li.route:nth-child(1) a.edit").click()
    assert by_id(browser, "o-trunks").get_attribute("value") == "carrier\nbackup"
    fill(browser, "dial_patterns", "1+9|NXXNXXXXXX\n1+91|NXXNXXXXXX")
    Select(by_id(browser, "o-strategy")).select_by_visible_text("spread")
    fill(browser, "reason", "spread the load")
    by_id(browser, "save").click()
    wait_for(browser, lambda b: b.current_url.endswith("/routes"))
    listing = json.loads(site.server.cli("--json", "route", "outbound", "list").stdout)
    us = listing["routes"][0]
    assert us["strategy"] == "spread" and len(us["dial_patterns"]) == 2

    fill(browser, "number", "92125551234")
    fill(browser, "extension", "1001")
    by_id(browser, "resolve").click()
    result = wait_for(browser, lambda b: b.find_element(By.CSS_SELECTOR,
                                                        "#resolve-result .candidate"))
    assert result.text == "carrier" and "12125551234" in by_id(browser, "resolve-result").text
    fill(browser, "extension", "2001")
    by_id(browser, "resolve").click()
    wait_for(browser, lambda b: "PERMISSION_DENIED" in b.find_element(
        By.ID, "resolve-result").text)

    browser.find_element(By.CSS_SELECTOR, "#inbound-form").find_element(
        By.XPATH, "./ancestor::details/summary").click()
    fill(browser, "did_pattern", "15551234567")
    fill(browser, "destination", "somewhere")
    browser.find_element(By.CSS_SELECTOR, "#inbound-form button[type=submit]").click()
    assert wait_for(browser, lambda b: b.find_element(By.ID, "i-destination-error")).text
    fill(browser, "destination", "ivr:main")
    browser.find_element(By.CSS_SELECTOR, "#inbound-form button[type=submit]").click()
    wait_for(browser, lambda b: "ivr:main" in b.find_element(By.ID, "inbound").text)
    assert "15551234567" in by_id(browser, "inbound").text

    browser.get(f"{site.url}/trunks")
    browser.find_element(By.CSS_SELECTOR, "tr[data-name=carrier] button.danger").click()
    browser.switch_to.alert.accept()
    flash = wait_for(browser, lambda b: b.find_element(By.CSS_SELECTOR, ".flash"))
    assert "Not deleted" in flash.text and "is used by routes: US;" in flash.text
    browser.find_element(By.CSS_SELECTOR, "tr[data-name=backup] form[action$=disable] button"
                         ).click()
    wait_for(browser, lambda b: "Trunk backup disabled." in b.find_element(
        By.CSS_SELECTOR, ".flash").text)
    assert [t.get("enabled", False) for t in site.trunks() if t["name"] == "backup"] == [False]

    carrier = next(t for t in site.trunks() if t["name"] == "carrier")
    browser.get(f"{site.url}/trunks/{carrier['id']}/history")
    fill(browser, "from_version", "1")
    fill(browser, "to_version", "2")
    by_id(browser, "show-diff").click()
    row = wait_for(browser, lambda b: b.find_element(By.CSS_SELECTOR, "#diff tbody tr"))
    assert row.text == "codecs PCMA PCMU, PCMA"

    moment = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")  # as datetime-local sends it
    browser.get(f"{site.url}/trunks/{carrier['id']}/at?time={moment}")
    assert by_id(browser, "s-codecs").text == "PCMU, PCMA"
    assert f"as it was at {moment} UTC" in browser.find_element(By.TAG_NAME, "h1").text

    browser.get(f"{site.url}/history?event_type=OutboundRouteCreated")
    rows = browser.find_elements(By.CSS_SELECTOR, "#changes tr.entry")
    assert [r.get_attribute("data-event") for r in rows] == ["OutboundRouteCreated"] * 2
    exported = fetch_text(browser, by_id(browser, "export-jsonl").get_attribute("href") or "")
    lines = [json.loads(line) for line in exported.splitlines()]
    assert [x["event_type"] for x in lines[1:-1]] == ["OutboundRouteCreated"] * 2
    assert "export" in lines[0] and "trailer" in lines[-1]

    browser.get(f"{site.url}/ops")
    assert "embedded" in by_id(browser, "agents").text or by_id(browser, "agents").text
    by_id(browser, "rebuild-history").click()
    done = wait_for(browser, lambda b: b.find_element(By.CSS_SELECTOR, "#progress-history .done"),
                    20)
    assert "generation 2" in done.text


def test_trunkplane_control_serves_the_console_too(
        kafka: KafkaSettings, fresh_postgres_url: str, tmp_path: Path) -> None:
    """No browser here: an HTTPS client that trusts only the service's certificate signs
    in through the forms, as a browser would, and reads the trunk list."""
    (tmp_path / "control").mkdir()
    web_port = free_port()
    control = Server(tmp_path / "control", "control", TRUNKPLANE_DATABASE_URL=fresh_postgres_url,
                     TRUNKPLANE_KAFKA_BOOTSTRAP=kafka.bootstrap,
                     TRUNKPLANE_KAFKA_TOPIC_PREFIX=kafka.topic_prefix,
                     TRUNKPLANE_KAFKA_PARTITIONS=str(kafka.partitions),
                     TRUNKPLANE_WIRE_KEY=kafka.wire_key,
                     TRUNKPLANE_WEB_LISTEN=f"127.0.0.1:{web_port}")
    control.start()
    try:
        made = control.cli("trunk", "create", "carrier", "--type", "peer", "--peer",
                           "127.0.0.1:9")
        assert made.returncode == 0, made.stderr
        tls = ssl.create_default_context(cafile=str(tmp_path / "control" / "var" / "tls.crt"))
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=tls),
                                             urllib.request.HTTPCookieProcessor())
        url = f"https://127.0.0.1:{web_port}"
        form = opener.open(f"{url}/signin", timeout=10).read().decode()
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf is not None
        pbx = subprocess.run([*CLI, "tokens", "create", "--principal", "pbx-1", "--role", "pbx"],
                             env=control.local_env(), capture_output=True, text=True,
                             timeout=30, check=True).stdout.strip()
        for token, refusal in (("tp_wrong", "this token is unknown, expired or revoked"),
                               (pbx, "pbx-1 is pbx, a role with no page in the console")):
            body = urllib.parse.urlencode({"csrf": csrf[1], "token": token}).encode()
            with pytest.raises(urllib.error.HTTPError) as refused:
                opener.open(f"{url}/signin", data=body, timeout=10)
            assert refused.value.code in (401, 403)
            assert refusal in refused.value.read().decode().replace("&#39;", "'")
        body = urllib.parse.urlencode({"csrf": csrf[1], "token": control.token}).encode()
        page = opener.open(f"{url}/signin", data=body, timeout=10)
        assert page.url == f"{url}/trunks"
        listing = page.read().decode()
        assert 'data-name="carrier"' in listing
        assert "ops@example.com (admin) · tenant default" in listing
    finally:
        assert control.stop() == 0
