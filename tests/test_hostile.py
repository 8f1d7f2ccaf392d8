"""circusd under hostile or careless control messages: wrong types, absurd
numbers, deep or huge frames. Each refusal names what is wrong and does
nothing; circusd keeps answering and its log stays small."""
import json
import time

import pytest
import zmq

from support import raw_call, wait_for

TWO = """
[watcher:a]
cmd = sleep 300
[watcher:b]
cmd = sleep 301
"""


def error(reply, errno, *words):
    assert reply is not None and reply["status"] == "error", reply
    assert reply["errno"] == errno, reply
    for word in words:
        assert word in reply["reason"], reply
    return reply


def state(daemon):
    """What a wrongly typed command must not change: statuses and pids."""
    return (daemon.call("status")["statuses"],
            {name: daemon.call("list", name=name)["pids"] for name in ("a", "b")})


def request(command, props, msg_id="t"):
    return {"id": msg_id, "command": command, "properties": props}


# --- item 2: every property has a type ----------------------------------------

@pytest.mark.parametrize("command", ["stop", "restart", "reload", "start", "quit",
                                     "reloadconfig", "status", "list"])
def test_properties_that_are_not_an_object_are_refused(circusd, command):
    daemon = circusd(TWO)
    before = state(daemon)
    for props in ([], [1], "a", 0, True):
        error(raw_call(daemon, request(command, props)), 3, "'properties' must be an object")
    assert state(daemon) == before


# (command, properties, the property the reason must name)
WRONG = [
    ("stop", {"name": None}, "'name'"),
    ("stop", {"name": ["a"]}, "'name'"),
    ("stop", {"match": []}, "'match'"),
    ("stop", {"match": 0}, "'match'"),
    ("stop", {"name": "a", "match": "fuzzy"}, "'match'"),
    ("stop", {"graceful": []}, "'graceful'"),
    ("stop", {"reason": 5}, "'reason'"),
    ("stop", {"nmae": "a"}, "'nmae'"),
    ("restart", {"match": {}}, "'match'"),
    ("restart", {"waiting": "maybe"}, "'waiting'"),
    ("reload", {"sequential": {}}, "'sequential'"),
    ("reload", {"name": 3}, "'name'"),
    ("start", {"name": False}, "'name'"),
    ("incr", {"name": "a", "nb": True}, "'nb'"),
    ("incr", {"name": "a", "nb": 2.5}, "'nb'"),
    ("incr", {"name": "a", "nb": "2x"}, "'nb'"),
    ("incr", {"name": "a", "nb": -1}, "'nb'"),
    ("decr", {"name": "a", "nb": [1]}, "'nb'"),
    ("kill", {"name": "a", "pid": "x"}, "'pid'"),
    ("kill", {"name": "a", "signum": []}, "'signum'"),
    ("kill", {"name": "a", "signum": "SIGNOPE"}, "'signum'"),
    ("kill", {"name": "a", "graceful_timeout": "soon"}, "'graceful_timeout'"),
    ("kill", {"name": "a", "graceful_timeout": -3}, "'graceful_timeout'"),
    ("signal", {"name": "a", "signum": 9, "children": "kids"}, "'children'"),
    ("signal", {"name": "a", "signum": 9, "pid": 0}, "'pid'"),
    ("signal", {"name": "a"}, "'signum'"),
    ("get", {"name": "a", "keys": [1]}, "'keys'"),
    ("get", {"name": "a", "keys": {}}, "'keys'"),
    ("globaloptions", {"keys": 5}, "'keys'"),
    ("set", {"name": "a", "options": []}, "'options'"),
    ("set", {"name": "a", "key": 1, "value": 2}, "'key'"),
    ("add", {"name": "c", "cmd": "sleep 1", "start": "later"}, "'start'"),
    ("add", {"name": "c", "cmd": "sleep 1", "options": "x"}, "'options'"),
    ("add", {"name": "c", "cmd": "sleep 1", "args": {"a": 1}}, "'args'"),
    ("rm", {"name": None}, "'name'"),
    ("rm", {"name": "a", "nostop": True}, "nostop"),
    ("stats", {"name": "a", "process": "first"}, "'process'"),
    ("stats", {"extended": "very"}, "'extended'"),
    ("status", {"name": {}}, "'name'"),
    ("list", {"name": 1.5}, "'name'"),
    ("numprocesses", {"name": []}, "'name'"),
    ("options", {"name": None}, "'name'"),
    ("dstats", {"verbose": True}, "'verbose'"),
    ("numwatchers", {"x": 1}, "'x'"),
    ("listsockets", {"x": 1}, "'x'"),
    ("listen", {"x": 1}, "'x'"),
    ("quit", {"waiting": []}, "'waiting'"),
    ("reloadconfig", {"waiting": {}}, "'waiting'"),
]


