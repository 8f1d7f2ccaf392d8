"""The options schema (circus.options): every spec complete and in step with
the classes it configures; one boolean vocabulary and the same error texts
whichever way a value comes in (an ini file, get_arbiter's keywords, add and
set over the wire); one warning for options kept only for compatibility."""
import inspect
import signal
import textwrap

import pytest

from circus import get_arbiter
from circus.arbiter import Arbiter
from circus.errors import ConfigError
from circus.options import (
    CIRCUS_SCHEMA,
    PLUGIN_SCHEMA,
    SCHEMAS,
    SOCKET_SCHEMA,
    WATCHER_SCHEMA,
    Family,
    Section,
    Where,
    diff,
    facts,
    load,
)
from circus.sockets import CircusSocket
from circus.watcher import Watcher
from support import LogRecords, free_port, pid_alive, wait_for


def write(tmp_path, text, name="c.ini"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def endpoints():
    return {"controller": "tcp://127.0.0.1:%d" % free_port(),
            "pubsub_endpoint": "tcp://127.0.0.1:%d" % free_port()}


class Records(LogRecords):
    def compat(self):
        return [r.getMessage() for r in self.records
                if "accepted for compatibility and ignored" in r.getMessage()]


# --- the specs ----------------------------------------------------------------
@pytest.mark.parametrize("scope", sorted(SCHEMAS))
def test_every_option_has_a_converter_a_doc_and_a_default_it_accepts(scope):
    schema = SCHEMAS[scope]
    assert list(schema), scope
    for spec in list(schema) + list(schema.families):
        assert callable(spec.convert) or isinstance(spec.convert, dict), spec
        assert spec.doc and spec.doc.strip(), spec
        assert hasattr(spec, "default"), spec
        assert spec.scope == scope, spec
    for spec in schema:
        if spec.default is not None:
            # the default is a value the option accepts, unchanged
            assert spec.convert(spec.default) == spec.default, spec
        elif spec.required:
            with pytest.raises(ValueError):
                spec.convert(None)


def _defaults(function, skip=()):
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not p.empty and name not in skip}


def test_watcher_specs_match_the_watcher_signature():
    params = _defaults(Watcher.__init__)
    for spec in WATCHER_SCHEMA:
        if spec.name == "cmd":
            continue  # required: Watcher takes it positionally
        assert spec.name in params, spec
        assert spec.default == params[spec.name], spec
    for family in WATCHER_SCHEMA.families:
        assert family.keyword in params, family
    # every keyword of Watcher is an option, or something no file can give
    not_options = {"stopped", "prereload_fn", "loop"}
    options = set(WATCHER_SCHEMA.options) | {f.keyword for f in WATCHER_SCHEMA.families}
    assert set(params) - options == not_options


def test_socket_specs_match_circus_socket():
    params = _defaults(CircusSocket.__init__, skip=("name",))
    assert set(SOCKET_SCHEMA.options) == set(params) == set(CircusSocket.OPTIONS)
    for spec in SOCKET_SCHEMA:
        assert spec.default == params[spec.name], spec


def test_circus_specs_match_the_arbiter():
    params = _defaults(Arbiter.__init__)
    attributes = [spec for spec in CIRCUS_SCHEMA if spec.attribute]
    assert attributes
    for spec in attributes:
        if spec.name in params:
            assert spec.default == params[spec.name], spec
    arbiter = Arbiter([], endpoint=None, pubsub_endpoint=None)
    options = arbiter.get_arbiter_options()
    assert {spec.name for spec in attributes} | {"numwatchers", "numprocesses"} == set(options)


def test_the_daemon_modules_use_the_facts_themselves():
    # one table each: the daemon imports what the schema checks against
    from circus import process, sockets, stream, watcher
    assert watcher.HOOK_NAMES is facts.HOOK_NAMES
    assert watcher.READY_MODES is facts.READY_MODES
    assert process.rlimit_id is facts.rlimit_id
    assert sockets._family is facts.socket_family and sockets._type is facts.socket_type
    assert stream._IGNORED is facts.STREAM_COMPAT_KEYS


