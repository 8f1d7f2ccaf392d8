"""circushttpd over real HTTP, against a real circusd: authentication,
CSRF, roles, headers, the failed-login limit, the JSON API, the live
stream and its resume, and what it refuses to start with."""
import http.client
import json
import re
import subprocess
import time

import pytest

from support import PYTHON, ROOT, Circusd, free_port, wait_for
from support.web import Browserish, csrf_of, users_file

SLEEPERS = """
[circus]
{extra}

[watcher:sleepers]
cmd = sleep 300
numprocesses = 2
graceful_timeout = 2
"""


def pids(daemon, name="sleepers"):
    return daemon.call("list", name=name)["pids"]


def connected(client, auth=None):
    """The console's id of its first circusd, once it knows the watchers."""
    def ready():
        reply = client.get("/api/endpoints", auth=auth)
        if reply.status != 200:
            return None
        found = reply.json()["endpoints"]
        return found and found[0]["state"] == "connected" and found[0]["watchers"] \
            and found[0]["id"]
    return wait_for(ready, timeout=20, message="the console connected to circusd")


@pytest.fixture
def setup(circusd, web_console, tmp_path):
    """circusd with 2 sleepers, circushttpd with users; yields (daemon, console, eid)."""
    daemon = circusd(SLEEPERS.format(extra=""))
    console = web_console(daemon, args=["--auth-file", users_file(tmp_path / "users")])
    eid = connected(Browserish(console.port), auth=("victor", "victor-pw"))
    return daemon, console, eid


def logged_in(console, user):
    client = Browserish(console.port)
    response = client.login(user, "%s-pw" % user)
    assert response.status == 303, response.text
    return client


# --- authentication -----------------------------------------------------------

def test_login_logout_and_session_cookie(setup):
    daemon, console, eid = setup
    client = Browserish(console.port)
    response = client.get("/e/%s/" % eid)
    assert response.status == 303 and response.header("Location") == "/login"
    assert client.login("alice", "wrong").status == 401
    response = client.login("alice", "alice-pw")
    assert response.status == 303
    cookie = [c for c in response.all("Set-Cookie") if c.startswith("circus_session=")][0]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http, no trusted proxy saying https
    page = client.get("/e/%s/" % eid)
    assert page.status == 200 and "alice" in page.text and "sleepers" in page.text
    stolen = dict(client.cookies)
    assert client.post("/logout", form={"csrf_token": csrf_of(page)}).status == 303
    assert client.get("/e/%s/" % eid).status == 303
    # the old cookie was revoked, not just forgotten by this browser
    replay = Browserish(console.port)
    replay.cookies = stolen
    assert replay.get("/e/%s/" % eid).status == 303
    assert b"login: alice (admin)" in console.read_log()


def test_failed_logins_are_rate_limited(setup):
    daemon, console, eid = setup
    client = Browserish(console.port)
    for _ in range(5):
        assert client.login("olga", "wrong").status == 401
    refused = client.login("olga", "olga-pw")  # even the right password, for now
    assert refused.status == 429 and int(refused.header("Retry-After")) > 0
    # basic auth counts against the same limit
    assert client.get("/api/whoami", auth=("olga", "olga-pw")).status == 429
    # the address is limited too: guessing other users' passwords from it is
    assert Browserish(console.port).login("alice", "alice-pw").status == 429
    assert b"too many failures" in console.read_log()


# --- authorisation and CSRF ---------------------------------------------------

def test_viewer_sees_no_actions_and_a_forged_post_is_refused(setup):
    daemon, console, eid = setup
    before = pids(daemon)
    viewer = logged_in(console, "victor")
    page = viewer.get("/e/%s/" % eid)
    assert page.status == 200 and 'name="action"' not in page.text
    page = viewer.get("/e/%s/watcher?name=sleepers" % eid)
    assert page.status == 200 and "Kill" not in page.text and 'name="action"' not in page.text
    token = csrf_of(page)
    for action in ("stop", "incr", "kill", "rm"):
        response = viewer.post("/e/%s/action" % eid, form={
            "csrf_token": token, "action": action, "name": "sleepers", "pid": before[0]})
        assert response.status == 403, (action, response.status)
    response = viewer.post("/api/e/%s/action" % eid, json_body={"action": "incr",
                                                               "name": "sleepers"},
                           headers={"X-CSRF-Token": token})
    assert response.status == 403
    assert daemon.call("status", name="sleepers")["status"] == "active"
    assert pids(daemon) == before
    assert b"refused: POST" in console.read_log()


