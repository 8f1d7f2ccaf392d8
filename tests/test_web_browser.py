"""The web console in a real browser (Debian's chromium, driven by
playwright), against a real circusd with real processes.

One browser for the session, a fresh context (cookies, storage) per test,
tests one at a time. With CIRCUS_SCREENSHOTS=1 the overview and a watcher
page are saved to docs/ for the README.
"""
import http.server
import os
import re
import signal
import threading

import pytest

from support import ROOT, free_port, tools, wait_for
from support.web import USERS, Browserish, users_file

pytestmark = [pytest.mark.slow, pytest.mark.needs("chromium", "playwright", "dejavu-font")]

XSS = "<img src=x onerror=alert(1)>"
TIMEOUT = 15000  # ms, for the browser's own waits

SLEEPERS = """
[circus]
{extra}

[watcher:sleepers]
cmd = sleep 300
numprocesses = 2
graceful_timeout = 2
"""


def crash_handlers():
    """Pids of Chromium's crash handlers (comm is cut at 15 characters)."""
    found = set()
    for name in os.listdir("/proc"):
        try:
            with open("/proc/%s/comm" % name) as handle:
                if handle.read().strip() == "chrome_crashpad":
                    found.add(int(name))
        except (OSError, ValueError):
            pass
    return found


@pytest.fixture(scope="session")
def browser():
    from playwright import sync_api  # the needs marker checked it is here
    before = crash_handlers()
    try:
        with sync_api.sync_playwright() as playwright:
            # Debian's chromium: `playwright install` would download a browser
            browser = playwright.chromium.launch(executable_path=tools.path("chromium"))
            yield browser
            browser.close()
    finally:
        # Chromium's crash handler detaches from the browser and may outlive
        # it (seen after CI runs, with or without --disable-breakpad): the
        # ones this session started are stopped with it
        for pid in crash_handlers() - before:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT)
    dialogs = []

    def on_page(page):
        # an alert() from injected markup would show up here
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    context.on("page", on_page)
    context.dialogs = dialogs
    yield context
    context.close()


def expect():
    from playwright.sync_api import expect as playwright_expect
    playwright_expect.set_options(timeout=TIMEOUT)
    return playwright_expect


def start(circusd, web_console, tmp_path, config=None, args=()):
    daemon = circusd(config or SLEEPERS.format(extra=""))
    console = web_console(daemon, args=["--auth-file", users_file(tmp_path / "users")]
                          + list(args))
    eid = wait_for(lambda: _endpoint_id(console), timeout=20, message="the console connected")
    return daemon, console, "http://127.0.0.1:%d" % console.port, eid


def _endpoint_id(console):
    reply = Browserish(console.port).get("/api/endpoints", auth=("victor", "victor-pw"))
    found = reply.json()["endpoints"] if reply.status == 200 else []
    return found and found[0]["state"] == "connected" and found[0]["watchers"] and found[0]["id"]


def login(page, url, user):
    page.goto(url + "/")
    page.fill('input[name="user"]', user)
    page.fill('input[name="password"]', USERS[user][0])
    page.click('button[type="submit"]')
    expect()(page.locator(".who .user")).to_have_text(user)


def live(page):
    """Wait until the page's stream has delivered its snapshot."""
    expect()(page.locator("body")).to_have_attribute("data-snapshots", re.compile(r"[1-9]"))


def pids(daemon, name="sleepers"):
    return daemon.call("list", name=name)["pids"]


def row(page, name):
    return page.locator("#watchers tbody tr").filter(
        has=page.locator("td.name a", has_text=re.compile("^%s$" % re.escape(name))))


# --- the tests the issue lists ------------------------------------------------

def test_login_and_logout(circusd, web_console, tmp_path, context):
    daemon, console, url, eid = start(circusd, web_console, tmp_path)
    page = context.new_page()
    page.goto(url + "/e/%s/" % eid)
    expect()(page).to_have_url(url + "/login")
    page.fill('input[name="user"]', "alice")
    page.fill('input[name="password"]', "not it")
    page.click('button[type="submit"]')
    expect()(page.locator("p.flash.error")).to_contain_text("Wrong user name or password")
    login(page, url, "alice")
    expect()(page).to_have_url(url + "/e/%s/" % eid)
    expect()(row(page, "sleepers")).to_be_visible()
    page.click("text=log out")
    expect()(page).to_have_url(url + "/login")
    page.goto(url + "/e/%s/" % eid)
    expect()(page).to_have_url(url + "/login")


