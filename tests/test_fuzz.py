"""Thousands of generated malformed, mistyped, oversized and absurd messages
against a real circusd over its ROUTER socket (hypothesis).

circusd runs in a cgroup of its own whose pids.max bounds what a regression
could fork (and with a strict [circus] max_processes, the only bound when
the cgroup is not available). Every request that could change something is
generated with at least one property that must be refused; it must be, and
the processes circusd runs keep their pids. Afterwards circusd answers as
before, has no traceback in its log and its memory grew by less than 5 MB.

CIRCUS_FUZZ_EXAMPLES=N runs more examples (or fewer) than the default.
"""
import json
import math
import os
import subprocess
import uuid

import psutil
import pytest
import zmq
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from circus.commands import NAMES, get_command
from circus.commands import base as kinds
from support import PYTHON, Circusd, free_port, wait_for

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("CIRCUS_FUZZ_EXAMPLES", "4000"))
CGROUP_ROOT = "/sys/fs/cgroup/pids"
PIDS_MAX = 200

CONFIG = """
[circus]
max_processes = 16

[socket:web]
host = 127.0.0.1
port = {port}

[watcher:a]
cmd = sleep 600
numprocesses = 2

[watcher:b]
cmd = sleep 601

[watcher:idle]
cmd = sleep 602
autostart = false
"""

# commands that only read: any properties at all may be sent to them
READING = {"dstats", "get", "globaloptions", "list", "listen", "listsockets", "numprocesses",
           "numwatchers", "options", "output", "stats", "status", "reloadconfig"}


class Cgroup:
    """A child cgroup of the v1 pids controller, or None where there is none."""

    def __init__(self):
        self.path = None
        if os.access(CGROUP_ROOT, os.W_OK):
            path = os.path.join(CGROUP_ROOT, "circus-fuzz-%s" % uuid.uuid4().hex[:8])
            try:
                os.mkdir(path)
                with open(os.path.join(path, "pids.max"), "w") as handle:
                    handle.write(str(PIDS_MAX))
                self.path = path
            except OSError:
                pass

    def wrap(self, argv):
        """argv, run inside the cgroup from its very first instruction."""
        if self.path is None:
            return argv
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"',
                os.path.join(self.path, "cgroup.procs")] + argv

    def tasks(self):
        """How many tasks (processes and threads) the cgroup holds now."""
        if self.path is None:
            return None
        with open(os.path.join(self.path, "pids.current")) as handle:
            return int(handle.read())

    def remove(self):
        if self.path is not None:
            wait_for(lambda: not open(os.path.join(self.path, "cgroup.procs")).read(),
                     message="the cgroup to be empty")
            os.rmdir(self.path)


class FuzzedCircusd(Circusd):
    def __init__(self, tmp_path, config, cgroup):
        super().__init__(tmp_path, config)
        self.cgroup = cgroup

    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.cgroup.wrap([PYTHON, "-m", "circus.circusd", str(self.config_path),
                              "--log-level", "debug"]),
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.cwd, env=self.env)
        wait_for(lambda: b"Arbiter now waiting" in self.read_log() or
                 self.proc.poll() is not None, timeout=20, message="circusd to start")
        assert self.proc.poll() is None, self.read_log().decode()
        return self


class State:
    """What the storm must not change, and the socket it blows through."""

    def __init__(self, daemon):
        self.daemon = daemon
        self.sock = None
        self.sent = 0

    def connect(self):
        if self.sock is not None:
            self.sock.close(linger=0)
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(self.daemon.endpoint)

    def send(self, frame, cast=False):
        """The reply to frame (None when none came in 10 s). A cast is
        followed by a request of our own: what comes before its reply is the
        cast's, which must get none."""
        self.sent += 1
        self.sock.send(frame)
        if cast:
            self.sock.send(b'{"id": "after-the-cast", "command": "numwatchers"}')
        if not self.sock.poll(10000):
            return None
        reply = json.loads(self.sock.recv())
        if cast and reply.get("id") == "after-the-cast":
            return None
        return reply

    def snapshot(self):
        call = self.daemon.call
        return {"statuses": call("status")["statuses"],
                "pids": {name: call("list", name=name)["pids"] for name in ("a", "b")},
                "watchers": call("list")["watchers"]}


@pytest.fixture(scope="module")
def storm(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("fuzz")
    cgroup = Cgroup()
    daemon = FuzzedCircusd(tmp_path, CONFIG.format(port=free_port()), cgroup)
    try:
        daemon.start()
        state = State(daemon)
        state.connect()
        wait_for(lambda: len(daemon.call("list", name="a")["pids"]) == 2, message="a's 2")
        # every command once, so that what circusd imports for them is not
        # counted as growth
        for name in NAMES:
            if name in READING:
                daemon.call(name)
        state.before = state.snapshot()
        state.rss = psutil.Process(daemon.proc.pid).memory_info().rss
        state.cgroup = cgroup
        state.tasks = cgroup.tasks()
        yield state
    finally:
        daemon.stop()
        cgroup.remove()


# --- what is sent -------------------------------------------------------------

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10 ** 18),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)),
    max_leaves=20)

