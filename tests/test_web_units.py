"""The web console's parts that need no circusd: users, sessions, the
failed-login limit, settings, the fan-out queues and the model."""
import base64
import hashlib
import time

import pytest

from circus.web.fanout import Broadcaster, Subscriber
from circus.web.model import Model
from circus.web.sessions import FailureLimiter, SessionManager, Signer
from circus.web.settings import Settings, SettingsError
from circus.web.users import Users, UsersError, hash_password, role_allows


def sha_line(name, password, role=""):
    digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    return "%s:{SHA}%s%s" % (name, digest, ":" + role if role else "")


# --- users --------------------------------------------------------------------

def test_users_bcrypt_and_sha_lines_with_roles(tmp_path):
    path = tmp_path / "users"
    bcrypt_hash = hash_password("a-pw", rounds=4).replace("$2b$", "$2y$")  # htpasswd -B
    path.write_text("# comment\nalice:%s:admin\n%s\n\n" % (bcrypt_hash, sha_line("bob", "b-pw")))
    users = Users.load(str(path), [sha_line("carol", "c-pw", "operator")])
    assert len(users) == 3
    assert users.authenticate("alice", "a-pw").role == "admin"
    assert users.authenticate("bob", "b-pw").role == "viewer"  # no role: viewer
    assert users.authenticate("carol", "c-pw").role == "operator"
    assert users.authenticate("alice", "wrong") is None
    assert users.authenticate("bob", "wrong") is None
    assert users.authenticate("nobody", "a-pw") is None


@pytest.mark.parametrize("line, message", [
    ("eve:$apr1$abc$def", "MD5-crypt"),
    ("eve:plaintext", "plain-text or crypt()"),
    ("eve:abDEFghIJklmn", "plain-text or crypt()"),
    ("eve:$6$salt$hash", "unsupported hash scheme"),
    ("eve:{SHA}notbase64!", "malformed {SHA}"),
    ("eve", "expected user:hash[:role]"),
    (sha_line("eve", "x", "root"), "unknown role 'root'"),
])
def test_users_refuses_unusable_lines_naming_them(tmp_path, line, message):
    path = tmp_path / "users"
    path.write_text("# first\n" + line + "\n")
    with pytest.raises(UsersError) as info:
        Users.load(str(path))
    assert message in str(info.value)
    assert "%s, line 2" % path in str(info.value)


def test_users_duplicate_and_missing_file(tmp_path):
    with pytest.raises(UsersError, match="defined twice"):
        Users.load(None, [sha_line("a", "x"), sha_line("a", "y")])
    with pytest.raises(UsersError, match="cannot read the users file"):
        Users.load(str(tmp_path / "missing"))


def test_roles_are_ordered():
    assert role_allows("admin", "operator") and role_allows("operator", "viewer")
    assert not role_allows("viewer", "operator") and not role_allows("operator", "admin")
    assert not role_allows("nobody", "viewer")


# --- sessions -----------------------------------------------------------------

def test_signed_values_refuse_tampering_other_purposes_and_expiry():
    signer = Signer(b"k" * 32)
    token = signer.sign("session", {"u": "alice"}, 60)
    assert signer.unsign("session", token)["u"] == "alice"
    assert signer.unsign("flash", token) is None
    body, mac = token.split(".")
    forged = base64.urlsafe_b64encode(b'{"u":"admin","e":9999999999}').rstrip(b"=").decode()
    assert signer.unsign("session", forged + "." + mac) is None
    assert Signer(b"x" * 32).unsign("session", token) is None
    assert signer.unsign("session", signer.sign("session", {"u": "a"}, -1)) is None
    for junk in ("", "a", "a.b.c", "!!!.???"):
        assert signer.unsign("session", junk) is None


