"""The management web UI (crates/warren-management/ui), driven in headless
Chromium with Playwright: the page Warren serves at ``{mgmt_url}/`` (with
``/ui/app.js`` and ``/ui/app.css``) over the management API of the broker
under test.

What is checked: the login form (a wrong password shows the API's error, a
401 later on returns to the form, logging out); the overview's totals and its
live SVG charts, which draw points from polling /api/overview; a queue's life
through the UI (create, publish through the default exchange, its count in
the list, getting the message without consuming it, purge, delete), each
step verified over the API or AMQP; creating a vhost, a user and a permission
and logging in as that user; closing a pika connection from the Connections
view (pika sees the broker close it); exporting definitions as a download
and importing a file.

Against RabbitMQ (the rabbitmq-as-warren.sh stand-in, or an AMQP_URL broker
whose /api/overview says product_name RabbitMQ) ``{mgmt_url}/`` is RabbitMQ's
own UI, so these tests are skipped there; never against Warren.  For
developing the UI, ``WARREN_UI_URL`` points the tests at another server of
the same files (e.g. a small proxy serving them in front of RabbitMQ's API);
the API checks still go to the broker under test.

Needs Debian's chromium at /usr/bin/chromium (run.sh installs it as root) and
the ``playwright`` package (requirements.txt); no browser is downloaded.
Screenshots of the overview and of a queue's page are written to
``WARREN_UI_SCREENSHOTS`` if set, else to the test's tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path

import pytest

import brokerctl
from mgmt import q

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# ms; generous, since RabbitMQ's figures lag by up to its 5 s statistics interval
UI_TIMEOUT = 30_000
VIEWPORT = {"width": 1280, "height": 800}


# --- fixtures --------------------------------------------------------------------------

def _is_rabbitmq(broker, mgmt) -> bool:
    if not broker.external and brokerctl.warren_bin().name == "rabbitmq-as-warren.sh":
        return True
    status, body = mgmt.get("/api/overview")
    return status == 200 and isinstance(body, dict) and body.get("product_name") == "RabbitMQ"


@pytest.fixture(scope="module")
def ui_url(broker, mgmt):
    override = os.environ.get("WARREN_UI_URL", "").strip()
    if override:
        return override.rstrip("/") + "/"
    if _is_rabbitmq(broker, mgmt):
        pytest.skip("the broker under test is RabbitMQ, whose {mgmt_url}/ is its own UI "
                    "(set WARREN_UI_URL to test Warren's UI files in front of it)")
    url = mgmt.base_url + "/"
    _check_served(url)
    return url


def _check_served(url):
    """The page and its two assets are there (a clear failure instead of timeouts)."""
    import urllib.error
    import urllib.request

    for path, marker in (("", 'id="login-form"'), ("ui/app.js", "Warren"), ("ui/app.css", "--accent")):
        try:
            with urllib.request.urlopen(url + path, timeout=10) as resp:
                status, text = resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as err:
            status, text = err.code, ""
        if status != 200 or marker not in text:
            pytest.fail(f"the web UI is not served: GET {url}{path} answered HTTP {status}", pytrace=False)


@pytest.fixture(scope="module")
def browser(ui_url):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing (tests/interop/requirements.txt)", pytrace=False)
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium (run.sh does so as root)", pytrace=False)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    """A fresh page (own context: own sessionStorage); fails the test on uncaught JS errors."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(UI_TIMEOUT)
    errors = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def shots(tmp_path) -> Path:
    d = Path(os.environ.get("WARREN_UI_SCREENSHOTS") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


# --- helpers ---------------------------------------------------------------------------

def expect(locator):
    from playwright.sync_api import expect as pw_expect
    return pw_expect(locator)


@pytest.fixture(scope="module", autouse=True)
def _expect_timeout(browser):
    from playwright.sync_api import expect as pw_expect
    pw_expect.set_options(timeout=UI_TIMEOUT)


def login(page, ui_url, user="guest", password="guest"):
    page.goto(ui_url)
    page.fill("#login-username", user)
    page.fill("#login-password", password)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("[data-view=overview]")).to_be_visible()


def go(page, route):
    """Navigates to #/route and waits for its view."""
    page.evaluate("r => { location.hash = '#/' + r; }", route)
    view = "queue" if route.startswith("queues/") else route.split("/")[0]
    expect(page.locator(f"[data-view='{view}']")).to_be_visible()


