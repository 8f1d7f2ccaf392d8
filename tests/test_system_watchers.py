"""circus.system_watchers: the watchers circusd runs for itself (plugins,
circusd-stats) and ChildLog, which logs their "[LEVEL] line"s in circusd's
log at the level each names."""
import logging
import re

import pytest

from circus.system_watchers import ChildLog
from support import free_port, wait_for


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append((record.levelname, record.getMessage()))


@pytest.fixture
def records():
    handler = Records()
    log = logging.getLogger("circus")
    level = log.level
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    yield handler.records
    log.removeHandler(handler)
    log.setLevel(level)


def test_child_log_levels(records):
    stream = ChildLog(name="plugin:x")
    stream({"pid": 7, "name": "stderr", "data":
            b"[DEBUG] a\n[WARNING] b\n2024-01-02 03:04:05 circusd-stats[8] [ERROR] c\n"})
    # a line cut between two reads is logged once, whole
    stream({"pid": 7, "name": "stderr", "data": b"[INFO] d e"})
    stream({"pid": 7, "name": "stderr", "data": b"nd\n"})
    # untagged lines continue the record before them (a traceback logged with
    # logger.exception), an uncaught exception's traceback is an error
    stream({"pid": 7, "name": "stderr", "data": b"[ERROR] failed\n  File x\nValueError\n"})
    stream({"pid": 7, "name": "stderr", "data": b"[INFO] fine\n"
                                                 b"Traceback (most recent call last):\n"
                                                 b"  File y\n"})
    # each process and each stream has its own state; without a tag before
    # them, lines are INFO on stdout (print()) and ERROR on stderr
    stream({"pid": 9, "name": "stdout", "data": b"printed\n\n"})
    stream({"pid": 9, "name": "stderr", "data": b"raw error\n"})
    assert records == [
        ("DEBUG", "plugin:x[7]: a"), ("WARNING", "plugin:x[7]: b"),
        ("ERROR", "plugin:x[7]: c"), ("INFO", "plugin:x[7]: d end"),
        ("ERROR", "plugin:x[7]: failed"), ("ERROR", "plugin:x[7]:   File x"),
        ("ERROR", "plugin:x[7]: ValueError"), ("INFO", "plugin:x[7]: fine"),
        ("ERROR", "plugin:x[7]: Traceback (most recent call last):"),
        ("ERROR", "plugin:x[7]:   File y"),
        ("INFO", "plugin:x[9]: printed"), ("ERROR", "plugin:x[9]: raw error")]


def test_child_log_caps_a_line_without_end(records):
    stream = ChildLog(name="n")
    stream({"pid": 1, "name": "stdout", "data": b"x" * (ChildLog.MAX_LINE + 1)})
    assert records == [("INFO", "n[1]: " + "x" * (ChildLog.MAX_LINE + 1))]


def test_plugin_and_stats_lines_reach_circusd_log_at_their_level(circusd):
    endpoint = "tcp://127.0.0.1:%d" % free_port()
    daemon = circusd("""
        [circus]
        stats_endpoint = %s

        [plugin:chatty]
        use = tests.plugins_support.chatty.Chatty

        [watcher:sleeper]
        cmd = sleep 300
        """ % endpoint)
    line = re.compile(r"\[(\w+)\] ((?:plugin:chatty|circusd-stats)\[\d+\]: .*)$")

    def logged():
        found = [line.search(text) for text in daemon.read_log().decode().splitlines()]
        return [(m.group(1), re.sub(r"\[\d+\]", "[PID]", m.group(2))) for m in found if m]

    wait_for(lambda: ("INFO", "plugin:chatty[PID]: chatty printed line") in logged()
             and any(name.startswith("circusd-stats[PID]: publishing stats on")
                     for _, name in logged()),
             timeout=30, message="the plugin's and circusd-stats' lines in circusd's log")
    entries = logged()
    for expected in [("DEBUG", "plugin:chatty[PID]: chatty debug line"),
                     ("INFO", "plugin:chatty[PID]: chatty info line"),
                     ("WARNING", "plugin:chatty[PID]: chatty warning line"),
                     ("ERROR", "plugin:chatty[PID]: chatty error line"),
                     ("ERROR", "plugin:chatty[PID]: chatty exception line"),
                     ("ERROR", "plugin:chatty[PID]: Traceback (most recent call last):"),
                     ("ERROR", "plugin:chatty[PID]: ValueError: chatty boom"),
                     ("INFO", "plugin:chatty[PID]: chatty after the exception"),
                     ("INFO", "circusd-stats[PID]: publishing stats on %s" % endpoint)]:
        assert expected in entries, (expected, entries)
    # circusd-stats' own time and name are not repeated in circusd's line
    stats = [text for _, text in entries if text.startswith("circusd-stats")]
    assert not any(re.search(r"\d{4}-\d\d-\d\d", text) or text.count("circusd-stats[") > 1
                   for text in stats), stats
