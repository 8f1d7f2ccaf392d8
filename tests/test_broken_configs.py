"""Broken configuration files, one table, checked at start and through
reloadconfig. At start: the exit status, one line naming the file (and the
section and option), and nothing started: no child ever, no port bound.
Through reloadconfig: an error reply naming the file, and the running
processes keep their pids."""
import os
import socket
import sys

import pytest

from support import BIN, free_port, port_is_free, run_until_exit, wait_for

CIRCUSD = os.path.join(BIN, "circusd")
PY = sys.executable

# a good file: endpoints, a socket and a watcher that proves it ran
GOOD = """[circus]
endpoint = tcp://127.0.0.1:{endpoint}
pubsub_endpoint = tcp://127.0.0.1:{pubsub}

[socket:web]
host = 127.0.0.1
port = {port}

[watcher:marker]
cmd = {py} -c "import pathlib, time; pathlib.Path('{marker}').touch(); time.sleep(120)"
numprocesses = 2
"""


class Taken:
    """A port some other program listens on."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        return self

    def __exit__(self, *exc):
        self.sock.close()


def added(text):
    """A row's file: the good one and text after it."""
    return lambda good, fill: (good + "\n" + text.format(**fill)).encode()


def circus_option(line):
    """A row's file: the good one with line in its [circus] section, in place
    of the option of the same name."""
    def make(good, fill):
        key = line.split("=")[0].strip()
        lines = [entry for entry in good.splitlines() if not entry.startswith(key + " ")]
        text = "\n".join(lines).replace("[circus]", "[circus]\n" + line.format(**fill), 1)
        return text.encode()
    return make


# name: (the file from the good one, exit status, words of the message); in
# the words, {main} is the file's path, {dir} its directory, {line} the line
# of the first byte that is not UTF-8
BROKEN = {
    "empty file": (lambda good, fill: b"", 2, ["{main}", "no section at all"]),
    "only comments": (lambda good, fill: b"# nothing\n; nor here\n", 2,
                      ["{main}", "no section at all"]),
    "not UTF-8": (lambda good, fill: good.encode() + b"\n[watcher:latin]\ncmd = sleep 1\n"
                  b"args = caf\xe9\n", 2, ["{main}", "line {line}:", "not UTF-8"]),
    "working_dir that does not exist": (
        added("[watcher:w]\ncmd = sleep 1\nworking_dir = {dir}/nope\n"), 2,
        ["{main} [watcher:w] working_dir", "no such directory"]),
    "endpoint of an unknown scheme": (
        circus_option("endpoint = tpc://127.0.0.1:{endpoint}"), 2,
        ["{main} [circus] endpoint", "not a ZeroMQ endpoint"]),
    "pubsub endpoint without a port": (
        circus_option("pubsub_endpoint = tcp://127.0.0.1"), 2,
        ["{main} [circus] pubsub_endpoint", "no port"]),
    "socket port in use": (
        added("[socket:busy]\nhost = 127.0.0.1\nport = {taken}\n"), 3,
        ["{main} [socket:busy] port", "address already in use"]),
    "include of a file that does not exist": (
        circus_option("include = {dir}/nope.ini"), 2,
        ["{main} [circus] include", "no such file"]),
    "circular include": (
        circus_option("include = other.ini"), 2,
        ["{dir}/other.ini [circus] include",
         "circular include: {main} -> {dir}/other.ini -> {main}"]),
    "numprocesses above the ceiling": (
        added("[watcher:w]\ncmd = sleep 1\nnumprocesses = 100000000\n"), 2,
        ["{main} [watcher:w] numprocesses", "above the limit of 2048", "max_numprocesses"]),
    "empty cmd": (added("[watcher:w]\ncmd =\n"), 2,
                  ["{main} [watcher:w] cmd", "missing option"]),
    "args that do not split": (added("[watcher:w]\ncmd = sleep\nargs = '1\n"), 2,
                               ["{main} [watcher:w] args", "No closing quotation"]),
}


def render(tmp_path, name, ports, taken):
    """The bytes of the main file for a row, and what its message must say."""
    make, status, words = BROKEN[name]
    main = tmp_path / "circus.ini"
    good = GOOD.format(py=PY, marker=tmp_path / "started", **ports)
    fill = dict(ports, main=main, dir=tmp_path, taken=taken)
    text = make(good, fill)
    fill["line"] = text.count(b"\n", 0, max(text.find(b"\xe9"), 0)) + 1
    if name == "circular include":
        (tmp_path / "other.ini").write_text("[circus]\ninclude = circus.ini\n")
    return main, text, status, [w.format(**fill) for w in words]


def ports():
    return {"endpoint": free_port(), "pubsub": free_port(), "port": free_port()}


@pytest.mark.parametrize("name", list(BROKEN))
def test_at_start(tmp_path, name):
    chosen = ports()
    with Taken() as taken:
        main, text, status, words = render(tmp_path, name, chosen, taken.port)
        main.write_bytes(text)
        returncode, out, err, seen = run_until_exit([CIRCUSD, str(main)], 30, cwd=str(tmp_path))
    err = err.decode()
    assert returncode == status, (returncode, err)
    for word in words:
        assert word in err, (word, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert seen == set(), "circusd started children"
    assert not (tmp_path / "started").exists()
    for port in chosen.values():
        assert port_is_free(port), "port %d was bound" % port


# what can only be refused at start (nothing runs yet to keep)
START_ONLY = {"endpoint of an unknown scheme", "pubsub endpoint without a port"}


@pytest.mark.parametrize("name", [n for n in BROKEN if n not in START_ONLY] +
                         ["endpoint of an unknown scheme"])
def test_through_reloadconfig(circusd, tmp_path, name):
    chosen = ports()
    good = GOOD.format(py=PY, marker=tmp_path / "started", **chosen)
    daemon = circusd("", start=False)
    daemon.endpoint = "tcp://127.0.0.1:%d" % chosen["endpoint"]
    daemon.pubsub = "tcp://127.0.0.1:%d" % chosen["pubsub"]
    daemon.config_path.write_text(good)
    daemon.start()
    before = wait_for(lambda: (lambda p: p if len(p) == 2 else None)(
        daemon.call("list", name="marker")["pids"]), message="the marker's processes")
    with Taken() as taken:
        main, text, _, words = render(tmp_path, name, chosen, taken.port)
        assert main == daemon.config_path
        main.write_bytes(text)
        reply = daemon.call("reloadconfig", waiting=True)
    assert reply["status"] == "error", reply
    assert "nothing changed" in reply["reason"], reply
    for word in words:
        assert word in reply["reason"], (word, reply)
    assert daemon.call("list", name="marker")["pids"] == before
    assert daemon.call("status")["statuses"] == {"marker": "active"}
    assert daemon.call("listsockets")["sockets"][0]["port"] == chosen["port"]
    # and the good file applies again
    main.write_text(good.replace("numprocesses = 2", "numprocesses = 3"))
    assert daemon.call("reloadconfig", waiting=True)["status"] == "ok"
    assert len(daemon.call("list", name="marker")["pids"]) == 3
    assert b"Traceback" not in daemon.read_log()


def test_a_glob_that_matches_nothing_is_no_error(circusd, tmp_path):
    daemon = circusd("[circus]\ninclude = conf.d/*.ini\n[watcher:plain]\ncmd = sleep 120\n")
    assert daemon.call("status")["statuses"] == {"plain": "active"}
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "more.ini").write_text("[watcher:more]\ncmd = sleep 121\n")
    assert daemon.call("reloadconfig", waiting=True)["changes"]["added"] == ["more"]