def panel(page, title):
    """An <details> panel by its summary; opened."""
    p = page.locator("details.panel", has=page.locator("summary", has_text=title))
    if p.get_attribute("open") is None:
        p.locator("summary").click()
    return p


def confirm(page, label):
    page.locator("#dialog").get_by_role("button", name=label, exact=True).click()
    expect(page.locator("#dialog")).to_be_hidden()


def ok_message(page, text):
    expect(page.locator("#messages .msg.ok", has_text=text)).to_be_visible()


def screenshot(page, path: Path):
    page.evaluate("document.querySelectorAll('#messages .msg.ok').forEach(m => m.remove()); window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True)


def wait_for(fn, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.25)


def api_queue(mgmt, name, vhost="/"):
    return mgmt.get(f"/api/queues/{q(vhost)}/{q(name)}")


def passive_count(ch, name) -> int:
    return ch.queue_declare(name, passive=True).method.message_count


# --- tests -----------------------------------------------------------------------------

def test_login_errors_and_logout(page, ui_url):
    page.goto(ui_url)
    expect(page.locator("#login")).to_be_visible()
    page.fill("#login-username", "guest")
    page.fill("#login-password", "not-the-password")
    page.click("#login-form button[type=submit]")
    err = page.locator("#login-error")
    expect(err).to_be_visible()
    expect(err).not_to_be_empty()
    expect(page.locator("#app")).to_be_hidden()

    login(page, ui_url)
    expect(page.locator("#whoami")).to_contain_text("guest")
    # credentials that stop working send the UI back to the login form, with the reason
    page.evaluate("sessionStorage.setItem('warren.auth', 'Basic ' + btoa('guest:wrong'))")
    page.reload()
    expect(page.locator("#login")).to_be_visible()
    expect(err).to_be_visible()
    expect(err).not_to_be_empty()

    login(page, ui_url)
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('warren.auth')") is None


def test_overview_totals_and_live_charts(page, ui_url, pika_connect, cleanup, uid, shots):
    conn = pika_connect()
    ch = conn.channel()
    ch.confirm_delivery()
    queue = cleanup.queue(f"{uid}.chart")
    ch.queue_declare(queue)

    login(page, ui_url)
    page.select_option("#refresh-interval", "2")
    # some traffic while the UI polls: a growing backlog, part of it consumed
    for i in range(6):
        for _ in range(3):
            ch.basic_publish("", queue, f"m{i}".encode())
        if i % 2:
            method, _, _ = ch.basic_get(queue)
            ch.basic_ack(method.delivery_tag)
        conn.sleep(2.0)
    expected_ready = passive_count(ch, queue)
    assert expected_ready == 15

    for key in ("connections", "channels", "exchanges", "queues", "consumers"):
        expect(page.locator(f"[data-stat={key}] .stat-value")).to_have_text(re.compile(r"^\d[\d,.\s]*$"))
    assert int(page.locator("[data-stat=queues] .stat-value").inner_text().replace(",", "")) >= 1

    # both charts drew several samples; the backlog reached the Ready line
    page.wait_for_function(
        """n => [...document.querySelectorAll('svg.chart')].length === 2 &&
                [...document.querySelectorAll('svg.chart')].every(s => Number(s.dataset.points) >= 4)""",
        arg=None, timeout=UI_TIMEOUT)
    page.wait_for_function(
        """n => {
            const v = document.querySelector('.legend-item[data-series=ready] .legend-value');
            return v && Number(v.textContent.replace(/[^0-9.]/g, '')) >= n;
        }""", arg=expected_ready, timeout=UI_TIMEOUT)
    for series in ("ready", "unacked", "publish", "deliver_get", "ack"):
        d = page.locator(f"svg.chart g[data-series={series}] path.line").get_attribute("d")
        assert d and d.count("L") >= 3, f"{series}: {d!r}"
    # the Ready line rises: its last point is above (smaller y than) its first
    d = page.locator("svg.chart g[data-series=ready] path.line").get_attribute("d")
    ys = [float(p.split(",")[1]) for p in d.lstrip("M").split(" L")]
    assert ys[-1] < ys[0], ys
    expect(page.locator(".node").first.or_(page.locator(".nodes p"))).to_be_visible()
    screenshot(page, shots / "ui-overview.png")


def test_queue_lifecycle(page, ui_url, mgmt, pika_connect, cleanup, uid, shots):
    name = cleanup.queue(f"{uid}.q")
    payload = f"hello from the web UI {uuid.uuid4().hex[:8]}"
    ch = pika_connect().channel()

    login(page, ui_url)
    go(page, "queues")
    add = panel(page, "Add a new queue")
    add.locator("select[name=vhost]").select_option("/")
    add.locator("input[name=name]").fill(name)
    add.locator("textarea[name=arguments]").fill('{"x-max-length": 100}')
    add.get_by_role("button", name="Add queue").click()
    ok_message(page, f"Queue {name} added")
    status, body = api_queue(mgmt, name)
    assert status == 200 and body["durable"] is True, (status, body)
    assert body["arguments"] == {"x-max-length": 100}

    # publish through the queue's page (default exchange, routing key = queue name)
    page.locator("input.filter").fill(name)
    page.get_by_role("link", name=name, exact=True).click()
    expect(page.locator("[data-view=queue] h1")).to_contain_text(name)
    pub = panel(page, "Publish message")
    expect(pub.locator("input[name=routing_key]")).to_have_value(name)
    pub.locator("textarea[name=payload]").fill(payload)
    pub.locator("select[name=delivery_mode]").select_option("2")
    pub.get_by_role("button", name="Publish message").click()
    ok_message(page, "Message published")
    assert passive_count(ch, name) == 1
    wait_for(lambda: api_queue(mgmt, name)[1].get("messages") == 1, what="the API to count 1 message")

    # the count in the queue list
    page.click("[data-nav=queues]")
    expect(page.locator("[data-view=queues]")).to_be_visible()
    page.locator("input.filter").fill(name)
    row = page.locator("tr", has=page.get_by_role("link", name=name, exact=True))
    expect(row.locator("[data-col=messages]")).to_have_text("1")

    # get it without consuming it
    row.get_by_role("link", name=name, exact=True).click()
    expect(page.locator("[data-stat=messages] .stat-value")).to_have_text("1")
    get = panel(page, "Get messages")
    expect(get.locator("select[name=ackmode]")).to_have_value("ack_requeue_true")
    get.get_by_role("button", name="Get messages").click()
    msg = page.locator(".message").first
    expect(msg.locator(".payload")).to_have_text(payload)
    expect(msg).to_contain_text("delivery_mode")
    time.sleep(0.5)
    assert passive_count(ch, name) == 1
    status, body = api_queue(mgmt, name)
    assert status == 200 and body["messages"] == 1 and body["messages_ready"] == 1, body
    screenshot(page, shots / "ui-queue.png")

    # purge
    page.locator(".view-head").get_by_role("button", name="Purge").click()
    confirm(page, "Purge")
    ok_message(page, "purged")
    assert passive_count(ch, name) == 0
    wait_for(lambda: api_queue(mgmt, name)[1].get("messages") == 0, what="the API to count 0 messages")

    # delete
    page.locator(".view-head").get_by_role("button", name="Delete").click()
    confirm(page, "Delete")
    page.wait_for_function("() => location.hash === '#/queues'")
    ok_message(page, f"Deleted queue {name}")
    assert api_queue(mgmt, name)[0] == 404


def test_admin_vhost_user_and_permissions(page, ui_url, mgmt, uid):
    vhost, user, password = f"{uid}.vh", f"{uid}.user", f"pw-{uuid.uuid4().hex[:10]}"
    try:
        login(page, ui_url)
        go(page, "admin/vhosts")
        add = panel(page, "Add a virtual host")
        add.locator("input[name=name]").fill(vhost)
        add.locator("input[name=description]").fill("made by the UI test")
        add.get_by_role("button", name="Add virtual host").click()
        ok_message(page, f"Virtual host {vhost} added")
        assert mgmt.get(f"/api/vhosts/{q(vhost)}")[0] == 200
        expect(page.locator(f"#vhost-filter option[value='{vhost}']")).to_have_count(1)

        go(page, "admin/users")
        add = panel(page, "Add a user")
        add.locator("input[name=name]").fill(user)
        add.locator("input[name=password]").fill(password)
        add.get_by_role("button", name="management", exact=True).click()
        expect(add.locator("input[name=tags]")).to_have_value("management")
        add.get_by_role("button", name="Add user").click()
        ok_message(page, f"User {user} added")
        status, body = mgmt.get(f"/api/users/{q(user)}")
        assert status == 200, body
        tags = body["tags"] if isinstance(body["tags"], list) else body["tags"].split(",")
        assert tags == ["management"], body
        assert mgmt.as_user(user, password).get("/api/whoami")[0] == 200

        go(page, "admin/permissions")
        add = panel(page, "Set permissions")
        expect(add.locator(f"select[name=user] option[value='{user}']")).to_have_count(1)
        add.locator("select[name=user]").select_option(user)
        add.locator("select[name=vhost]").select_option(vhost)
        add.locator("input[name=configure]").fill("^ui-")
        add.get_by_role("button", name="Set permission").click()
        ok_message(page, "Permissions of")
        status, body = mgmt.get(f"/api/permissions/{q(vhost)}/{q(user)}")
        assert status == 200 and body["configure"] == "^ui-" and body["read"] == ".*", body

        # the new user can log in; not being an administrator, no Admin tab
        page.click("#logout")
        login(page, ui_url, user, password)
        expect(page.locator("[data-nav=admin]")).to_be_hidden()
        expect(page.locator("[data-stat=queues] .stat-value")).not_to_have_text("–")
        page.click("#logout")

        # delete both through the UI
        login(page, ui_url)
        go(page, "admin/users")
        page.locator("input.filter").fill(user)
        page.locator("tr", has_text=user).get_by_role("button", name="Delete").click()
        confirm(page, "Delete")
        ok_message(page, f"Deleted user {user}")
        assert mgmt.get(f"/api/users/{q(user)}")[0] == 404
        go(page, "admin/vhosts")
        page.locator("input.filter").fill(vhost)
        page.locator("tr", has_text=vhost).get_by_role("button", name="Delete").click()
        confirm(page, "Delete")
        ok_message(page, f"Deleted virtual host {vhost}")
        assert mgmt.get(f"/api/vhosts/{q(vhost)}")[0] == 404
    finally:
        mgmt.delete_user(user, missing_ok=True)
        mgmt.delete_vhost(vhost, missing_ok=True)


def test_close_connection_from_connections_view(page, ui_url, pika_connect, uid):
    import pika

    label = f"{uid}.conn"
    conn = pika_connect(client_properties={"connection_name": label, "product": "interop web UI test"})
    login(page, ui_url)
    go(page, "connections")
    page.locator("input.filter").fill(label)
    row = page.locator("tr", has_text=label)
    expect(row).to_have_count(1)
    row.get_by_role("button", name="Close").click()
    confirm(page, "Close connection")
    ok_message(page, "Connection closed")

    deadline = time.monotonic() + 10
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as info:
        while time.monotonic() < deadline:
            conn.process_data_events(0.1)
    assert info.value.reply_code == 320, info.value
    expect(page.locator("tr", has_text=label)).to_have_count(0)


def test_definitions_export_and_import(page, ui_url, mgmt, cleanup, uid, tmp_path):
    exported_queue = cleanup.queue(f"{uid}.exported")
    imported_queue = cleanup.queue(f"{uid}.imported")
    assert mgmt.put(f"/api/queues/%2F/{q(exported_queue)}", {"durable": True})[0] in (201, 204)

    login(page, ui_url)
    go(page, "definitions")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download definitions").click()
    assert download.value.suggested_filename.endswith(".json")
    defs = json.loads(Path(download.value.path()).read_text())
    for key in ("users", "vhosts", "permissions", "queues", "exchanges", "bindings"):
        assert isinstance(defs.get(key), list), key
    assert any(x["name"] == exported_queue and x["vhost"] == "/" for x in defs["queues"])
    assert any(u["name"] == "guest" for u in defs["users"])

    upload = tmp_path / "defs.json"
    upload.write_text(json.dumps({"queues": [{"name": imported_queue, "vhost": "/", "durable": True,
                                              "auto_delete": False, "arguments": {}}]}))
    page.locator("input[type=file][name=file]").set_input_files(str(upload))
    page.get_by_role("button", name="Upload definitions").click()
    ok_message(page, "imported")
    status, body = api_queue(mgmt, imported_queue)
    assert status == 200 and body["durable"] is True, (status, body)