def test_viewer_sees_no_action_and_a_forged_post_is_refused(circusd, web_console, tmp_path,
                                                            context):
    daemon, console, url, eid = start(circusd, web_console, tmp_path)
    before = pids(daemon)
    page = context.new_page()
    login(page, url, "victor")
    live(page)
    assert page.locator("button").filter(has_text=re.compile("active|stopped")).count() == 0
    assert page.locator("#watchers form").count() == 0
    page.goto(url + "/e/%s/watcher?name=sleepers" % eid)
    live(page)
    assert page.locator("form[method=post] >> visible=true").count() == 1  # log out only
    assert page.get_by_role("button", name="Kill").count() == 0
    token = page.locator("body").get_attribute("data-csrf")
    for action in ("stop", "kill", "incr"):
        response = page.request.post(url + "/e/%s/action" % eid, form={
            "csrf_token": token, "action": action, "name": "sleepers", "pid": str(before[0])})
        assert response.status == 403
    assert daemon.call("status", name="sleepers")["status"] == "active"
    assert pids(daemon) == before


def test_stop_and_start_from_the_overview(circusd, web_console, tmp_path, context):
    daemon, console, url, eid = start(circusd, web_console, tmp_path)
    page = context.new_page()
    login(page, url, "olga")
    live(page)
    button = row(page, "sleepers").locator("td.toggle button")
    expect()(button).to_have_text("active")
    button.click()
    expect()(button).to_have_text("stopped")
    assert daemon.call("status", name="sleepers")["status"] == "stopped"
    expect()(row(page, "sleepers").locator('[data-field="ready"]')).to_have_text("0")
    button.click()
    expect()(button).to_have_text("active")
    wait_for(lambda: len(pids(daemon)) == 2, message="the sleepers back")
    expect()(row(page, "sleepers").locator('[data-field="ready"]')).to_have_text("2")


def test_kill_a_process_and_see_its_replacement_without_reload(circusd, web_console, tmp_path,
                                                               context):
    daemon, console, url, eid = start(circusd, web_console, tmp_path)
    page = context.new_page()
    login(page, url, "olga")
    page.goto(url + "/e/%s/watcher?name=sleepers" % eid)
    live(page)
    page.evaluate("window.__sameDocument = true")
    victim, survivor = pids(daemon)
    rows = page.locator("#processes tbody tr[data-pid]")
    expect()(rows).to_have_count(2)
    rows.filter(has_text=str(victim)).get_by_role("button", name="Kill").click()
    dialog = page.locator("#confirm-dialog")
    expect()(dialog).to_be_visible()
    expect()(dialog).to_contain_text("Kill process %d of sleepers?" % victim)
    page.click("#confirm-ok")
    expect()(page.locator('#processes tr[data-pid="%d"]' % victim)).to_have_count(0)
    replacement = wait_for(lambda: [p for p in pids(daemon) if p not in (victim, survivor)],
                           message="circusd's replacement")[0]
    expect()(page.locator('#processes tr[data-pid="%d"]' % replacement)).to_be_visible()
    expect()(rows).to_have_count(2)
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    expect()(page.locator("#timeline")).to_contain_text("watcher.sleepers.reap")


def test_incr_and_decr(circusd, web_console, tmp_path, context):
    daemon, console, url, eid = start(circusd, web_console, tmp_path)
    page = context.new_page()
    login(page, url, "olga")
    page.goto(url + "/e/%s/watcher?name=sleepers" % eid)
    live(page)
    rows = page.locator("#processes tbody tr[data-pid]")
    page.get_by_role("button", name="+1").click()
    expect()(rows).to_have_count(3)
    expect()(page.locator("#w-numprocesses")).to_have_text("3")
    assert len(pids(daemon)) == 3
    page.get_by_role("button", name="−1").click()
    page.get_by_role("button", name="−1").click()
    expect()(rows).to_have_count(1)
    expect()(page.locator("#w-numprocesses")).to_have_text("1")
    wait_for(lambda: len(pids(daemon)) == 1, message="1 sleeper")
    assert page.locator("#processes tbody tr[data-pid]").get_attribute("data-pid") == str(pids(daemon)[0])