def test_the_compatibility_only_options():
    compat = {(schema.scope, spec.name) for schema in SCHEMAS.values() for spec in schema
              if spec.compat}
    assert compat == {("watcher", "stream_backend"), ("circus", "stream_backend"),
                      ("circus", "umask")}
    for keyword in ("stdout_stream", "stderr_stream"):
        assert set(WATCHER_SCHEMA.family(keyword).compat) == set(facts.STREAM_COMPAT_KEYS)
    found = WATCHER_SCHEMA.compat(["stdout_stream.refresh_time", "stderr_stream.stream_backend",
                                   "stdout_stream.filename", "numprocesses", "shell"])
    assert set(found) == {"stdout_stream.refresh_time", "stderr_stream.stream_backend"}
    assert all(why for why in found.values())


def test_families_and_free_keys():
    assert WATCHER_SCHEMA.convert("RLIMIT_NOFILE", "500") == ("rlimit_nofile", 500)
    assert WATCHER_SCHEMA.convert("Stdout_Stream.Class", "QueueStream") == \
        ("stdout_stream.class", "QueueStream")
    assert WATCHER_SCHEMA.convert("stdout_stream.MyOption", "x") == ("stdout_stream.MyOption", "x")
    assert WATCHER_SCHEMA.convert("myplugin.option", 1) == ("myplugin.option", 1)
    assert isinstance(WATCHER_SCHEMA.spec("hooks.after_start"), Family)
    with pytest.raises(ValueError, match="unknown option"):
        WATCHER_SCHEMA.convert("nodot", 1)
    with pytest.raises(ValueError, match="unknown option"):
        SOCKET_SCHEMA.convert("my.option", 1)
    assert PLUGIN_SCHEMA.convert("whatever", "kept") == ("whatever", "kept")


def test_sections_remember_where_they_were_written(tmp_path):
    main = write(tmp_path, """
        [circus]
        check_delay = 2
        include = more.ini

        [watcher:web]
        cmd = sleep 1
        """, "main.ini")
    more = write(tmp_path, "[circus]\nwarmup_delay = 1\n\n[socket:s]\nport = 0\n", "more.ini")
    cfg = load(str(main))
    (web,) = cfg["watchers"]
    assert isinstance(web, Section) and web == {"name": "web", "cmd": "sleep 1"}
    assert web.where == Where(str(main), "watcher:web")
    assert web.where_of("cmd") == Where(str(main), "watcher:web", "cmd")
    assert str(web.where_of("cmd")) == "%s [watcher:web] cmd" % main
    assert cfg["sockets"][0].where.filename == str(more)
    # [circus] is merged: each option remembers its own file
    assert cfg["circus"].where_of("check_delay").filename == str(main)
    assert cfg["circus"].where_of("warmup_delay").filename == str(more)
    error = cfg["sockets"][0].where.error("bad", "port")
    assert isinstance(error, ConfigError)
    assert str(error) == "%s [socket:s] port: bad" % more


def test_diff_per_option():
    old = Section(Where("a.ini", "watcher:w"), {"name": "w", "cmd": "x", "numprocesses": 2})
    same = Section(Where("b.ini", "watcher:w"), {"name": "w", "cmd": "x", "numprocesses": 2,
                                                 "shell": False})  # its default
    assert diff(old, same) == {}
    assert diff(old, dict(old, numprocesses=3)) == {"numprocesses": (2, 3)}
    assert diff(old, {"name": "w", "cmd": "y"}) == {"cmd": ("x", "y"), "numprocesses": (2, 1)}


# --- one boolean vocabulary ----------------------------------------------------
TRUE_WORDS = ["1", "true", "True", "yes", "on", "y", "t", " YES "]
FALSE_WORDS = ["0", "false", "no", "Off", "n", "f", "none", ""]
REFUSED_WORDS = ["maybe", "2", "-1", "yes please", "nope"]
WORDS = TRUE_WORDS + FALSE_WORDS + REFUSED_WORDS


def _ini_shell(tmp_path, word):
    path = write(tmp_path, "[watcher:w]\ncmd = sleep 1\nshell = %s\n" % word)
    try:
        return load(str(path))["watchers"][0]["shell"]
    except ConfigError as exc:
        assert exc.option == "shell"
        return "refused: " + exc.reason


def _kwargs_shell(word):
    try:
        arbiter = get_arbiter([{"name": "w", "cmd": "sleep 1", "shell": word}], **endpoints())
    except ValueError as exc:
        prefix = "watcher 'w', option 'shell': "
        assert str(exc).startswith(prefix), exc
        return "refused: " + str(exc)[len(prefix):]
    return arbiter.get_watcher("w").shell