def test_operator_cannot_add_or_remove_watchers(setup):
    daemon, console, eid = setup
    operator = logged_in(console, "olga")
    token = csrf_of(operator.get("/e/%s/" % eid))
    assert operator.post("/e/%s/action" % eid, form={
        "csrf_token": token, "action": "add", "name": "evil", "cmd": "sleep 1"}).status == 403
    assert operator.post("/e/%s/action" % eid, form={
        "csrf_token": token, "action": "rm", "name": "sleepers"}).status == 403
    assert operator.post("/e/%s/action" % eid, form={
        "csrf_token": token, "action": "reloadconfig"}).status == 403
    assert "evil" not in daemon.call("list")["watchers"]
    assert "sleepers" in daemon.call("list")["watchers"]


def test_posts_without_token_or_from_another_origin_change_nothing(setup):
    daemon, console, eid = setup
    admin = logged_in(console, "alice")
    token = csrf_of(admin.get("/e/%s/" % eid))
    origin = "http://127.0.0.1:%d" % console.port
    form = {"action": "stop", "name": "sleepers"}
    refused = [
        admin.post("/e/%s/action" % eid, form=form),
        admin.post("/e/%s/action" % eid, form=dict(form, csrf_token="forged")),
        admin.post("/e/%s/action" % eid, form=dict(form, csrf_token=token),
                   headers={"Origin": "http://evil.example"}),
        admin.post("/e/%s/action" % eid, form=dict(form, csrf_token=token),
                   headers={"Origin": "null"}),
        admin.post("/e/%s/action" % eid, form=dict(form, csrf_token=token),
                   headers={"Sec-Fetch-Site": "cross-site"}),
        admin.post("/e/%s/action" % eid, form=dict(form, csrf_token=token),
                   headers={"Sec-Fetch-Site": "same-site"}),
    ]
    assert [r.status for r in refused] == [403] * len(refused)
    assert daemon.call("status", name="sleepers")["status"] == "active"
    # GET never changes anything
    assert admin.get("/e/%s/action?action=stop&name=sleepers" % eid).status == 405
    assert admin.get("/e/%s/confirm?action=kill&name=sleepers&pid=1" % eid).status == 200
    assert daemon.call("status", name="sleepers")["status"] == "active"
    # the same request, same-origin and with the token, works
    done = admin.post("/e/%s/action" % eid, form=dict(form, csrf_token=token),
                      headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"})
    assert done.status == 303
    wait_for(lambda: daemon.call("status", name="sleepers")["status"] == "stopped",
             message="the watcher stopped")
    page = admin.get("/e/%s/" % eid)
    assert "stop sleepers: ok" in page.text  # the one-time message


def test_every_action_is_audited_by_circusd(setup):
    from support.events import EventLog
    daemon, console, eid = setup
    operator = logged_in(console, "olga")
    token = csrf_of(operator.get("/e/%s/" % eid))
    with EventLog(daemon, ["audit.", "watcher.sleepers.updated"]).sync("sleepers") as events:
        response = operator.post("/e/%s/action" % eid, form={
            "csrf_token": token, "action": "incr", "name": "sleepers", "nb": "2"})
        assert response.status == 303
        _, event = events.topic("audit.incr")
    assert event["user"] == "olga" and event["role"] == "operator"
    assert event["target"] == "sleepers" and event["status"] == "ok"
    assert event["addr"] == "127.0.0.1" and event["via"] == "circushttpd"
    assert event["properties"] == {"nb": 2}
    wait_for(lambda: len(pids(daemon)) == 4, message="4 sleepers")
    assert b"audit: olga (operator) from 127.0.0.1 via circushttpd: incr sleepers: ok" \
        in daemon.read_log()


# --- headers and errors -------------------------------------------------------

def check_headers(response):
    csp = response.header("Content-Security-Policy")
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.header("X-Content-Type-Options") == "nosniff"
    assert response.header("Referrer-Policy") == "same-origin"
    assert response.header("X-Frame-Options") == "DENY"


def test_security_headers_on_every_response(setup):
    daemon, console, eid = setup
    client = logged_in(console, "victor")
    for path in ("/login", "/e/%s/" % eid, "/e/%s/watcher?name=sleepers" % eid,
                 "/e/%s/watcher?name=nobody" % eid, "/static/console.js", "/nothing",
                 "/api/e/%s/watchers" % eid, "/e/zzz/"):
        response = client.get(path)
        check_headers(response)
        assert b"Traceback" not in response.body
    assert client.get("/static/console.js").header("Content-Type").startswith("text/javascript")
    assert client.get("/static/../app.py").status == 404
    page = client.get("/e/%s/" % eid)
    assert page.header("Cache-Control") == "no-store"
    # no inline script anywhere: every <script> has a src
    assert re.findall(r"<script(?![^>]*\bsrc=)", page.text) == []


def test_an_unexpected_error_is_a_500_without_details(monkeypatch):
    from circus.web import pages
    from circus.web.app import make_app

    def broken(*args, **kw):
        raise RuntimeError("secret detail")
    monkeypatch.setattr(pages, "overview", broken)
    import circus.web.app as appmod
    monkeypatch.setattr(appmod, "_COMPILED", [
        (m, p, broken if h is pages.home else h, r) for m, p, h, r in appmod._COMPILED])
    app = make_app()
    try:
        seen = {}

        def start_response(status, headers):
            seen["status"], seen["headers"] = status, dict(headers)
        import io
        body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": "127.0.0.1",
                             "HTTP_HOST": "127.0.0.1:8080", "wsgi.input": io.BytesIO(),
                             "wsgi.url_scheme": "http"}, start_response))
        assert seen["status"].startswith("500")
        assert b"secret detail" not in body and b"Traceback" not in body
        assert b"reference" in body
        assert "Content-Security-Policy" in seen["headers"]
    finally:
        app.close()