def test_add_a_watcher_and_see_it_run(circusd, web_console, tmp_path, context):
    daemon, console, url, eid = start(circusd, web_console, tmp_path)
    page = context.new_page()
    login(page, url, "alice")
    page.click("text=Add watcher")
    page.fill('input[name="name"]', "napper")
    page.fill('input[name="cmd"]', "sleep")
    page.fill('input[name="args"]', "301")
    page.fill('input[name="numprocesses"]', "3")
    page.click("text=Add and start")
    expect()(page).to_have_url(re.compile(r"/watcher\?name=napper$"))
    live(page)
    rows = page.locator("#processes tbody tr[data-pid]")
    expect()(rows).to_have_count(3)
    running = wait_for(lambda: len(pids(daemon, "napper")) == 3 and pids(daemon, "napper"),
                       message="3 nappers")
    shown = sorted(int(rows.nth(i).get_attribute("data-pid")) for i in range(3))
    assert shown == sorted(running)
    expect()(page.locator("#w-status")).to_have_text("active")


# busy: all the CPU it gets, and a request log line now and then
BUSY = r"""
import random, sys, time
paths = ["/", "/api/items", "/api/items/42", "/login", "/static/app.css"]
next_line = 0
while True:
    if time.monotonic() >= next_line:
        ms = random.uniform(0.8, 40)
        print('127.0.0.1 "GET %s HTTP/1.1" 200 %d %.1fms' % (random.choice(paths),
              random.randint(200, 9000), ms), flush=True)
        if random.random() < 0.1:
            print("WARNING slow query: %.0f ms" % (ms * 20), file=sys.stderr, flush=True)
        next_line = time.monotonic() + 0.3
"""


def test_a_chart_receives_points(circusd, web_console, tmp_path, context):
    stats = "stats_endpoint = tcp://127.0.0.1:%d" % free_port()
    (tmp_path / "busy.py").write_text(BUSY)
    config = SLEEPERS.format(extra=stats) + """
[watcher:busy]
cmd = python3 %s
numprocesses = 1
""" % (tmp_path / "busy.py")
    daemon, console, url, eid = start(circusd, web_console, tmp_path, config)
    page = context.new_page()
    login(page, url, "olga")
    live(page)
    chart = row(page, "busy").locator('[data-chart="cpu"]')
    expect()(chart).to_have_attribute("data-points", re.compile(r"^[3-9]|\d\d"))
    first = int(chart.get_attribute("data-points"))
    expect()(chart).not_to_have_attribute("data-points", str(first))
    assert chart.locator("canvas").count() == 1
    expect()(row(page, "busy").locator('[data-field="cpu"]')).not_to_have_text("-")
    expect()(page.locator("#circus-procs")).to_contain_text("circusd-stats")
    expect()(page.locator("#circus-procs")).to_contain_text("circusd")
    if os.environ.get("CIRCUS_SCREENSHOTS") == "1":
        os.makedirs(os.path.join(ROOT, "docs"), exist_ok=True)
        page.screenshot(path=os.path.join(ROOT, "docs", "console-overview.png"))
    page.goto(url + "/e/%s/watcher?name=busy" % eid)
    live(page)
    box = page.locator('.chart-box[data-chart="cpu"]')
    expect()(box).to_have_attribute("data-points", re.compile(r"^[3-9]|\d\d"))
    expect()(page.locator('#processes [data-field="cpu"]')).not_to_have_text("-")
    if os.environ.get("CIRCUS_SCREENSHOTS") == "1":
        expect()(page.locator("#log li.line").nth(5)).to_be_visible()  # a log worth showing
        # from the top to the end of the log tail
        bottom = page.locator("section.log").bounding_box()
        page.screenshot(path=os.path.join(ROOT, "docs", "console-watcher.png"), full_page=True,
                        clip={"x": 0, "y": 0, "width": 1280,
                              "height": bottom["y"] + bottom["height"] + 16})