def test_sessions_csrf_tokens_and_revocation():
    manager = SessionManager(b"s" * 32, 3600)
    cookie, session = manager.new("alice")
    loaded = manager.load(cookie)
    assert loaded.user == "alice" and loaded.csrf == session.csrf
    other_cookie, other = manager.new("alice")
    assert other.csrf != session.csrf  # per session, not per user
    manager.revoke(loaded)
    assert manager.load(cookie) is None
    assert manager.load(other_cookie).user == "alice"
    # a new secret (a restart without a configured secret) ends every session
    assert SessionManager(b"t" * 32, 3600).load(other_cookie) is None


def test_login_token_is_bound_to_its_cookie():
    manager = SessionManager(b"s" * 32, 3600)
    cookie, token = manager.login_nonce()
    other_cookie, other_token = manager.login_nonce()
    assert manager.check_login_token(cookie, token)
    assert not manager.check_login_token(cookie, other_token)
    assert not manager.check_login_token(None, token)
    assert not manager.check_login_token(cookie, "")


def test_failure_limiter_blocks_past_the_limit_then_forgets():
    limiter = FailureLimiter(limit=3, window=10.0)
    keys = ("addr:1.2.3.4", "user:alice")
    for n in range(3):
        assert limiter.retry_after(keys, now=100.0 + n) == 0
        limiter.failed(keys, now=100.0 + n)
    assert limiter.retry_after(keys, now=103.0) == pytest.approx(7.0)
    assert limiter.retry_after(("addr:5.6.7.8", "user:alice"), now=103.0) > 0  # per user too
    assert limiter.retry_after(("addr:5.6.7.8", "user:bob"), now=103.0) == 0
    assert limiter.retry_after(keys, now=110.5) == 0  # the first failure left the window
    bounded = FailureLimiter(limit=1, window=10.0, max_keys=10)
    for n in range(50):
        bounded.failed(("addr:%d" % n,), now=1.0)
    assert len(bounded._failures) == 10


# --- settings -----------------------------------------------------------------

def test_settings_from_environment_and_checks():
    settings = Settings.from_environ({
        "CIRCUSHTTPD_ENDPOINT": "tcp://127.0.0.1:5555, tcp://127.0.0.1:6555",
        "CIRCUSHTTPD_URL_PREFIX": "/console/", "CIRCUSHTTPD_READ_ONLY": "true",
        "CIRCUSHTTPD_USERS": "a:{SHA}x\nb:{SHA}y\n", "OTHER": "ignored"})
    assert settings.endpoints == ["tcp://127.0.0.1:5555", "tcp://127.0.0.1:6555"]
    assert settings.url_prefix == "/console" and settings.read_only
    assert settings.users == ["a:{SHA}x", "b:{SHA}y"]
    for bad in ({"url_prefix": "console"}, {"url_prefix": "/a?b"}, {"endpoints": "http://x"},
                {"endpoints": "tcp://host"}, {"max_streams": "0"}, {"curve_key": "k"},
                {"nonsense": "1"}):
        with pytest.raises(SettingsError):
            Settings.from_mapping(bad)


def test_allowed_endpoints_default_to_this_machine():
    settings = Settings.from_mapping({})
    assert settings.endpoint_allowed("tcp://127.0.0.1:5555")
    assert settings.endpoint_allowed("ipc:///var/run/circus.sock")
    assert not settings.endpoint_allowed("tcp://10.0.0.1:5555")
    assert not settings.endpoint_allowed("tcp://127.0.0.1.evil.example:5555")
    custom = Settings.from_mapping({"allowed_endpoints": "tcp://10.0.0.*:5555"})
    assert custom.endpoint_allowed("tcp://10.0.0.7:5555")
    assert not custom.endpoint_allowed("tcp://127.0.0.1:5555")


# --- fan-out ------------------------------------------------------------------

def make_broadcaster(ring=1000):
    import threading
    return Broadcaster(threading.RLock(), ring_size=ring)