def _wire(daemon, command, word, **props):
    reply = daemon.call(command, **props)
    if reply["status"] == "error":
        assert reply["errno"] == 6 and reply["reason"].startswith("option shell: "), reply
        return "refused: " + reply["reason"][len("option shell: "):]
    return daemon.call("get", name=props["name"], keys=["shell"])["options"]["shell"]


def test_one_boolean_vocabulary_in_ini_kwargs_and_over_the_wire(tmp_path, circusd):
    daemon = circusd("[watcher:base]\ncmd = sleep 300\n")
    assert daemon.call("add", name="target", cmd="sleep 301")["status"] == "ok"
    for index, word in enumerate(WORDS):
        expected = True if word in TRUE_WORDS else False if word in FALSE_WORDS else None
        ini = _ini_shell(tmp_path, word)
        if expected is None:
            assert str(ini).startswith("refused: ") and "not a boolean" in ini, (word, ini)
        else:
            assert ini is expected, (word, ini)
        assert _kwargs_shell(word) == ini, word
        added = _wire(daemon, "add", word, name="w%d" % index, cmd="sleep 302",
                      options={"shell": word})
        assert added == ini, word
        assert _wire(daemon, "set", word, name="target", options={"shell": word}) == ini, word


def test_the_start_property_of_add_speaks_the_same_booleans(circusd):
    daemon = circusd("[watcher:base]\ncmd = sleep 300\n")
    for index, word in enumerate(["yes", "t", "0", "off", ""]):
        name = "s%d" % index
        assert daemon.call("add", name=name, cmd="sleep 303", start=word,
                           waiting=True)["status"] == "ok"
        status = daemon.call("status", name=name)["status"]
        assert status == ("active" if word in TRUE_WORDS else "stopped"), (word, status)
        assert daemon.call("rm", name=name, waiting=True)["status"] == "ok"
    for word in ("maybe", "2"):
        reply = daemon.call("add", name="bad", cmd="sleep 303", start=word)
        assert reply["status"] == "error" and reply["errno"] == 3, reply
        assert "'start' must be a boolean" in reply["reason"]


# --- the same checks, the same words ---------------------------------------------
# (option, bad value, whether `set` takes the option at all)
BAD_VALUES = [
    ("numprocesses", "abc", True),
    ("numprocesses", "-1", True),
    ("max_retry", "-5", True),
    ("warmup_delay", "soon", True),
    ("graceful_timeout", "-2", True),
    ("shell", "maybe", True),
    ("stop_signal", "SIGFOO", True),
    ("stop_signal", "999", True),
    ("rlimit_bogus", "5", True),
    ("rlimit_nofile", "lots", True),
    ("env", "JUSTANAME", True),
    ("ready", "whenever", True),
    ("stream_backend", "fibers", True),
    ("hooks.before_lunch", "x.y", True),
    ("hooks.before_start", "circus_no_such_module.hook", True),
    ("uid", "circus-no-such-user", True),
    ("gid", "circus-no-such-group", True),
    ("not_an_option", "1", True),
    ("cmd", "serve $(circus.nonsense)", True),
    ("cmd", "serve $(circus.sockets.nope)", True),
    ("args", "--fd $(circus.sockets.web)", True),  # use_sockets is false
    ("cmd", "serve $(circus.env.CIRCUS_SURELY_UNSET_VAR)", True),
    ("stdout_stream.class", "circus_no_such_module.Stream", False),
    ("stderr_stream.max_bytes", "1MB", False),
]


def _ini_reason(tmp_path, key, value):
    lines = ["[watcher:w]"]
    if key != "cmd":
        lines.append("cmd = sleep 1")
    if key == "stderr_stream.max_bytes":
        lines.append("stderr_stream.filename = x.log")
    lines.append("%s = %s" % (key, value))
    lines += ["[socket:web]", "host = 127.0.0.1", "port = 0"]
    path = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        Arbiter.load_from_config(str(path))
    assert info.value.option == key and info.value.section == "watcher:w", info.value
    return info.value.reason


def _kwargs_reason(key, value):
    spec = {"name": "w", "cmd": "sleep 1", key: value}
    if key == "stderr_stream.max_bytes":
        spec["stderr_stream.filename"] = "x.log"
    with pytest.raises(ValueError) as info:
        get_arbiter([spec], sockets=[CircusSocket("web", host="127.0.0.1", port=0)],
                    **endpoints())
    return str(info.value)


