"""The Python clients: CircusClient, AsyncCircusClient, CircusConsumer, ssh tunnels."""
import asyncio
import json
import os
import stat
import textwrap

import pytest
import zmq
import zmq.asyncio

from circus.client import AsyncCircusClient, CallError, CallTimeout, CircusClient
from circus.consumer import CircusConsumer
from circus.transport.sshtunnel import TunnelError, forward_spec, parse_server, ssh_command
from circus.util import wait_event
from support import PYTHON, free_port, wait_for

CONFIG = "[watcher:sleeper]\ncmd = sleep 300\n"


def test_call_send_cast(circusd):
    daemon = circusd(CONFIG)
    client = CircusClient(endpoint=daemon.endpoint, timeout=5)
    try:
        reply = client.call({"command": "list"})
        assert reply["status"] == "ok" and reply["watchers"] == ["sleeper"]
        assert len(reply["id"]) == 32
        # a JSON string works too, and error replies come back, not raise
        reply = client.call('{"command": "status", "properties": {"name": "ghost"}}')
        assert reply["status"] == "error" and reply["errno"] == 3
        # a reply to an earlier request (its id) is dropped, not taken for this one's
        stale = client.send({"command": "list"})
        wait_for(lambda: client.socket.poll(10))
        reply = client.call({"command": "numwatchers"})
        assert reply["numwatchers"] == 1 and reply["id"] != stale["id"]
        client.cast({"command": "incr", "properties": {"name": "sleeper"}})
        wait_for(lambda: len(daemon.children()) == 2)
        with pytest.raises(CallError):
            client.call("{not json")
    finally:
        client.stop()


def test_timeout(circusd):
    client = CircusClient(endpoint="tcp://127.0.0.1:%d" % free_port(), timeout=0.2)
    try:
        with pytest.raises(CallTimeout):
            client.call({"command": "list"})
    finally:
        client.stop()


def test_async_client(circusd):
    daemon = circusd(CONFIG)

    async def main():
        async with AsyncCircusClient(endpoint=daemon.endpoint, timeout=5) as client:
            replies = await asyncio.gather(*(client.call({"command": "status"})
                                             for _ in range(5)))
            assert {r["statuses"]["sleeper"] for r in replies} == {"active"}
            assert len({r["id"] for r in replies}) == 5
            reply = await client.call({"command": "incr", "properties":
                                       {"name": "sleeper", "waiting": True}})
            assert reply["numprocesses"] == 2
        async with AsyncCircusClient(endpoint="tcp://127.0.0.1:%d" % free_port(),
                                     timeout=0.2) as client:
            with pytest.raises(CallTimeout):
                await client.call({"command": "list"})

    asyncio.run(main())


def test_async_call_cancelled_as_its_reply_arrives_stays_cancelled():
    # asyncio.wait_for on Python 3.11 returned the reply here and lost the cancel:
    # circusd-stats then hung at shutdown gathering a task that never ended.
    async def main():
        context = zmq.asyncio.Context()
        router = context.socket(zmq.ROUTER)
        port = router.bind_to_random_port("tcp://127.0.0.1")
        client = AsyncCircusClient(context=context, endpoint="tcp://127.0.0.1:%d" % port)
        try:
            call = asyncio.ensure_future(client.call({"command": "list"}))
            msg_id = json.loads((await router.recv_multipart())[-1])["id"]
            client._pending[msg_id].set_result({"status": "ok", "id": msg_id})
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
        finally:
            client.stop()
            router.close(linger=0)
            context.term()

    asyncio.run(main())


def test_wait_event_cancelled_as_the_event_is_set_stays_cancelled():
    async def main():
        event = asyncio.Event()
        waiting = asyncio.ensure_future(wait_event(event, 10))
        await asyncio.sleep(0)  # let it start waiting
        event.set()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await wait_event(event, 10) is True
        event.clear()
        assert await wait_event(event, 0.01) is False

    asyncio.run(main())


def first_update_seen(daemon, consumer):
    """A SUB socket misses what is published before its subscription reaches
    circusd: change the watcher until the consumer sees an event (10 s)."""
    for _ in range(100):
        daemon.call("set", name="sleeper", options={"priority": 0})
        event = consumer.recv(0.1)
        if event:
            return event
    raise AssertionError("the consumer saw no event in 10 s")


def test_consumer_iterates_topic_and_message(circusd):
    daemon = circusd(CONFIG)
    with CircusConsumer(["watcher.sleeper."], endpoint=daemon.pubsub, timeout=0.1) as consumer:
        assert first_update_seen(daemon, consumer)[0] == "watcher.sleeper.updated"
        daemon.call("incr", name="sleeper")
        for topic, message in consumer:
            if topic == "watcher.sleeper.spawn":
                assert isinstance(message["process_pid"], int)
                break


def test_ssh_command_line():
    assert parse_server("deploy@web1") == ("deploy@web1", None)
    assert parse_server("deploy@web1:2222") == ("deploy@web1", 2222)
    assert forward_spec("tcp://127.0.0.1:5555", 40000) == "127.0.0.1:40000:127.0.0.1:5555"
    assert forward_spec("tcp://*:5555", 40000) == "127.0.0.1:40000:127.0.0.1:5555"
    assert forward_spec("ipc:///run/circus.sock", 40000) == "127.0.0.1:40000:/run/circus.sock"
    with pytest.raises(TunnelError):
        forward_spec("inproc://x", 1)
    assert ssh_command("deploy@web1:2222", "tcp://127.0.0.1:5555", 40000, "~/.ssh/k") == [
        "ssh", "-N", "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes",
        "-L", "127.0.0.1:40000:127.0.0.1:5555", "-p", "2222",
        "-i", os.path.expanduser("~/.ssh/k"), "deploy@web1"]