# --- the JSON API -------------------------------------------------------------

def test_api_with_basic_auth(setup):
    daemon, console, eid = setup
    client = Browserish(console.port)
    response = client.get("/api/e/%s/watchers" % eid)
    assert response.status == 401 and "Basic" in response.header("WWW-Authenticate")
    assert client.get("/api/whoami", auth=("olga", "nope")).status == 401
    listing = client.get("/api/e/%s/watchers" % eid, auth=("victor", "victor-pw")).json()
    assert [w["name"] for w in listing["watchers"]] == ["sleepers"]
    detail = client.get("/api/e/%s/watcher?name=sleepers" % eid,
                        auth=("victor", "victor-pw")).json()
    assert sorted(p["pid"] for p in detail["processes"]) == sorted(pids(daemon))
    assert detail["options"]["cmd"] == "sleep 300"
    # viewer: read only
    assert client.post("/api/e/%s/action" % eid, auth=("victor", "victor-pw"),
                       json_body={"action": "incr", "name": "sleepers"}).status == 403
    # a form body is what a cross-site page could send: refused with basic auth
    assert client.post("/api/e/%s/action" % eid, auth=("olga", "olga-pw"),
                       form={"action": "incr", "name": "sleepers"}).status == 403
    assert len(pids(daemon)) == 2
    response = client.post("/api/e/%s/action" % eid, auth=("olga", "olga-pw"),
                           json_body={"action": "incr", "name": "sleepers"})
    assert response.status == 200 and response.json()["ok"]
    assert response.json()["reply"]["numprocesses"] == 3
    wait_for(lambda: len(pids(daemon)) == 3, message="3 sleepers")
    bad = client.post("/api/e/%s/action" % eid, auth=("olga", "olga-pw"),
                      json_body={"action": "incr", "name": "sleepers", "nb": "lots"})
    assert bad.status == 400 and "whole number" in bad.json()["error"]
    missing = client.post("/api/e/%s/action" % eid, auth=("olga", "olga-pw"),
                          json_body={"action": "incr", "name": "nobody"})
    assert missing.status == 409 and not missing.json()["ok"]


def test_session_api_needs_the_csrf_header(setup):
    daemon, console, eid = setup
    operator = logged_in(console, "olga")
    who = operator.get("/api/whoami").json()
    assert who["user"] == "olga" and who["role"] == "operator"
    body = {"action": "decr", "name": "sleepers"}
    assert operator.post("/api/e/%s/action" % eid, json_body=body).status == 403
    assert len(pids(daemon)) == 2
    response = operator.post("/api/e/%s/action" % eid, json_body=body,
                             headers={"X-CSRF-Token": who["csrf_token"]})
    assert response.status == 200
    wait_for(lambda: len(pids(daemon)) == 1, message="1 sleeper")


# --- the live stream ----------------------------------------------------------

