"""CURVE on the command and event endpoints: refuse without the key, serve with it."""
import os
import shutil
import stat
import subprocess
import time

import pytest

from circus.client import CallError, CallTimeout, CircusClient
from circus.consumer import CircusConsumer
from support import BIN, PYTHON, ROOT, wait_for


@pytest.fixture
def keys(tmp_path):
    keydir = tmp_path / "keys"
    for name in ("circusd", "alice", "mallory"):
        result = subprocess.run([PYTHON, "-m", "circus.security", "keygen", str(keydir), name],
                                capture_output=True, text=True,
                                env=dict(os.environ, PYTHONPATH=ROOT))
        assert result.returncode == 0, result.stderr
    authorized = tmp_path / "authorized"
    authorized.mkdir()
    shutil.copy(keydir / "alice.key", authorized / "alice.key")
    return keydir, authorized


@pytest.fixture
def secure(circusd, keys):
    keydir, authorized = keys
    return circusd("[circus]\ncurve_secret_key = %s\ncurve_authorized_keys = %s\n\n"
                   "[watcher:sleeper]\ncmd = sleep 300\n"
                   % (keydir / "circusd.key_secret", authorized))


def client(daemon, keydir, name, timeout=5.0):
    kwargs = {}
    if name:
        kwargs = dict(curve_key=str(keydir / ("%s.key_secret" % name)),
                      server_key=str(keydir / "circusd.key"))
    return CircusClient(endpoint=daemon.endpoint, timeout=timeout, **kwargs)


def call(daemon, keydir, name, timeout=5.0, command="list"):
    c = client(daemon, keydir, name, timeout)
    try:
        return c.call({"command": command})
    finally:
        c.stop()


def test_keygen_writes_a_private_secret(keys):
    keydir, _ = keys
    assert stat.S_IMODE(os.stat(keydir / "alice.key_secret").st_mode) == 0o600
    from circus.security import load_keys
    public, secret = load_keys(keydir / "alice.key_secret")
    assert len(public) == len(secret) == 40
    assert load_keys(keydir / "alice.key") == (public, None)


def test_refuses_without_the_key_and_serves_with_it(secure, keys):
    keydir, _ = keys
    assert call(secure, keydir, "alice")["watchers"] == ["sleeper"]
    # no CURVE at all (told so at once: circusd's greeting names CURVE), then
    # a key nobody authorised (no answer); circusd logs each refusal
    for name, logged, refusal, said in (
            (None, b"refused a connection on the command endpoint", CallError,
             "requires CURVE security"),
            ("mallory", b"refused a client: its CURVE key", CallTimeout, "Timed out")):
        refused = client(secure, keydir, name, timeout=0.5)
        try:
            with pytest.raises(refusal, match=said):
                refused.call({"command": "list"})
            wait_for(lambda: logged in secure.read_log(), message=logged.decode())
        finally:
            refused.stop()
    # refusals leave circusd serving
    assert call(secure, keydir, "alice", command="status")["statuses"] == {"sleeper": "active"}


def test_a_stranger_reconnecting_cannot_fill_the_log(secure, keys):
    import zmq
    keydir, _ = keys
    size = len(secure.read_log())
    context = zmq.Context.instance()
    # 40 connection attempts without CURVE, and 40 with a key nobody authorised
    for attempt in range(80):
        sock = context.socket(zmq.DEALER)
        sock.linger = 0
        if attempt % 2:
            from circus.security import client_keys, public_key
            sock.curve_publickey, sock.curve_secretkey = client_keys(
                keydir / "mallory.key_secret")
            sock.curve_serverkey = public_key(keydir / "circusd.key")
        sock.connect(secure.endpoint)
        sock.send(b'{"command": "list"}')
        sock.poll(50)
        sock.close()

    def refusals():
        log = secure.read_log()[size:]
        return [line for line in log.splitlines() if b"refused a c" in line]
    # a burst of 10 per kind, then one a second, however fast it reconnects
    wait_for(lambda: len(refusals()) >= 20, message="the first refusals")
    time.sleep(1.5)  # a refill: one more stranger is logged, with the count
    assert len(refusals()) < 60, len(refusals())
    with pytest.raises(CallTimeout):
        call(secure, keydir, "mallory", timeout=0.5)
    wait_for(lambda: b"similar messages suppressed" in secure.read_log()[size:],
             message="the count of what was suppressed")
    assert call(secure, keydir, "alice")["watchers"] == ["sleeper"]