# Stands in for ssh (no ssh server in the test environment): it honours -L by
# forwarding the local port itself, so the client's tunnel handling runs for real.
FAKE_SSH = textwrap.dedent("""\
    #!%s
    import socket, sys, threading
    args = sys.argv[1:]
    if args[-1] == "nobody@nowhere":
        sys.stderr.write("ssh: Could not resolve hostname nowhere\\n")
        sys.exit(255)
    _, lport, host, rport = args[args.index("-L") + 1].split(":")
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", int(lport)))
    server.listen(8)

    def pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            b.close()

    while True:
        conn, _ = server.accept()
        remote = socket.create_connection((host, int(rport)))
        threading.Thread(target=pipe, args=(conn, remote), daemon=True).start()
        threading.Thread(target=pipe, args=(remote, conn), daemon=True).start()
    """ % PYTHON)


def fake_ssh_path(tmp_path):
    """A PATH whose ssh is FAKE_SSH."""
    fake = tmp_path / "bin" / "ssh"
    fake.parent.mkdir()
    fake.write_text(FAKE_SSH)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return "%s:%s" % (fake.parent, os.environ["PATH"])


def test_client_through_an_ssh_tunnel(circusd, tmp_path, monkeypatch):
    daemon = circusd(CONFIG)
    path = fake_ssh_path(tmp_path)
    monkeypatch.setenv("PATH", path)
    client = CircusClient(endpoint=daemon.endpoint, timeout=5, ssh_server="me@example.org")
    try:
        assert client.endpoint != daemon.endpoint
        assert client.call({"command": "list"})["watchers"] == ["sleeper"]
        tunnel = client.tunnel.process
    finally:
        client.stop()
    assert tunnel.poll() is not None  # stop() ends ssh
    with pytest.raises(CallError, match="Could not resolve"):
        CircusClient(endpoint=daemon.endpoint, ssh_server="nobody@nowhere")


def test_consumer_and_stats_client_through_an_ssh_tunnel(circusd, tmp_path, monkeypatch):
    from circus.stats.client import StatsClient
    daemon = circusd(CONFIG)
    monkeypatch.setenv("PATH", fake_ssh_path(tmp_path))
    with CircusConsumer(["watcher.sleeper."], endpoint=daemon.pubsub, timeout=0.1,
                        ssh_server="me@example.org") as consumer:
        assert consumer.endpoint != daemon.pubsub
        tunnel = consumer.tunnel.process
        assert first_update_seen(daemon, consumer)[0] == "watcher.sleeper.updated"
    assert tunnel.poll() is not None  # leaving the with block ends ssh
    with pytest.raises(CallError, match="Could not resolve"):
        CircusConsumer(endpoint=daemon.pubsub, ssh_server="nobody@nowhere")
    with pytest.raises(CallError, match="Could not resolve"):
        StatsClient("tcp://127.0.0.1:1", ssh_server="nobody@nowhere")


def test_circusctl_through_an_ssh_tunnel(circusd, tmp_path):
    import subprocess
    from support import BIN, ROOT
    daemon = circusd(CONFIG)
    path = fake_ssh_path(tmp_path)
    env = dict(os.environ, PYTHONPATH=ROOT, PATH=path)
    result = subprocess.run([os.path.join(BIN, "circusctl"), "--ssh", "me@example.org",
                             "--endpoint", daemon.endpoint, "status"],
                            capture_output=True, text=True, env=env, timeout=30)
    assert (result.returncode, result.stdout) == (0, "sleeper: active\n"), result.stderr
    result = subprocess.run([os.path.join(BIN, "circusctl"), "--ssh", "nobody@nowhere",
                             "--endpoint", daemon.endpoint, "status"],
                            capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 3 and "Could not resolve" in result.stderr


def test_plugin_through_an_ssh_tunnel(circusd, tmp_path):
    # circus-plugin --ssh: events and commands both travel through ssh -L
    import subprocess
    import psutil
    from support import BIN, ROOT
    daemon = circusd(CONFIG)
    path = fake_ssh_path(tmp_path)
    records = tmp_path / "records.jsonl"
    env = dict(os.environ, PYTHONPATH=ROOT, PATH=path)
    plugin = subprocess.Popen(
        [os.path.join(BIN, "circus-plugin"), "--ssh", "me@example.org",
         "--endpoint", daemon.endpoint, "--pubsub", daemon.pubsub,
         "--config", "filename=%s" % records, "--config", "call_on=watcher.sleeper.spawn",
         "tests.plugins_support.recorder.Recorder"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    tunnels = []
    try:
        def recorded(kind):
            if not records.exists():
                return []
            return [r for r in map(json.loads, records.read_text().splitlines())
                    if r["kind"] == kind]
        wait_for(lambda: recorded("init"), timeout=20, message="the plugin to start")
        # a spawn reaches the plugin only once its subscription is through the
        # tunnel: spawn until one does
        def spawn_seen():
            daemon.call("incr", name="sleeper")
            return recorded("reply")
        [reply] = wait_for(spawn_seen, timeout=20, message="a spawn event and its call")[:1]
        assert reply["reply"]["status"] == "ok" and reply["reply"]["numwatchers"] == 1
        # one tunnel for the events, one (opened by the first call) for the commands
        tunnels = [p for p in psutil.Process(plugin.pid).children() if "ssh" in p.name()]
        assert len(tunnels) == 2, tunnels
    finally:
        plugin.terminate()
        output = plugin.communicate(timeout=20)[0].decode()
    assert plugin.returncode == 0, output
    wait_for(lambda: not any(t.is_running() and t.status() != psutil.STATUS_ZOMBIE
                             for t in tunnels), timeout=10, message="the tunnels to close")