def _wire_reason(reply):
    assert reply["status"] == "error" and reply["errno"] == 6, reply
    return reply["reason"]


def test_bad_values_get_the_same_error_text_every_way_in(tmp_path, circusd):
    daemon = circusd("[watcher:target]\ncmd = sleep 300\nautostart = false\n"
                     "[socket:web]\nhost = 127.0.0.1\nport = 0\n")
    for key, value, settable in BAD_VALUES:
        reason = _ini_reason(tmp_path, key, value)
        assert _kwargs_reason(key, value) == "watcher 'w', option %r: %s" % (key, reason)

        options = {key: value}
        if key == "stderr_stream.max_bytes":
            options["stderr_stream.filename"] = "x.log"
        if key == "cmd":
            reply = daemon.call("add", name="w", cmd=value)
        else:
            reply = daemon.call("add", name="w", cmd="sleep 1", options=options)
        assert _wire_reason(reply) == "option %s: %s" % (key, reason), key
        if settable:
            reply = daemon.call("set", name="target", options={key: value})
            assert _wire_reason(reply) == "option %s: %s" % (key, reason), key
    # nothing was added or changed on the way
    assert daemon.call("list")["watchers"] == ["target"]
    assert daemon.call("options", name="target")["options"]["cmd"] == "sleep 300"


# --- compatibility-only options: one warning, not one per spawn -----------------
COMPAT_INI = """
[circus]
endpoint =
pubsub_endpoint =
stream_backend = gevent
umask = 002

[watcher:w]
cmd = sleep 120.3
numprocesses = 3
stream_backend = gevent
stdout_stream.class = QueueStream
stdout_stream.refresh_time = 0.3

[watcher:plain]
cmd = sleep 120.4
"""


def test_compat_options_log_one_warning_per_section(tmp_path):
    path = write(tmp_path, COMPAT_INI)
    with Records() as records:
        arbiter = Arbiter.load_from_config(str(path))
        arbiter.start_background()
        try:
            watcher = arbiter.get_watcher("w")
            pids = wait_for(lambda: (lambda p: p if len(p) == 3 else None)(list(watcher.pids)),
                            message="3 processes")
            import os
            os.kill(pids[0], signal.SIGKILL)  # and a respawn
            wait_for(lambda: len(watcher.pids) == 3 and pids[0] not in watcher.pids,
                     message="the replacement")
        finally:
            arbiter.stop()
        assert not [pid for pid in pids if pid_alive(pid)]
    warnings = records.compat()
    assert len(warnings) == 2, warnings
    circus, watcher = sorted(warnings, key=lambda m: "[watcher:w]" in m)
    assert circus.startswith("%s [circus]: " % path)
    for name in ("stream_backend", "umask"):
        assert name in circus
    assert watcher.startswith("%s [watcher:w]: " % path)
    assert "stream_backend" in watcher and "stdout_stream.refresh_time" in watcher
    assert "umask" not in watcher


def test_compat_options_of_get_arbiter_warn_once():
    with Records() as records:
        get_arbiter([{"name": "a", "cmd": "sleep 1"}, {"name": "b", "cmd": "sleep 1"}],
                    stream_backend="gevent", **endpoints())
        get_arbiter([{"name": "a", "cmd": "sleep 1"}], **endpoints())  # defaults: silent
    (warning,) = records.compat()
    assert warning.startswith("get_arbiter: ") and "stream_backend" in warning


def test_compat_options_over_the_wire_warn_once(circusd):
    daemon = circusd("[watcher:base]\ncmd = sleep 300\n")
    assert daemon.call("add", name="old", cmd="sleep 304", start=True, waiting=True,
                       options={"stream_backend": "gevent", "numprocesses": 2})["status"] == "ok"
    assert daemon.call("set", name="old", options={"stream_backend": "thread"},
                       waiting=True)["status"] == "ok"
    assert daemon.call("incr", name="old", nb=2, waiting=True)["status"] == "ok"
    log = daemon.read_log().decode()
    lines = [line for line in log.splitlines() if "accepted for compatibility" in line]
    assert len(lines) == 2, lines
    assert "[watcher:old]: accepted for compatibility and ignored: stream_backend" in lines[0]
    assert lines[1].count("stream_backend") == 1 and "set of [watcher:old]" in lines[1]