class Stream:
    def __init__(self, port, path, headers=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.conn.request("GET", path, headers=headers or {})
        self.response = self.conn.getresponse()

    def events(self, count, timeout=10):
        """The next `count` events: (name, id, data)."""
        found = []
        deadline = time.monotonic() + timeout
        name = event_id = data = None
        while len(found) < count:
            assert time.monotonic() < deadline, found
            line = self.response.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif line == "" and name is not None:
                found.append((name, event_id, data))
                name = event_id = data = None
        return found

    def until(self, predicate, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no matching event"
            event = self.events(1, remaining)[0]
            if predicate(*event):
                return event

    def close(self):
        self.response.close()  # the socket closes only once its file is closed too
        self.conn.close()


def test_stream_snapshot_changes_and_resume(setup):
    daemon, console, eid = setup
    viewer = logged_in(console, "victor")
    cookie = "; ".join("%s=%s" % kv for kv in viewer.cookies.items())
    path = "/e/%s/stream?view=watcher&name=sleepers" % eid
    stream = Stream(console.port, path, {"Cookie": cookie})
    assert stream.response.status == 200
    assert stream.response.getheader("Content-Type").startswith("text/event-stream")
    name, first_id, snapshot = stream.events(1)[0]
    assert name == "snapshot" and first_id == snapshot["id"]
    assert sorted(p["pid"] for p in snapshot["processes"]) == sorted(pids(daemon))
    stream.close()

    # while nobody listens, a process is killed and replaced
    victim = pids(daemon)[0]
    assert daemon.call("kill", name="sleepers", pid=victim)["status"] == "ok"
    wait_for(lambda: victim not in pids(daemon) and len(pids(daemon)) == 2,
             message="the replacement")
    replacement = [p for p in pids(daemon) if p != victim][-1]

    resumed = Stream(console.port, path, {"Cookie": cookie, "Last-Event-ID": first_id})
    try:
        seen = resumed.until(lambda n, i, d: n == "process" and d["pid"] == victim
                             and d["state"] == "gone")
        assert seen[1] is not None  # replayed items carry their id
        resumed.until(lambda n, i, d: n == "process" and d["pid"] == replacement)
    finally:
        resumed.close()
    # an id the console cannot resume from gets a fresh snapshot
    fresh = Stream(console.port, path, {"Cookie": cookie, "Last-Event-ID": "0000-1"})
    try:
        assert fresh.events(1)[0][0] == "snapshot"
    finally:
        fresh.close()
    assert Stream(console.port, path).response.status == 303  # no session: no stream


def test_streams_are_bounded(circusd, web_console):
    daemon = circusd(SLEEPERS.format(extra=""))
    console = web_console(daemon, args=["--max-streams", "1"])
    client = Browserish(console.port)
    eid = connected(client)
    first = Stream(console.port, "/e/%s/stream?view=overview" % eid)
    try:
        assert first.events(1)[0][0] == "snapshot"
        second = Stream(console.port, "/e/%s/stream?view=overview" % eid)
        assert second.response.status == 503
        assert second.response.getheader("Retry-After") == "10"
        second.close()
    finally:
        first.close()
    # the slot comes back once the browser has gone
    def reopened():
        stream = Stream(console.port, "/e/%s/stream?view=events" % eid)
        status = stream.response.status
        stream.close()
        return status == 200
    wait_for(reopened, timeout=10, message="the stream slot to be free again")


# --- safe defaults ------------------------------------------------------------

def run_httpd(args, timeout=20):
    return subprocess.run([PYTHON, "-m", "circus.web"] + args, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout,
                          env={"PYTHONPATH": ROOT, "PATH": "/usr/bin:/bin"})


def test_refuses_to_start_unsafely(tmp_path):
    result = run_httpd(["--host", "0.0.0.0", "--port", str(free_port())])
    assert result.returncode == 2 and "without authentication" in result.stdout
    result = run_httpd(["--backend", "meinheld"])
    assert result.returncode == 2 and "meinheld" in result.stdout
    assert "Server-Sent" in result.stdout
    bad = tmp_path / "users"
    bad.write_text("admin:$apr1$xyz$abc\n")
    result = run_httpd(["--auth-file", str(bad)])
    assert result.returncode == 2 and "line 1" in result.stdout and "htpasswd -B" in result.stdout


def test_anonymous_console_only_answers_to_this_machine(circusd, web_console):
    daemon = circusd(SLEEPERS.format(extra=""))
    console = web_console(daemon)
    client = Browserish(console.port)
    eid = connected(client)
    page = client.get("/e/%s/" % eid)
    assert page.status == 200 and "anonymous" in page.text
    rebinding = client.get("/e/%s/" % eid, headers={"Host": "evil.example:%d" % console.port})
    assert rebinding.status == 403
    assert client.get("/e/%s/" % eid, headers={"Host": "localhost:%d" % console.port}).status \
        == 200
    # anonymous POSTs still need the page's token
    assert client.post("/e/%s/action" % eid, form={"action": "stop",
                                                   "name": "sleepers"}).status == 403
    assert daemon.call("status", name="sleepers")["status"] == "active"


def test_url_prefix_and_trusted_forwarded_headers(circusd, web_console, tmp_path):
    daemon = circusd(SLEEPERS.format(extra=""))
    console = web_console(daemon, args=["--url-prefix", "/console", "--trust-forwarded",
                                        "--auth-file", users_file(tmp_path / "users")])
    client = Browserish(console.port)
    assert client.get("/").header("Location") == "/console/"
    prefixed = Browserish(console.port, "/console")
    eid = connected(prefixed, auth=("victor", "victor-pw"))
    assert prefixed.get("/e/%s/" % eid).header("Location") == "/console/login"
    page = prefixed.get("/login")
    assert 'action="/console/login"' in page.text and '/console/static/console.js' in page.text
    token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)
    response = prefixed.post("/login", form={"user": "alice", "password": "alice-pw",
                                             "login_token": token},
                             headers={"X-Forwarded-Proto": "https",
                                      "X-Forwarded-Host": "console.example",
                                      "Origin": "https://console.example"})
    assert response.status == 303 and response.header("Location") == "/console/"
    cookie = [c for c in response.all("Set-Cookie") if c.startswith("circus_session=")][0]
    assert "Secure" in cookie and "Path=/console/" in cookie


def test_connecting_to_another_circusd(circusd, web_console, tmp_path):
    first = circusd(SLEEPERS.format(extra=""))
    console = web_console(first, args=["--auth-file", users_file(tmp_path / "users")])
    connected(Browserish(console.port), auth=("alice", "alice-pw"))
    admin = logged_in(console, "alice")
    token = csrf_of(admin.get("/connect"))
    # outside the allow-list (default: this machine): refused before any connection
    refused = admin.post("/connect", form={"csrf_token": token,
                                           "endpoint": "tcp://10.255.255.1:5555"})
    assert refused.status == 400 and "allowed endpoints" in refused.text
    operator = logged_in(console, "olga")
    assert operator.post("/connect", form={"csrf_token": csrf_of(operator.get("/connect")),
                                           "endpoint": first.endpoint}).status == 403
    (tmp_path / "second").mkdir()
    second = Circusd(tmp_path / "second", "[watcher:other]\ncmd = sleep 300\n").start()
    try:
        response = admin.post("/connect", form={"csrf_token": token,
                                                "endpoint": second.endpoint})
        assert response.status == 303
        location = response.header("Location")
        wait_for(lambda: "other" in admin.get(location).text,
                 message="the second circusd's page")
        listing = admin.get("/api/endpoints").json()["endpoints"]
        assert sorted(e["endpoint"] for e in listing) == sorted([first.endpoint,
                                                                 second.endpoint])
        # each circusd keeps its own pages
        assert "sleepers" in admin.get(location.replace(
            location.split("/")[2], listing[0]["id"] if listing[0]["endpoint"] == first.endpoint
            else listing[1]["id"])).text
    finally:
        second.stop()


def test_httpd_option_runs_the_console_as_circusd_watcher(circusd, tmp_path):
    from circus.web.users import hash_password
    port = free_port()
    daemon = circusd(SLEEPERS.format(extra=(
        "httpd = true\nhttpd_port = %d\nhttpd_logs_role = operator\n"
        "httpd_users = alice:%s:admin\n    victor:%s\n"
        % (port, hash_password("alice-pw", 4), hash_password("victor-pw", 4)))))
    client = Browserish(port)
    eid = connected(client, auth=("victor", "victor-pw"))
    assert "circushttpd" in daemon.call("list")["watchers"]
    sockets = {s["name"]: s for s in daemon.call("listsockets")["sockets"]}
    assert sockets["circushttpd"]["port"] == port
    # the users came through the environment, not the command line
    options = daemon.call("options", name="circushttpd")["options"]
    assert "alice" not in json.dumps(options["args"])
    assert "httpd_users" not in daemon.call("globaloptions")["options"]
    response = client.post("/api/e/%s/action" % eid, auth=("alice", "alice-pw"),
                           json_body={"action": "incr", "name": "sleepers"})
    assert response.status == 200
    wait_for(lambda: len(pids(daemon)) == 3, message="3 sleepers")
    # its log lines and the audit record are circusd's
    wait_for(lambda: b"circushttpd[" in daemon.read_log(), message="the console's log")
    assert b"audit: alice (admin) from 127.0.0.1 via circushttpd: incr sleepers: ok" \
        in daemon.read_log()
    # a config reload leaves it alone
    console_pid = daemon.call("list", name="circushttpd")["pids"]
    assert daemon.call("reloadconfig", waiting=True)["status"] == "ok"
    assert daemon.call("list", name="circushttpd")["pids"] == console_pid
    assert client.get("/api/whoami", auth=("victor", "victor-pw")).json()["role"] == "viewer"
    # httpd_logs_role reached it too: the viewer may not read the output, the admin may
    output = "/api/e/%s/output?name=sleepers" % eid
    assert client.get(output, auth=("victor", "victor-pw")).status == 403
    assert client.get(output, auth=("alice", "alice-pw")).status == 200


def test_sockets_page_lists_circus_sockets_with_their_figures(circusd, web_console):
    port = free_port()
    daemon = circusd(SLEEPERS.format(extra="stats_endpoint = tcp://127.0.0.1:%d"
                                           % free_port()) + """
[socket:front]
host = 127.0.0.1
port = %d
""" % port)
    console = web_console(daemon)
    client = Browserish(console.port)
    eid = connected(client)
    fd = daemon.call("listsockets")["sockets"][0]["fd"]
    page = client.get("/e/%s/sockets" % eid)
    assert page.status == 200
    assert "front" in page.text and "127.0.0.1:%d" % port in page.text
    assert '<tr data-fd="%d">' % fd in page.text

    def figures():
        rows = client.get("/api/e/%s/sockets" % eid).json()["sockets"]
        return rows[0]["connections"] is not None and rows[0]
    row = wait_for(figures, timeout=20, message="circusd-stats' figures of the socket")
    assert row["name"] == "front" and row["fd"] == fd
    assert row["connections"] == 0 and row["queued"] == 0 and row["drops"] == 0


# --- the log tail -------------------------------------------------------------

TALKER = r"""
import signal, sys, time
said = 0
def more(signum, frame):
    global said
    said += 1
    print("more %d" % said, flush=True)
signal.signal(signal.SIGUSR1, more)
print("<b>hello</b> \x1b[32mgreen\x1b[0m", flush=True)
print("oops", file=sys.stderr, flush=True)
while True:
    time.sleep(1)
"""


def talker_config(tmp_path):
    (tmp_path / "talker.py").write_text(TALKER)
    return SLEEPERS.format(extra="") + "\n[watcher:talker]\ncmd = %s %s\n" % (
        PYTHON, tmp_path / "talker.py")


def output_requests(daemon):
    """How many `output` requests circusd has answered (its own counters)."""
    commands = daemon.call("metrics", pids=False)["commands"]
    return sum(sum(c["duration"]["counts"]) for c in commands if c["command"] == "output")


def said_hello(daemon):
    return wait_for(lambda: any(o["lines"] for o in daemon.call("output", name="talker")["output"]
                                if o["stream"] == "stderr"), message="the talker's first lines")


def test_log_tail_on_the_page_and_its_stream_only_while_shown(circusd, web_console, tmp_path):
    from circus.web.tail import POLL_INTERVAL
    daemon = circusd(talker_config(tmp_path))
    console = web_console(daemon, args=["--auth-file", users_file(tmp_path / "users")])
    eid = connected(Browserish(console.port), auth=("victor", "victor-pw"))
    said_hello(daemon)
    before = output_requests(daemon)
    viewer = logged_in(console, "victor")
    # without JavaScript: the last lines, escaped, without control sequences
    page = viewer.get("/e/%s/watcher?name=talker" % eid)
    assert page.status == 200 and 'id="log"' in page.text
    assert '<span class="text">&lt;b&gt;hello&lt;/b&gt; green</span>' in page.text
    assert '<span class="stream">stderr</span> <span class="text">oops</span>' in page.text
    assert "\x1b" not in page.text and "[32m" not in page.text
    assert output_requests(daemon) == before + 1  # the page's one read
    # nobody follows it while no page is open
    time.sleep(POLL_INTERVAL * 4)  # what is measured is an absence
    assert output_requests(daemon) == before + 1

    cookie = "; ".join("%s=%s" % kv for kv in viewer.cookies.items())
    path = "/e/%s/stream?view=watcher&name=talker" % eid
    stream = Stream(console.port, path, {"Cookie": cookie})
    try:
        name, _, snapshot = stream.events(1)[0]
        assert name == "snapshot" and "output" in snapshot
        _, event_id, first = stream.until(lambda n, i, d: n == "output")
        assert event_id is None  # not replayed: a resumed page gets the lines anew
        assert first["reset"] and {"pid": first["lines"][0]["pid"], "stream": "stdout",
                                   "text": "<b>hello</b> green"} in first["lines"]
        assert daemon.call("signal", name="talker", signum="USR1")["status"] == "ok"
        _, _, more = stream.until(lambda n, i, d: n == "output" and d["lines"])
        assert [line["text"] for line in more["lines"]] == ["more 1"] and not more["reset"]
        # a page that comes back gets the tail's lines so far
        resumed = Stream(console.port, path, {"Cookie": cookie,
                                              "Last-Event-ID": snapshot["id"]})
        try:
            _, _, again = resumed.until(lambda n, i, d: n == "output")
            assert again["reset"] and again["lines"][-1]["text"] == "more 1"
        finally:
            resumed.close()
    finally:
        stream.close()
    # the last page gone, the console stops asking
    def steady():
        count = output_requests(daemon)
        time.sleep(POLL_INTERVAL * 4)  # what is measured is an absence
        return output_requests(daemon) == count and count
    assert wait_for(steady, timeout=20, message="the tail to stop") > before + 2


def test_log_tail_api_follows_with_a_cursor(setup_talker):
    daemon, console, eid = setup_talker
    client = Browserish(console.port)
    auth = ("victor", "victor-pw")
    first = client.get("/api/e/%s/output?name=talker&stream=stdout&lines=1" % eid, auth=auth)
    assert first.status == 200, first.text
    body = first.json()
    assert body["watcher"] == "talker"
    assert [line["text"] for line in body["lines"]] == ["<b>hello</b> green"]
    assert daemon.call("signal", name="talker", signum="USR1")["status"] == "ok"

    def more():
        reply = client.get("/api/e/%s/output?name=talker&stream=stdout&cursor=%s"
                           % (eid, body["cursor"]), auth=auth).json()
        return reply["lines"] and reply
    follow = wait_for(more, message="the new line")
    assert [(line["stream"], line["text"]) for line in follow["lines"]] == [("stdout", "more 1")]
    nothing = client.get("/api/e/%s/output?name=talker&stream=stdout&cursor=%s"
                         % (eid, follow["cursor"]), auth=auth).json()
    assert nothing["lines"] == []
    # a stream the cursor does not know is read from its start
    both = client.get("/api/e/%s/output?name=talker&cursor=%s" % (eid, follow["cursor"]),
                      auth=auth).json()
    assert [(line["stream"], line["text"]) for line in both["lines"]] == [("stderr", "oops")]
    for query, status, needle in (("name=talker&cursor=%%%%", 400, "cursor"),
                                  ("name=talker&cursor=W10", 400, "cursor"),
                                  ("name=talker&lines=500", 400, "at most 200"),
                                  ("name=talker&lines=x", 400, "whole number"),
                                  ("name=talker&stream=stdin", 400, "streams"),
                                  ("name=nobody", 400, "not found"), ("", 400, "name")):
        reply = client.get("/api/e/%s/output?%s" % (eid, query), auth=auth)
        assert reply.status == status and needle in reply.json()["error"], (query, reply.text)
    assert client.get("/api/e/%s/output?name=talker" % eid).status == 401


@pytest.fixture
def setup_talker(circusd, web_console, tmp_path):
    daemon = circusd(talker_config(tmp_path))
    console = web_console(daemon, args=["--auth-file", users_file(tmp_path / "users")])
    eid = connected(Browserish(console.port), auth=("victor", "victor-pw"))
    said_hello(daemon)
    return daemon, console, eid


def test_who_sees_the_logs(circusd, web_console, tmp_path):
    from circus.web.tail import POLL_INTERVAL
    daemon = circusd(talker_config(tmp_path))
    users = users_file(tmp_path / "users")
    console = web_console(daemon, args=["--auth-file", users, "--logs-role", "operator",
                                        "--read-only"])
    eid = connected(Browserish(console.port), auth=("victor", "victor-pw"))
    said_hello(daemon)
    before = output_requests(daemon)
    api = "/api/e/%s/output?name=talker" % eid
    client = Browserish(console.port)
    # a viewer: no tail on the page, none in its stream, the API refuses
    viewer = logged_in(console, "victor")
    page = viewer.get("/e/%s/watcher?name=talker" % eid)
    assert page.status == 200 and 'id="log"' not in page.text and "hello" not in page.text
    assert client.get(api, auth=("victor", "victor-pw")).status == 403
    cookie = "; ".join("%s=%s" % kv for kv in viewer.cookies.items())
    stream = Stream(console.port, "/e/%s/stream?view=watcher&name=talker" % eid,
                    {"Cookie": cookie})
    try:
        name, _, snapshot = stream.events(1)[0]
        assert name == "snapshot" and "output" not in snapshot
        time.sleep(POLL_INTERVAL * 4)  # what is measured is an absence
        assert output_requests(daemon) == before
    finally:
        stream.close()
    assert b"does not show logs to the viewer role" in console.read_log()
    # an operator reads them, in a read-only console too (where it acts as a viewer)
    operator = logged_in(console, "olga")
    assert operator.get("/api/whoami").json()["role"] == "viewer"
    assert "&lt;b&gt;hello" in operator.get("/e/%s/watcher?name=talker" % eid).text
    assert client.get(api, auth=("olga", "olga-pw")).status == 200
    # --logs-role none: nobody
    closed = web_console(daemon, args=["--auth-file", users, "--logs-role", "none"])
    eid = connected(Browserish(closed.port), auth=("alice", "alice-pw"))
    assert Browserish(closed.port).get(api, auth=("alice", "alice-pw")).status == 403
    admin = logged_in(closed, "alice")
    assert 'id="log"' not in admin.get("/e/%s/watcher?name=talker" % eid).text


# 50 MB/s of 100-byte lines, in 64 KB writes
FLOODER = r"""
import os, time
chunk = (b"flood " + b"x" * 93 + b"\n") * 640
rate = 50 * 1000 * 1000
started, sent = time.monotonic(), 0
while True:
    os.write(1, chunk)
    sent += len(chunk)
    ahead = sent / rate - (time.monotonic() - started)
    if ahead > 0:
        time.sleep(ahead)
"""


def written_bytes(daemon, name):
    """What the processes of name wrote so far, from circusd's cursor."""
    cursor = daemon.call("output", name=name, lines=0)["cursor"]
    return sum(sum(streams.values()) for streams in cursor.values())


@pytest.mark.slow
def test_a_50_mb_s_writer_with_the_tail_open_leaves_memory_bounded(circusd, web_console,
                                                                   tmp_path):
    import psutil
    (tmp_path / "flooder.py").write_text(FLOODER)
    daemon = circusd(SLEEPERS.format(extra="") + "\n[watcher:flood]\ncmd = %s %s\n"
                     % (PYTHON, tmp_path / "flooder.py"))
    console = web_console(daemon)
    eid = connected(Browserish(console.port))
    stream = Stream(console.port, "/e/%s/stream?view=watcher&name=flood" % eid)
    try:
        # the tail runs and the flood is on: gaps in what the page gets
        stream.until(lambda n, i, d: n == "output" and any("skipped" in line
                                                           for line in d["lines"]))
        processes = psutil.Process(daemon.proc.pid), psutil.Process(console.proc.pid)
        rss_before = [p.memory_info().rss for p in processes]
        wrote_before, started = written_bytes(daemon, "flood"), time.monotonic()
        lines = gaps = 0
        while time.monotonic() - started < 8:
            for name, _, data in stream.events(1, timeout=10):
                if name == "output":
                    lines += sum("text" in line for line in data["lines"])
                    gaps += sum("skipped" in line for line in data["lines"])
        rate = (written_bytes(daemon, "flood") - wrote_before) / (time.monotonic() - started)
        growth = [p.memory_info().rss - before for p, before in zip(processes, rss_before)]
    finally:
        stream.close()
    # a real flood (the machine is shared: at least a fifth of the 50 MB/s)...
    assert rate > 10e6, rate
    # ...followed live, in bounded batches with the rest counted as skipped...
    assert lines > 0 and gaps > 0
    # ...costs circusd and the console no memory that grows with it
    assert growth[0] < 16 * 2 ** 20, growth
    assert growth[1] < 32 * 2 ** 20, growth