not_a_string = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                         st.lists(json_leaf, max_size=3), st.dictionaries(st.text(max_size=5),
                                                                          json_leaf, max_size=3))


def _bool_word(value):
    try:
        kinds.boolean("x", value)
        return True
    except kinds.MessageError:
        return False


def _signal(value):
    try:
        kinds.signal_number("x", value)
        return True
    except kinds.MessageError:
        return False


# for each kind of property: values it must refuse
WRONG = {
    kinds.string: not_a_string,
    kinds.non_empty_string: st.one_of(not_a_string, st.sampled_from(["", "   "])),
    kinds.boolean: st.one_of(st.none(), st.lists(json_leaf, max_size=2), st.dictionaries(
        st.text(max_size=3), json_leaf, max_size=2), st.integers().filter(lambda v: v not in (0, 1)),
        st.text(max_size=20).filter(lambda v: not _bool_word(v))),
    kinds.number: st.one_of(st.none(), st.booleans(), st.lists(json_leaf, max_size=2),
                            st.floats(max_value=-0.001, allow_nan=False),
                            st.text(max_size=10).filter(lambda v: not _finite(v))),
    kinds.signal_number: st.one_of(st.none(), st.booleans(), st.floats(), st.lists(
        json_leaf, max_size=2), st.integers().filter(lambda v: not _signal(v)),
        st.text(max_size=12).filter(lambda v: not _signal(v))),
    kinds.mapping: st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5),
                             st.lists(json_leaf, max_size=3)),
    kinds.names: st.one_of(st.none(), st.booleans(), st.integers(), st.dictionaries(
        st.text(max_size=3), json_leaf, max_size=2), st.lists(not_a_string, min_size=1,
                                                              max_size=3)),
    kinds.text_or_list: st.one_of(st.none(), st.booleans(), st.integers(), st.dictionaries(
        st.text(max_size=3), json_leaf, max_size=2), st.lists(not_a_string, min_size=1,
                                                              max_size=3)),
}
NOT_AN_INTEGER = st.one_of(st.none(), st.booleans(), st.lists(json_leaf, max_size=2),
                           st.floats(allow_nan=False).filter(lambda v: not v.is_integer()),
                           st.text(max_size=10).filter(lambda v: kinds._to_int(v) is None))
NOT_A_MATCH = json_value.filter(lambda v: v not in ("simple", "glob", "regex"))


def _finite(text):
    try:
        return math.isfinite(float(text))
    except (ValueError, OverflowError):
        return False


def wrong_value(command, prop):
    kind = dict(kinds.COMMON, **command.spec)[prop]
    if kind is kinds.MATCH:
        return NOT_A_MATCH
    if kind in WRONG:
        return WRONG[kind]
    if getattr(kind, "__qualname__", "").startswith("integer."):
        return NOT_AN_INTEGER
    return None


names = st.sampled_from(["a", "b", "idle", "A", "*", ".*", "nope", "", "a" * 300])


@st.composite
def refused_props(draw, command):
    """Properties of an acting command with at least one that must be
    refused: of a wrong kind, unknown, or an absurd count."""
    kinds_of = dict(kinds.COMMON, **command.spec)
    props = {}
    for prop in draw(st.lists(st.sampled_from(sorted(kinds_of)), max_size=4, unique=True)):
        props[prop] = draw(st.one_of(json_value, names))
    how = draw(st.sampled_from(["wrong", "unknown", "absurd"]))
    if how == "absurd" and command.name in ("incr", "set", "add"):
        count = draw(st.one_of(st.integers(min_value=10 ** 6), st.just(10 ** 30),
                               st.just(1e9), st.just("100000000")))
        if command.name == "incr":
            props.update(name=draw(st.sampled_from(["a", "b"])), nb=count)
        elif command.name == "set":
            props.update(name=draw(st.sampled_from(["a", "b"])),
                         options={"numprocesses": count})
            props.pop("key", None)
            props.pop("value", None)
        else:
            props.update(name="fresh", cmd="sleep 1", options={"numprocesses": count})
        return props
    candidates = [p for p in sorted(kinds_of) if wrong_value(command, p) is not None]
    if how == "unknown" or not candidates:
        unknown = draw(st.text(min_size=1, max_size=20).filter(lambda k: k not in kinds_of))
        props[unknown] = draw(json_value)
    else:
        prop = draw(st.sampled_from(candidates))
        props[prop] = draw(wrong_value(command, prop))
    return props