def test_authorized_keys_are_read_again(secure, keys):
    keydir, authorized = keys
    with pytest.raises(CallTimeout):
        call(secure, keydir, "mallory", timeout=0.5)
    shutil.copy(keydir / "mallory.key", authorized / "mallory.key")
    assert call(secure, keydir, "mallory")["watchers"] == ["sleeper"]


def test_events_are_protected_too(secure, keys):
    keydir, _ = keys
    good = CircusConsumer([""], endpoint=secure.pubsub, timeout=0.1,
                          curve_key=str(keydir / "alice.key_secret"),
                          server_key=str(keydir / "circusd.key"))
    bad = CircusConsumer([""], endpoint=secure.pubsub, timeout=0.1)
    c = client(secure, keydir, "alice")
    def poked():
        c.call({"command": "set", "properties": {"name": "sleeper",
                                                 "options": {"priority": 0}}})
        return good.recv(0.1)
    try:
        # until the subscription is live: PUB drops what comes before
        event = wait_for(poked, timeout=10, interval=0, message="an event through CURVE")
        assert event[0] == "watcher.sleeper.updated"
        assert bad.recv(0.3) is None
    finally:
        c.stop()
        good.stop()
        bad.stop()


def test_circusctl_with_keys(secure, keys):
    keydir, _ = keys
    env = dict(os.environ, PYTHONPATH=ROOT)
    circusctl = os.path.join(BIN, "circusctl")
    result = subprocess.run([circusctl, "--endpoint", secure.endpoint,
                             "--curve-key", str(keydir / "alice.key_secret"),
                             "--server-key", str(keydir / "circusd.key"), "status"],
                            capture_output=True, text=True, env=env)
    assert (result.returncode, result.stdout) == (0, "sleeper: active\n"), result.stderr
    env.update(CIRCUSCTL_CURVE_KEY=str(keydir / "alice.key_secret"),
               CIRCUSCTL_SERVER_KEY=str(keydir / "circusd.key"),
               CIRCUSCTL_ENDPOINT=secure.endpoint)
    result = subprocess.run([circusctl, "list"], capture_output=True, text=True, env=env)
    assert (result.returncode, result.stdout) == (0, "sleeper\n"), result.stderr
    result = subprocess.run([circusctl, "--timeout", "0.5", "--curve-key",
                             str(keydir / "mallory.key_secret"), "list"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 3
    result = subprocess.run([circusctl, "--server-key", "", "--curve-key",
                             str(keydir / "alice.key_secret"), "list"],
                            capture_output=True, text=True, env=dict(env,
                                                                    CIRCUSCTL_SERVER_KEY=""))
    assert result.returncode == 3 and "server" in result.stderr


def test_off_by_default(circusd):
    daemon = circusd("[watcher:sleeper]\ncmd = sleep 300\n")
    assert daemon.call("list")["watchers"] == ["sleeper"]


def test_circusd_own_plugins_and_stats_get_through(circusd, keys, tmp_path):
    # circusd hands its key pair to the processes it runs for itself; its
    # public key is not among the authorised ones, and need not be
    import json

    from circus.stats.client import StatsClient
    from support import free_port
    keydir, authorized = keys
    records = tmp_path / "records.jsonl"
    stats = "tcp://127.0.0.1:%d" % free_port()
    daemon = circusd("[circus]\ncurve_secret_key = %s\ncurve_authorized_keys = %s\n"
                     "stats_endpoint = %s\n\n"
                     "[watcher:sleeper]\ncmd = sleep 300\n\n"
                     "[plugin:rec]\nuse = tests.plugins_support.recorder.Recorder\n"
                     "filename = %s\ncall_on = watcher.sleeper.spawn\n"
                     % (keydir / "circusd.key_secret", authorized, stats, records))

    def recorded(kind):
        if not records.exists():
            return []
        return [r for r in map(json.loads, records.read_text().splitlines()) if r["kind"] == kind]
    # the plugin saw circusd's events and its call() was answered
    [reply] = wait_for(lambda: recorded("reply"), timeout=20, message="the plugin's call")
    assert reply["reply"]["status"] == "ok" and reply["reply"]["numwatchers"] >= 2
    assert recorded("event")[0]["topic"].startswith("watcher.")
    stats_client = StatsClient(stats, timeout=0.2)
    try:
        wait_for(lambda: (lambda m: m and m[0] == "sleeper")(stats_client.recv(0.2)),
                 timeout=20, message="circusd-stats to publish the sleeper")
    finally:
        stats_client.close()
    # and a client with an unknown key still gets nothing
    with pytest.raises(CallTimeout):
        call(daemon, keydir, "mallory", timeout=0.5)
    assert b"refused a client" in daemon.read_log()