def test_subscriber_coalesces_stats_and_overflows_to_a_snapshot():
    sub = Subscriber("overview", limit=5)
    sub.offer({"kind": "stats", "data": 1})
    sub.offer({"kind": "watcher", "data": "a"})
    sub.offer({"kind": "stats", "data": 2})
    need, items = sub.take(0)
    assert not need and [i["data"] for i in items] == ["a", 2]
    for n in range(6):
        sub.offer({"kind": "watcher", "data": n})
    need, items = sub.take(0)
    assert need and items == [] and sub.dropped == 1
    started = time.monotonic()
    assert sub.take(0.05) == (False, [])
    assert time.monotonic() - started >= 0.04


def test_subscriber_of_a_watcher_gets_only_that_watcher():
    sub = Subscriber("watcher", "web")
    assert sub.wants({"kind": "process", "watcher": "web"})
    assert not sub.wants({"kind": "process", "watcher": "web2"})
    assert not sub.wants({"kind": "stats", "watcher": None})
    assert sub.wants({"kind": "endpoint", "watcher": None})
    assert not Subscriber("sockets").wants({"kind": "event", "watcher": None})


def test_a_slow_subscriber_never_holds_up_the_others():
    broadcaster = make_broadcaster()
    slow, fast = Subscriber("events", limit=10), Subscriber("events", limit=10000)
    broadcaster.subscribe(slow)
    broadcaster.subscribe(fast)
    started = time.monotonic()
    for n in range(5000):
        broadcaster.publish("event", {"n": n})
    assert time.monotonic() - started < 2.0
    need, items = fast.take(0)
    assert not need and len(items) == 5000
    need, items = slow.take(0)
    assert need and not items


def test_replay_ring_resumes_or_asks_for_a_snapshot():
    broadcaster = make_broadcaster(ring=10)
    for n in range(5):
        broadcaster.publish("event", {"n": n})
    broadcaster.publish("stats", {})  # not replayable, no id
    third = broadcaster.event_id(3)
    assert [i["data"]["n"] for i in broadcaster.replay_since(third)] == [3, 4]
    assert broadcaster.replay_since(broadcaster.event_id()) == []
    assert broadcaster.replay_since("otherrun-3") is None
    assert broadcaster.replay_since(broadcaster.event_id(99)) is None
    for n in range(20):
        broadcaster.publish("event", {"n": n})
    assert broadcaster.replay_since(third) is None  # fell out of the ring
    assert len(broadcaster.replay_since(broadcaster.event_id(broadcaster.seq - 9))) == 9


# --- the model ----------------------------------------------------------------

def test_model_follows_process_events_and_publishes_changes():
    model = Model("tcp://127.0.0.1:5555")
    sub = Subscriber("watcher", "web")
    model.broadcaster.subscribe(sub)
    model.update_watcher("web", "active", {"cmd": "run", "args": ["x"], "numprocesses": 2},
                         [10, 11])
    summary = model.watchers["web"].summary()
    assert summary == {"name": "web", "status": "active", "numprocesses": 2, "running": 2,
                       "ready": 2, "cmd": "run x", "singleton": False}
    assert model.on_event("watcher.web.kill", {"process_pid": 10, "time": 1.0}) == "web"
    assert model.on_event("watcher.web.reap", {"process_pid": 10, "exit_code": -15}) == "web"
    model.on_event("watcher.web.spawn", {"process_pid": 12, "time": 2.0})
    assert model.processes("web")[-1] == {"pid": 12, "state": "starting", "started": 2.0}
    model.on_event("watcher.web.ready", {"process_pid": 12})
    assert model.watchers["web"].summary()["ready"] == 2
    need, items = sub.take(0)
    kinds = [(i["kind"], i["data"].get("state")) for i in items]
    assert ("process", "stopping") in kinds and ("process", "gone") in kinds
    assert ("process", "starting") in kinds and ("process", "running") in kinds
    assert [t for t, e in [(e["topic"], e) for e in model.timeline]][:2] == [
        "watcher.web.kill", "watcher.web.reap"]
    assert model.on_event("watcher.other.start", {}) == "other"  # unknown: ask circusd
    assert model.on_event("arbiter.reload_config", {}) == "*"
    model.on_event("watcher.web.remove", {})
    assert "web" not in model.watchers