def test_a_wrongly_typed_property_is_refused_by_name_and_nothing_is_done(circusd):
    daemon = circusd(TWO)
    before = state(daemon)
    for command, props, named in WRONG:
        for waiting in (False, True):
            if waiting and "waiting" not in props:
                props = dict(props, waiting=True)
            reply = raw_call(daemon, request(command, props))
            error(reply, 3, named)
    assert state(daemon) == before
    assert daemon.call("numwatchers")["numwatchers"] == 2
    assert b"Traceback" not in daemon.read_log()


def test_json_numbers_and_strings_of_the_documented_kinds_are_accepted(circusd):
    daemon = circusd(TWO)
    # one number type in JSON; booleans as the config file writes them; a pid
    # as a string (Circus 0.19's circusctl kill sends it so)
    assert daemon.call("incr", name="a", nb=2.0, waiting="true")["numprocesses"] == 3
    assert daemon.call("decr", name="a", nb="2", waiting=1)["numprocesses"] == 1
    pid = daemon.call("list", name="a")["pids"][0]
    assert daemon.call("kill", name="a", pid=str(pid), signum="TERM",
                       graceful_timeout="1.5", waiting=True)["status"] == "ok"
    assert daemon.call("stop", name="A*", match="glob", waiting=True)["watchers"] == ["a"]
    assert daemon.call("status", name="a")["status"] == "stopped"
    # properties: null is no properties at all
    reply = raw_call(daemon, {"id": "n", "command": "status", "properties": None})
    assert reply["statuses"] == {"a": "stopped", "b": "active"}


# --- item 3: malformed, deep, huge frames -------------------------------------

def test_deeply_nested_json_is_invalid_json_without_a_traceback(circusd):
    daemon = circusd(TWO)
    for frame in (b"[" * 10000, b"[" * 10000 + b"]" * 10000,
                  json.dumps(request("status", {"name": "a"}, msg_id=[[[[[]]]]])).encode()
                  .replace(b"[[[[[]]]]]", b"[" * 5000 + b"]" * 5000),
                  b'{"command": "list", "properties": ' + b'{"a": ' * 40 + b"1" + b"}" * 41):
        reply = error(raw_call(daemon, frame), 1, "invalid JSON")
        assert reply["id"] is None
    # NaN and Infinity are not JSON; nor is a frame that is not UTF-8
    for frame in (b'{"id": "n", "command": "kill", "properties": {"name": "a", '
                  b'"graceful_timeout": Infinity}}',
                  b'{"id": "n", "command": "incr", "properties": {"name": "a", "nb": NaN}}',
                  b'{"id": "\xff", "command": "list"}'):
        error(raw_call(daemon, frame), 1, "invalid JSON")
    # an id must be a scalar: it is echoed in the reply
    reply = error(raw_call(daemon, {"id": {"a": [1]}, "command": "list"}), 3, "'id'")
    assert reply["id"] is None
    assert daemon.call("status", name="a")["status"] == "active"
    assert b"Traceback" not in daemon.read_log()


def test_the_log_never_repeats_a_frame_and_repeated_errors_are_throttled(circusd):
    daemon = circusd(TWO)
    size = len(daemon.read_log())
    frame = b"x" * 900_000  # 20 such frames wrote 21 MB of log before
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    try:
        sock.connect(daemon.endpoint)
        for _ in range(20):
            sock.send(frame)
        for _ in range(20):
            assert sock.poll(10000)
            assert json.loads(sock.recv())["errno"] == 1
    finally:
        sock.close()
    log = daemon.read_log()[size:]
    assert len(log) < 20_000, len(log)
    lines = [line for line in log.splitlines() if b"refused a request" in line]
    # a burst of 10, then one a second: 20 frames in well under 10 s
    assert 10 <= len(lines) < 20
    assert all(b"(900000 bytes)" in line and len(line) < 500 for line in lines)
    # what was dropped is counted on the next line let through
    time.sleep(1.1)  # the throttle's refill: one record a second
    error(raw_call(daemon, b"not json"), 1)
    wait_for(lambda: b"similar messages suppressed" in daemon.read_log()[size:],
             message="the count of suppressed lines")
    assert daemon.call("status", name="a")["status"] == "active"


def test_a_frame_above_the_maximum_size_is_dropped_before_it_is_read(circusd):
    from circus.controller import MAX_REQUEST_BYTES
    daemon = circusd(TWO)
    size = len(daemon.read_log())
    big = json.dumps(request("status", {"name": "a" * MAX_REQUEST_BYTES})).encode()
    assert raw_call(daemon, big, timeout=1.0) is None  # no answer: never read
    # just under the limit is read and answered
    fits = json.dumps(request("status", {"name": "a" * (MAX_REQUEST_BYTES - 100)})).encode()
    reply = error(raw_call(daemon, fits), 3, "not found")
    assert len(reply["reason"]) < 200  # nor is the name repeated in full
    assert daemon.call("status", name="a")["status"] == "active"
    assert b"aaaaaaaaaa" * 20 not in daemon.read_log()[size:]