def test_posts_without_token_or_from_another_site_are_refused(circusd, web_console, tmp_path,
                                                              context):
    daemon, console, url, eid = start(circusd, web_console, tmp_path)
    page = context.new_page()
    login(page, url, "alice")
    live(page)
    token = page.locator("body").get_attribute("data-csrf")
    # from the console's own page, but without the token
    status = page.evaluate("""async (url) => {
        const body = new URLSearchParams({action: "stop", name: "sleepers"});
        return (await fetch(url, {method: "POST", body})).status; }""",
                           url + "/e/%s/action" % eid)
    assert status == 403
    # another site (another port of the same host: same-site, so the
    # SameSite=Strict cookie goes along) posting a form that even has the token
    attacker = _serve_html("""<!doctype html><form id=f method=post action="%s/e/%s/action">
        <input name=csrf_token value="%s"><input name=action value=stop>
        <input name=name value=sleepers></form>
        <script>document.getElementById("f").submit()</script>""" % (url, eid, token))
    try:
        with page.expect_response(url + "/e/%s/action" % eid) as answer:
            page.goto(attacker.url)
        assert answer.value.status == 403
    finally:
        attacker.stop()
    assert daemon.call("status", name="sleepers")["status"] == "active"
    assert b"cross-site request" in console.read_log() or b"cross-origin" in console.read_log()


def test_markup_in_names_and_commands_is_shown_as_text(circusd, web_console, tmp_path, context):
    daemon, console, url, eid = start(circusd, web_console, tmp_path)
    # sh -c 'sleep 300' NAME: the markup is the process's $0, and in its cmdline
    # (stop_children: the shell's sleep leaves with it at the end)
    reply = daemon.call("add", name=XSS, cmd="sh", args=["-c", "sleep 300", XSS], start=True,
                        options={"stop_children": True})
    assert reply["status"] == "ok", reply
    page = context.new_page()
    login(page, url, "alice")
    live(page)
    cell = row(page, XSS)
    expect()(cell).to_be_visible()
    expect()(cell.locator("td.cmd")).to_contain_text(XSS)
    expect()(cell.locator("td.toggle button")).to_have_text("active")
    page.goto(url + "/e/%s/watcher?name=%s" % (eid, XSS.replace(" ", "%20")))
    live(page)
    expect()(page.locator(".wname")).to_have_text(XSS)
    expect()(page.locator("#processes tbody tr[data-pid]")).to_have_count(1)
    # a change arriving live goes through the same text-only path
    assert daemon.call("incr", name=XSS)["status"] == "ok"
    expect()(page.locator("#processes tbody tr[data-pid]")).to_have_count(2)
    expect()(page.locator("#timeline")).to_contain_text("watcher.%s.spawn" % XSS)
    page.goto(url + "/e/%s/events" % eid)
    expect()(page.locator("#timeline")).to_contain_text(XSS)
    assert page.locator("img").count() == 0
    assert context.dialogs == []


TALKER = r"""
import signal, sys, time
said = 0
def more(signum, frame):
    global said
    said += 1
    print("more %d \x1b[1;31m<img src=x onerror=alert(1)>\x1b[0m" % said, flush=True)
signal.signal(signal.SIGUSR1, more)
print("started \x1b[32m<img src=x onerror=alert(1)>\x1b[0m", flush=True)
print("\x1b]0;a title\x07warned on stderr", file=sys.stderr, flush=True)
while True:
    time.sleep(1)
"""


def start_talker(circusd, web_console, tmp_path):
    (tmp_path / "talker.py").write_text(TALKER)
    config = SLEEPERS.format(extra="") + "\n[watcher:talker]\ncmd = python3 %s\n" % (
        tmp_path / "talker.py")
    daemon, console, url, eid = start(circusd, web_console, tmp_path, config)
    wait_for(lambda: any(o["stream"] == "stderr" for o in
                         daemon.call("output", name="talker")["output"]),
             message="the talker's first lines")
    return daemon, console, url, eid


def test_the_log_tail_shows_a_line_the_process_just_printed(circusd, web_console, tmp_path,
                                                           context):
    daemon, console, url, eid = start_talker(circusd, web_console, tmp_path)
    page = context.new_page()
    login(page, url, "victor")  # a viewer reads the logs (unless --logs-role says not)
    page.goto(url + "/e/%s/watcher?name=talker" % eid)
    live(page)
    page.evaluate("window.__sameDocument = true")
    log = page.locator("#log")
    expect()(log).to_contain_text("started " + XSS)
    expect()(page.locator("#log-mode")).to_contain_text("Following live")
    expect()(log.locator("li.line")).to_have_count(2)
    assert daemon.call("signal", name="talker", signum="USR1")["status"] == "ok"
    last = log.locator("li.line").last
    expect()(last.locator(".text")).to_have_text("more 1 " + XSS)
    expect()(last.locator(".stream")).to_have_text("stdout")
    assert daemon.call("signal", name="talker", signum="USR1")["status"] == "ok"
    expect()(log.locator("li.line").last.locator(".text")).to_have_text("more 2 " + XSS)
    expect()(log.locator("li.line")).to_have_count(4)  # each line once
    assert page.evaluate("window.__sameDocument") is True  # no reload happened