def test_model_statistics_history_and_snapshots():
    model = Model("tcp://127.0.0.1:5555")
    model.update_watcher("web", "active", {"cmd": "run", "numprocesses": 1}, [10])
    model.on_stat("web", 10, {"cpu": 12.5, "mem": 1.0, "rss": 1000, "create_time": 5.0})
    model.on_stat("web", None, {"cpu": 12.5, "mem": 1.0, "pid": [10]})
    model.on_stat("circus", 1, {"name": "circusd", "cpu": 0.5, "mem": 0.1})
    sub = Subscriber("overview")
    model.broadcaster.subscribe(sub)
    model.flush_stats()
    _, items = sub.take(0)
    assert [i["kind"] for i in items] == ["stats"]
    assert items[0]["data"]["latest"]["web"][1:] == [12.5, 1.0]
    assert items[0]["data"]["circus"][0]["name"] == "circusd"
    snap = model.snapshot("watcher", "web")
    assert snap["processes"][0]["started"] == 5.0
    assert snap["stats"]["processes"][10]["cpu"] == 12.5
    model.on_stat("web", None, {"cpu": 0, "mem": 0, "pid": []})
    assert model.snapshot("watcher", "web")["stats"]["processes"] == {}


# --- the log tail ---------------------------------------------------------------

def output_item(lines, reset=False, note=None):
    return {"kind": "output", "watcher": "web",
            "data": {"watcher": "web", "reset": reset, "lines": lines, "note": note}}


def text_lines(first, count):
    return [{"pid": 1, "stream": "stdout", "text": "l%d" % n} for n in range(first, first + count)]


def test_tail_lines_are_cleaned_cut_and_gaps_kept():
    from circus.web.tail import LINE_CHARS, lines_of
    output = [{"pid": 7, "stream": "stderr", "skipped": 900,
               "lines": ["\x1b[1;31mred\x1b[0m <img src=x onerror=alert(1)>",
                         "\x1b]0;title\x07bell\x07 tab\there", "y" * (LINE_CHARS + 50)]},
              {"pid": 8, "stream": "stdout", "lines": ["fine"], "skipped": 0},
              "junk", {"pid": 9, "stream": "stdout", "lines": "not a list"}]
    lines = lines_of(output)
    assert lines[0] == {"pid": 7, "stream": "stderr", "skipped": 900}
    assert [line.get("text") for line in lines[1:]] == [
        "red <img src=x onerror=alert(1)>", "bell tab\there", "y" * LINE_CHARS + "\u2026",
        "fine"]
    assert lines_of(None) == [] and lines_of({"not": "a list"}) == []


def test_waiting_output_merges_into_one_bounded_item():
    from circus.web.tail import KEEP_LINES, trim
    sub = Subscriber("watcher", "web", logs=True)
    sub.offer(output_item(text_lines(0, 3), reset=True))
    sub.offer({"kind": "process", "watcher": "web", "data": {}})
    for n in range(10):
        sub.offer(output_item(text_lines(3 + n * 100, 100), note="n%d" % n))
    need, items = sub.take(0)
    assert not need and [i["kind"] for i in items] == ["process", "output"]
    merged = items[1]["data"]
    assert merged["reset"] and merged["note"] == "n9" and len(merged["lines"]) == KEEP_LINES
    assert merged["lines"][0] == {"dropped": 1003 - KEEP_LINES + 1}
    assert merged["lines"][-1]["text"] == "l1002"
    # a reset replaces whatever waited
    sub.offer(output_item(text_lines(0, 5)))
    sub.offer(output_item(text_lines(50, 1), reset=True))
    assert sub.take(0)[1][0]["data"]["lines"] == text_lines(50, 1)
    # gaps already counted add up
    assert trim([{"dropped": 5}] + text_lines(0, 4), keep=3) == \
        [{"dropped": 7}] + text_lines(2, 2)
    # the items were not changed for the other pages they went to
    shared = output_item(text_lines(0, 2))
    sub.offer(output_item(text_lines(0, 1)))
    sub.offer(shared)
    assert shared["data"]["lines"] == text_lines(0, 2)