@st.composite
def requests(draw):
    name = draw(st.sampled_from(NAMES))
    command = get_command(name)
    if name in READING:
        props = draw(st.one_of(st.dictionaries(
            st.sampled_from(sorted(dict(kinds.COMMON, **command.spec)) + ["x", "nmae"]),
            st.one_of(json_value, names), max_size=4), json_value))
    else:
        props = draw(refused_props(command))
    request = {"command": draw(st.sampled_from([name, name.upper(), name.title()])),
               "properties": props}
    if draw(st.booleans()):
        request["id"] = draw(json_value)
    if draw(st.integers(0, 9)) == 0:
        request["msg_type"] = draw(st.sampled_from(["cast", "call", 5, None]))
    return request


def frames():
    """Anything: bytes, JSON that is no request, requests, deep nesting."""
    return st.one_of(
        st.binary(max_size=200).map(lambda b: ("raw", b)),
        json_value.map(lambda v: ("json", json.dumps(v).encode())),
        requests().map(lambda r: ("request", r)),
        st.integers(20, 3000).map(lambda n: ("deep", b"[" * n + b"]" * n)),
        st.integers(20, 3000).map(lambda n: ("deep", b'{"command": ' + b'{"a": ' * n)),
        st.sampled_from([b"NaN", b'{"command": "kill", "properties": {"name": "a", '
                         b'"graceful_timeout": Infinity}}', b"\xff\xfe{}",
                         b'{"command": "incr", "properties": {"name": "a", "nb": 1e400}}'])
        .map(lambda b: ("raw", b)),
    )


# --- the storm, then the check ----------------------------------------------------

@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
@given(frame=frames())
# a "cast" that is not JSON (Infinity): answered, as any frame circusd cannot read
@example(frame=("request", {"command": "kill", "msg_type": "cast",
                            "properties": {"name": "b", "graceful_timeout": float("-inf")}}))
def test_the_storm(storm, frame):
    kind, payload = frame
    if kind == "request":
        data = json.dumps(payload).encode()
        try:
            json.dumps(payload, allow_nan=False)
        except ValueError:
            # NaN or Infinity inside: not JSON, so circusd cannot read that
            # it is a cast, and answers it (an error) like any bad frame
            kind = "json"
    else:
        data = payload
    cast = kind == "request" and payload.get("msg_type") == "cast"
    reply = storm.send(data, cast)
    if cast:
        assert reply is None, (payload, reply)
        return
    assert reply is not None, (kind, payload)
    assert reply["status"] != "ok" or kind == "request", (payload, reply)
    if kind == "request":
        name = payload["command"].lower()
        if name not in READING:
            # what could act must have been refused, naming why
            assert reply["status"] == "error", (payload, reply)
        if isinstance(payload.get("id"), (str, int)) and not isinstance(payload["id"], bool):
            assert reply["id"] == payload["id"]
    if reply["status"] == "error":
        # never "command failed" (errno 5: an exception circusd did not expect)
        assert reply["errno"] in (1, 2, 3, 6), (payload, reply)
        assert len(reply["reason"]) < 1000


def test_oversized_frames(storm):
    from circus.controller import MAX_REQUEST_BYTES
    reply = storm.send(json.dumps({"command": "status", "id": "big",
                                   "properties": {"name": "x" * (MAX_REQUEST_BYTES - 100)}})
                       .encode())
    assert reply["errno"] == 3 and reply["id"] == "big"
    for size in (MAX_REQUEST_BYTES + 1, 4 * MAX_REQUEST_BYTES):
        storm.sock.send(b"[" * size)
        assert not storm.sock.poll(1000)  # dropped, with the connection
        storm.connect()
    assert storm.send(b'{"id": 1, "command": "numwatchers"}')["numwatchers"] == 3


def test_after_the_storm(storm):
    daemon = storm.daemon
    assert storm.sent >= min(EXAMPLES, 1000)
    assert storm.snapshot() == storm.before
    assert daemon.call("numprocesses")["numprocesses"] == 3
    log = daemon.read_log()
    assert b"Traceback" not in log and b"command failed" not in log
    grown = psutil.Process(daemon.proc.pid).memory_info().rss - storm.rss
    print("fuzz: %d frames, circusd's RSS grew by %.1f MB, log %d KB, cgroup %s"
          % (storm.sent, grown / 2 ** 20, len(log) // 1024, storm.cgroup.path or "none"))
    assert grown < 5 * 2 ** 20, grown
    # nothing was forked that still runs: circusd, its threads, its processes
    assert storm.cgroup.tasks() == storm.tasks