def test_markup_and_escape_codes_in_output_are_shown_as_text(circusd, web_console, tmp_path,
                                                             context, browser):
    daemon, console, url, eid = start_talker(circusd, web_console, tmp_path)
    page = context.new_page()
    login(page, url, "alice")
    page.goto(url + "/e/%s/watcher?name=talker" % eid)
    live(page)
    assert daemon.call("signal", name="talker", signum="USR1")["status"] == "ok"
    texts = page.locator("#log li.line .text")
    expect()(texts).to_have_text(["started " + XSS, "warned on stderr", "more 1 " + XSS])
    content = page.locator("#log").inner_html()
    assert "\x1b" not in content and "[1;31m" not in content and "a title" not in content
    assert "&lt;img" in content
    assert page.locator("img").count() == 0
    assert context.dialogs == []
    # without JavaScript: the same lines, in the page as served (from the
    # tail the first page keeps running)
    plain = browser.new_context(java_script_enabled=False)
    try:
        cookies = context.cookies()
        plain.add_cookies(cookies)
        static = plain.new_page()
        static.goto(url + "/e/%s/watcher?name=talker" % eid)
        expect()(static.locator("#log li.line .text")).to_have_text(
            ["started " + XSS, "warned on stderr", "more 1 " + XSS])
        expect()(static.locator("#log-mode")).to_contain_text("reload the page")
        assert static.locator("img").count() == 0
    finally:
        plain.close()


# --- helpers ------------------------------------------------------------------

class _HTMLServer:
    def __init__(self, html):
        body = html.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def _serve_html(html):
    return _HTMLServer(html)


@pytest.mark.needs("nginx", "meinheld")
def test_nginx_recipe_serves_the_console_under_its_prefix(circusd, tmp_path, context):
    from support.nginx import recipe_nginx
    with recipe_nginx(circusd, tmp_path) as recipe:
        page = context.new_page()
        url = "http://127.0.0.1:%d/console" % recipe.listen_port
        page.goto(url + "/")
        expect()(page).to_have_url(url + "/login")
        page.fill('input[name="user"]', "admin")
        page.fill('input[name="password"]', recipe.password)
        page.click('button[type="submit"]')
        expect()(page.locator(".who .user")).to_have_text("admin")
        assert page.url.startswith(url + "/e/")
        live(page)  # the event stream crosses nginx unbuffered
        expect()(row(page, "web")).to_be_visible()
        row(page, "web").locator("td.name a").click()
        expect()(page).to_have_url(url + "/e/%s/watcher?name=web" % page.url.split("/")[-2])
        live(page)
        expect()(page.locator("#processes tbody tr[data-pid]")).to_have_count(2)
        assert recipe.daemon.call("incr", name="web")["status"] == "ok"
        expect()(page.locator("#processes tbody tr[data-pid]")).to_have_count(3)


def test_httpd_option_brings_the_console_up(circusd, tmp_path, context):
    port = free_port()
    daemon = circusd(SLEEPERS.format(extra="httpd = True\nhttpd_port = %d\n"
                                           "stats_endpoint = tcp://127.0.0.1:%d"
                                           % (port, free_port())))
    page = context.new_page()
    url = "http://localhost:%d" % port
    wait_for(lambda: _answers(port), timeout=30, message="circushttpd on port %d" % port)
    page.goto(url + "/")
    live(page)
    expect()(row(page, "sleepers")).to_be_visible()
    expect()(row(page, "circushttpd")).to_be_visible()
    expect()(page.locator("#circus-procs")).to_contain_text("circushttpd")
    assert "circushttpd" in daemon.call("list")["watchers"]


def _answers(port):
    try:
        return Browserish(port, host="localhost").get("/").status in (200, 303)
    except OSError:
        return False