def test_output_goes_only_to_pages_that_may_read_logs_and_is_not_replayed():
    broadcaster = make_broadcaster()
    reader, other = Subscriber("watcher", "web", logs=True), Subscriber("watcher", "web")
    broadcaster.subscribe(reader)
    broadcaster.subscribe(other)
    mark = broadcaster.event_id()
    broadcaster.publish("output", output_item(text_lines(0, 1))["data"], "web")
    assert [i["kind"] for i in reader.take(0)[1]] == ["output"]
    assert other.take(0) == (False, [])
    assert broadcaster.replay_since(mark) == []
    assert not Subscriber("overview", logs=True).wants(output_item([]))


def test_settings_logs_role():
    assert Settings.from_mapping({}).logs_role == "viewer"
    assert Settings.from_environ({"CIRCUSHTTPD_LOGS_ROLE": "Operator"}).logs_role == "operator"
    assert Settings.from_mapping({"logs_role": "none"}).logs_role == "none"
    with pytest.raises(SettingsError, match="logs_role"):
        Settings.from_mapping({"logs_role": "everyone"})


class FakeConnection:
    """What a Tail uses of a hub Connection: call() and the model; circusd's
    `output` answers from a list of scripted replies."""

    def __init__(self, replies):
        import queue
        self.model = Model("tcp://127.0.0.1:5555")
        self.asked = queue.Queue()
        self.replies = list(replies)

    def call(self, command, **props):
        self.asked.put((command, props))
        if self.replies:
            return self.replies.pop(0)
        return {"status": "ok", "output": [], "cursor": props.get("cursor", {})}


def test_one_tail_per_watcher_while_pages_show_it():
    from circus.web.tail import FIRST_LINES, Tails
    first = {"status": "ok", "output": [{"pid": 4, "stream": "stdout", "lines": ["hi"]}],
             "cursor": {"4": {"stdout": 3}}}
    connection = FakeConnection([first])
    sub = Subscriber("watcher", "web", logs=True)
    connection.model.broadcaster.subscribe(sub)
    tails = Tails(connection)
    tails.watch("web")
    tails.watch("web")  # a second page: the same Tail
    assert connection.asked.get(timeout=5) == ("output", {"name": "web", "lines": FIRST_LINES})
    assert connection.asked.get(timeout=5) == ("output", {"name": "web",
                                                          "cursor": {"4": {"stdout": 3}}})
    need, items = sub.take(1)
    assert items[0]["data"] == {"watcher": "web", "reset": True, "note": None,
                                "lines": [{"pid": 4, "stream": "stdout", "text": "hi"}]}
    with connection.model.lock:
        assert tails.view("web")["ready"] and len(tails._tails) == 1
    tail = tails._tails["web"]
    tails.unwatch("web")
    assert tail.is_alive() and not tail.stopping.is_set()
    tails.unwatch("web")  # the last page went: the Tail stops, its lines go
    tail.join(5)
    assert not tail.is_alive()
    with connection.model.lock:
        assert tails.view("web") is None


def test_a_tail_says_why_it_has_nothing():
    from circus.web.tail import UNSUPPORTED, Tails
    connection = FakeConnection([{"status": "error", "errno": 2, "reason": "unknown command"}])
    sub = Subscriber("watcher", "web", logs=True)
    connection.model.broadcaster.subscribe(sub)
    tails = Tails(connection)
    tails.watch("web")
    try:
        need, items = sub.take(5)
        assert items[0]["data"]["note"] == UNSUPPORTED and not items[0]["data"]["reset"]
        with connection.model.lock:
            assert tails.view("web") == {"ready": False, "lines": [], "note": UNSUPPORTED}
    finally:
        tails.stop()
