"""The ini configuration of section 5.3: reading, includes, env sections,
substitutions, and errors that name the file, the section and the option."""
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from circus import config
from circus.arbiter import Arbiter
from circus.config import ConfigError
from circus.process import Process
from circus.stream import FileStream
from support import BIN, ROOT, free_port, port_is_free, run_until_exit
from support.aio import until

PY = sys.executable
CIRCUSD = os.path.join(BIN, "circusd")


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def watchers_by_name(cfg):
    return {w["name"]: w for w in cfg["watchers"]}


# --- the format ---------------------------------------------------------------
SEED_EXAMPLE = """
[circus]
check_delay = 5
endpoint = tcp://127.0.0.1:5555
pubsub_endpoint = tcp://127.0.0.1:5556
include = /path/to/configs/*.enabled.ini

[watcher:myprogram]
cmd = python
args = -u myprogram.py $(WID) $(ENV.VAR)
warmup_delay = 0
numprocesses = 5

# will push in test.log the stream every 300 ms
stdout_stream.class = FileStream
stdout_stream.filename = test.log
stdout_stream.refresh_time = 0.3

[plugin:statsd]
use = circus.plugins._statsd.StatsdEmitter
host = localhost
port = 8125
sample_rate = 1.0
application_name = example

[socket:web]
host = localhost
port = 8080
"""


def test_the_documented_example_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("VAR", "value")
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "circus.ini", SEED_EXAMPLE)
    cfg = config.load(str(path))
    assert cfg["filename"] == str(path)
    assert cfg["circus"] == {"check_delay": 5.0, "endpoint": "tcp://127.0.0.1:5555",
                             "pubsub_endpoint": "tcp://127.0.0.1:5556",
                             "include": "/path/to/configs/*.enabled.ini"}
    (watcher,) = cfg["watchers"]
    assert watcher["name"] == "myprogram"
    assert watcher["cmd"] == "python"
    assert watcher["numprocesses"] == 5 and watcher["warmup_delay"] == 0.0
    assert watcher["stdout_stream.class"] == "FileStream"
    assert cfg["plugins"] == [{"name": "statsd", "use": "circus.plugins._statsd.StatsdEmitter",
                               "host": "localhost", "port": "8125", "sample_rate": "1.0",
                               "application_name": "example"}]
    assert cfg["sockets"] == [{"name": "web", "host": "localhost", "port": 8080}]

    # and the objects circusd builds from it, without binding or spawning
    arbiter = Arbiter.load_from_config(str(path))
    assert arbiter.check_delay == 5.0
    assert arbiter.endpoint == "tcp://127.0.0.1:5555"
    (built,) = arbiter.watchers
    assert built.numprocesses == 5
    assert isinstance(built.stdout_stream, FileStream)
    assert built.stdout_stream.filename == str(tmp_path / "test.log")
    assert built.stderr_stream is None
    assert arbiter.sockets["web"].port == 8080 and not arbiter.sockets["web"].bound
    process = Process(2, built.cmd, args=built.args, spawn=False)
    assert process.format_args() == ["python", "-u", "myprogram.py", "2", "value"]


def test_options_are_converted_and_case_insensitive(tmp_path):
    path = write(tmp_path / "c.ini", """
        [circus]
        warmup_delay = 0.5
        debug = yes
        stats_endpoint = tcp://127.0.0.1:5557

        [watcher:web]
        CMD = sleep 10
        Shell = true
        numprocesses = 2
        max_retry = -1
        stop_signal = quit
        graceful_timeout = 2.5
        rlimit_NOFILE = 500
        env = A=1, B = two
        copy_env = on
        priority = 3
        max_age = 60
        max_age_variance = 5
        hooks.before_start = tests.apps.watcher_hooks.refuse
        stderr_stream.class = QueueStream
        myplugin.option = kept

        [socket:web]
        host = 127.0.0.1
        port = 0
        backlog = 16
        so_reuseport = true
        """)
    cfg = config.load(str(path))
    assert cfg["circus"]["warmup_delay"] == 0.5 and cfg["circus"]["debug"] is True
    w = watchers_by_name(cfg)["web"]
    assert w["cmd"] == "sleep 10" and w["shell"] is True and w["numprocesses"] == 2
    assert w["max_retry"] == -1 and w["stop_signal"] == 3 and w["graceful_timeout"] == 2.5
    assert w["rlimit_nofile"] == 500 and w["env"] == {"A": "1", "B": "two"}
    assert w["copy_env"] is True and w["priority"] == 3 and w["max_age"] == 60.0
    assert w["hooks.before_start"] == "tests.apps.watcher_hooks.refuse"
    assert w["myplugin.option"] == "kept"
    (sock,) = cfg["sockets"]
    assert sock == {"name": "web", "host": "127.0.0.1", "port": 0, "backlog": 16,
                    "so_reuseport": True}
    arbiter = Arbiter.load_from_config(str(path))
    watcher = arbiter.get_watcher("web")
    assert watcher.rlimits == {"nofile": 500}
    assert watcher.options == {"myplugin.option": "kept"}
    assert watcher.stderr_stream.__class__.__name__ == "QueueStream"
    assert arbiter.stats_endpoint == "tcp://127.0.0.1:5557"


def test_empty_endpoint_means_no_controller(tmp_path):
    path = write(tmp_path / "c.ini", """
        [circus]
        endpoint =
        pubsub_endpoint =

        [watcher:w]
        cmd = sleep 1
        """)
    arbiter = Arbiter.load_from_config(str(path))
    assert arbiter.endpoint is None and arbiter.pubsub_endpoint is None


# --- include and include_dir --------------------------------------------------
def test_include_globs_are_relative_to_the_including_file(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    write(conf / "main.ini", """
        [circus]
        include = sites/*.enabled.ini extra.ini

        [watcher:main]
        cmd = sleep 1
        """)
    write(conf / "sites" / "a.enabled.ini", """
        [circus]
        include = nested/*.ini

        [watcher:a]
        cmd = sleep 2
        """)
    write(conf / "sites" / "nested" / "deep.ini", """
        [watcher:deep]
        cmd = sleep 3
        """)
    write(conf / "sites" / "b.disabled.ini", """
        [watcher:b]
        cmd = sleep 4
        """)
    write(conf / "extra.ini", """
        [socket:s]
        port = 0
        """)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # globs must not depend on the cwd
    cfg = config.load(str(conf / "main.ini"))
    assert sorted(watchers_by_name(cfg)) == ["a", "deep", "main"]
    assert [s["name"] for s in cfg["sockets"]] == ["s"]
    assert watchers_by_name(cfg)["deep"].where.filename == str(conf / "sites/nested/deep.ini")


def test_circus_sections_of_included_files_merge_without_conflicts(tmp_path):
    write(tmp_path / "main.ini", """
        [circus]
        check_delay = 2
        include = a.ini

        [watcher:main]
        cmd = sleep 1
        """)
    write(tmp_path / "a.ini", """
        [circus]
        check_delay = 2
        warmup_delay = 0.5
        """)
    cfg = config.load(str(tmp_path / "main.ini"))
    assert cfg["circus"] == {"check_delay": 2.0, "warmup_delay": 0.5, "include": "a.ini"}

    conflicting = write(tmp_path / "a.ini", "[circus]\ncheck_delay = 3\n")
    with pytest.raises(ConfigError) as info:
        config.load(str(tmp_path / "main.ini"))
    assert info.value.filename == str(conflicting) and info.value.option == "check_delay"
    assert str(tmp_path / "main.ini") in str(info.value)


def test_include_cycle_is_an_error_naming_the_chain(tmp_path):
    write(tmp_path / "a.ini", """
        [circus]
        include = b.ini

        [watcher:a]
        cmd = sleep 1
        """)
    write(tmp_path / "b.ini", """
        [circus]
        include = a.ini

        [watcher:b]
        cmd = sleep 1
        """)
    with pytest.raises(ConfigError) as info:
        config.load(str(tmp_path / "a.ini"))
    a, b = str(tmp_path / "a.ini"), str(tmp_path / "b.ini")
    assert info.value.filename == b and info.value.option == "include"
    assert "circular include: %s -> %s -> %s" % (a, b, a) in str(info.value)


def test_a_file_included_twice_is_read_once(tmp_path):
    # not a loop: two files include a third
    write(tmp_path / "main.ini", "[circus]\ninclude = a.ini b.ini\n")
    write(tmp_path / "a.ini", "[circus]\ninclude = common.ini\n[watcher:a]\ncmd = sleep 1\n")
    write(tmp_path / "b.ini", "[circus]\ninclude = common.ini\n[watcher:b]\ncmd = sleep 1\n")
    write(tmp_path / "common.ini", "[watcher:common]\ncmd = sleep 1\n")
    cfg = config.load(str(tmp_path / "main.ini"))
    assert sorted(watchers_by_name(cfg)) == ["a", "b", "common"]


def test_include_dir_reads_every_ini_file_of_the_directory(tmp_path, monkeypatch):
    write(tmp_path / "main.ini", """
        [circus]
        include_dir = conf.d more.d

        [watcher:main]
        cmd = sleep 1
        """)
    write(tmp_path / "conf.d" / "10-web.ini", "[watcher:web]\ncmd = sleep 1\n")
    write(tmp_path / "conf.d" / "20-db.ini", "[watcher:db]\ncmd = sleep 1\n")
    write(tmp_path / "conf.d" / "README.txt", "[watcher:readme]\ncmd = sleep 1\n")
    write(tmp_path / "conf.d" / "old.ini.bak", "[watcher:bak]\ncmd = sleep 1\n")
    write(tmp_path / "more.d" / "cache.ini", "[watcher:cache]\ncmd = sleep 1\n")
    monkeypatch.chdir("/")
    cfg = config.load(str(tmp_path / "main.ini"))
    assert sorted(watchers_by_name(cfg)) == ["cache", "db", "main", "web"]


# --- [env:NAME] sections --------------------------------------------------------
def test_env_sections_by_name_list_and_glob(tmp_path):
    path = write(tmp_path / "c.ini", """
        [watcher:web1]
        cmd = sleep 1
        env = OWN=1, SHARED=own

        [watcher:web2]
        cmd = sleep 1

        [watcher:db]
        cmd = sleep 1

        [watcher:cache]
        cmd = sleep 1

        [env:web*]
        SHARED = from-glob
        CamelCase = kept

        [env:db, cache]
        LISTED = yes

        [env:CACHE]
        ONLY_CACHE = 1
        """)
    w = watchers_by_name(config.load(str(path)))
    assert w["web1"]["env"] == {"OWN": "1", "SHARED": "from-glob", "CamelCase": "kept"}
    assert w["web2"]["env"] == {"SHARED": "from-glob", "CamelCase": "kept"}
    assert w["db"]["env"] == {"LISTED": "yes"}
    assert w["cache"]["env"] == {"LISTED": "yes", "ONLY_CACHE": "1"}


# --- substitutions ------------------------------------------------------------
def test_circus_env_in_values_comes_from_circusds_environment(tmp_path, monkeypatch):
    port = free_port()
    monkeypatch.setenv("CIRCUS_TEST_PORT", str(port))
    monkeypatch.setenv("CIRCUS_TEST_DIR", str(tmp_path))
    path = write(tmp_path / "c.ini", """
        [circus]
        endpoint = tcp://127.0.0.1:$(circus.env.circus_test_port)

        [watcher:w]
        cmd = sleep 1
        working_dir = $(CIRCUS.ENV.CIRCUS_TEST_DIR)
        numprocesses = $(circus.env.CIRCUS_TEST_PORT)
        stdout_stream.class = FileStream
        stdout_stream.filename = $(circus.env.CIRCUS_TEST_DIR)/out.log

        [env:w]
        FROM_ENV = $(circus.env.CIRCUS_TEST_DIR)

        [socket:s]
        port = $(circus.env.CIRCUS_TEST_PORT)
        """)
    cfg = config.load(str(path))
    assert cfg["circus"]["endpoint"] == "tcp://127.0.0.1:%d" % port
    w = cfg["watchers"][0]
    assert w["working_dir"] == str(tmp_path) and w["numprocesses"] == port
    assert w["stdout_stream.filename"] == "%s/out.log" % tmp_path
    assert w["env"] == {"FROM_ENV": str(tmp_path)}
    assert cfg["sockets"][0]["port"] == port


def test_variables_of_the_watcher_env_are_resolved_at_spawn(tmp_path):
    path = write(tmp_path / "c.ini", """
        [watcher:w]
        cmd = echo $(circus.env.OWN) $(circus.wid)
        env = OWN=mine
        """)
    w = config.load(str(path))["watchers"][0]
    assert w["cmd"] == "echo $(circus.env.OWN) $(circus.wid)"
    process = Process(4, w["cmd"], env=w["env"], spawn=False)
    assert process.format_args() == ["echo", "mine", "4"]


def test_legacy_wid_and_env_forms(tmp_path, monkeypatch):
    monkeypatch.setenv("CIRCUS_LEGACY", "from-circusd")
    path = write(tmp_path / "c.ini", """
        [watcher:w]
        cmd = prog $(WID) $WID $(wid)
        args = --a=$(ENV.X) --b=$(env.CIRCUS_LEGACY) --c=$(circus.WID) ${socket:web}
        env = X=x-value
        use_sockets = true

        [socket:web]
        port = 0
        """)
    w = config.load(str(path))["watchers"][0]
    process = Process(7, w["cmd"], args=w["args"], env=w["env"],
                      variables={"sockets.web": 11}, spawn=False)
    assert process.format_args() == ["prog", "7", "7", "7", "--a=x-value",
                                     "--b=from-circusd", "--c=7", "11"]


def test_substitution_reaches_a_real_spawn(tmp_path):
    out = tmp_path / "argv"
    out.mkdir()
    path = write(tmp_path / "c.ini", """
        [circus]
        endpoint =
        pubsub_endpoint =

        [watcher:w]
        cmd = %s -c "import os, sys, time; p = os.path.join(*sys.argv[1:3]); open(p + '.tmp', 'w').write(' '.join(sys.argv[3:])); os.rename(p + '.tmp', p); time.sleep(60)"
        args = %s $(WID) $(ENV.X) $(circus.sockets.web) $(circus.numprocesses)
        numprocesses = 2
        use_sockets = true
        env = X=x

        [socket:web]
        host = 127.0.0.1
        port = 0
        """ % (PY, out))
    import asyncio

    async def main():
        arbiter = Arbiter.load_from_config(str(path))
        task = asyncio.ensure_future(arbiter.run())

        def both_written():
            assert not task.done(), task
            return len([p for p in out.iterdir() if "." not in p.name]) >= 2
        try:
            await until(both_written, timeout=10, interval=0.02, message="the argv written")
            fd = arbiter.sockets["web"].fileno()
            return fd, {p.name: p.read_text() for p in out.iterdir() if "." not in p.name}
        finally:
            arbiter.request_quit()
            await asyncio.wait_for(task, 30)

    fd, written = asyncio.run(main())
    assert written == {"1": "x %d 2" % fd, "2": "x %d 2" % fd}


# --- errors -------------------------------------------------------------------
# (config text, section, option, what the message says)
ERRORS = [
    ("[bogus]\nx = 1\n", "bogus", None, "unknown section"),
    ("[watcher:]\ncmd = sleep 1\n", "watcher:", None, "unknown section"),
    ("[circus]\nnot_an_option = 1\n", "circus", "not_an_option", "unknown option"),
    ("[watcher:w]\ncmd = sleep 1\nnot_an_option = 1\n", "watcher:w", "not_an_option",
     "unknown option"),
    ("[socket:s]\nport = 0\nnot_an_option = 1\n", "socket:s", "not_an_option",
     "unknown option"),
    ("[watcher:w]\ncmd = sleep 1\nnumprocesses = abc\n", "watcher:w", "numprocesses",
     "'abc' is not an integer"),
    ("[watcher:w]\ncmd = sleep 1\nnumprocesses = -1\n", "watcher:w", "numprocesses",
     "minimum"),
    ("[watcher:w]\ncmd = sleep 1\nmax_retry = -5\n", "watcher:w", "max_retry", "minimum"),
    ("[watcher:w]\ncmd = sleep 1\nwarmup_delay = soon\n", "watcher:w", "warmup_delay",
     "not a number"),
    ("[watcher:w]\ncmd = sleep 1\nshell = maybe\n", "watcher:w", "shell", "not a boolean"),
    ("[watcher:w]\ncmd = sleep 1\nstop_signal = SIGFOO\n", "watcher:w", "stop_signal",
     "not a signal"),
    ("[watcher:w]\ncmd = sleep 1\nstop_signal = 999\n", "watcher:w", "stop_signal",
     "999"),
    ("[watcher:w]\ncmd = sleep 1\nrlimit_bogus = 5\n", "watcher:w", "rlimit_bogus",
     "unknown resource limit 'bogus'"),
    ("[watcher:w]\ncmd = sleep 1\nrlimit_nofile = lots\n", "watcher:w", "rlimit_nofile",
     "not an integer"),
    ("[watcher:w]\ncmd = sleep 1\nenv = JUSTANAME\n", "watcher:w", "env", "KEY=VALUE"),
    ("[watcher:w]\ncmd = sleep 1\nready = whenever\n", "watcher:w", "ready", "whenever"),
    ("[watcher:w]\ncmd = sleep 1\nhooks.before_lunch = x.y\n", "watcher:w",
     "hooks.before_lunch", "unknown hook"),
    ("[watcher:w]\nnumprocesses = 2\n", "watcher:w", "cmd", "missing option 'cmd'"),
    ("[watcher:w]\ncmd =   \n", "watcher:w", "cmd", "missing option 'cmd'"),
    ("[watcher:w]\ncmd = serve $(circus.sockets.nope)\nuse_sockets = true\n"
     "[socket:web]\nport = 0\n", "watcher:w", "cmd", "unknown socket 'nope'"),
    ("[watcher:w]\ncmd = serve\nargs = --fd $(circus.sockets.web)\n"
     "[socket:web]\nport = 0\n", "watcher:w", "args", "use_sockets"),
    ("[watcher:w]\ncmd = serve\nuse_sockets = true\nenv = FD=$(circus.sockets.nope)\n",
     "watcher:w", "env", "unknown socket 'nope'"),
    ("[watcher:w]\ncmd = serve $(circus.nonsense)\n", "watcher:w", "cmd",
     "unknown variable $(circus.nonsense)"),
    ("[watcher:w]\ncmd = serve $(circus.env.CIRCUS_SURELY_UNSET_VAR)\n", "watcher:w", "cmd",
     "CIRCUS_SURELY_UNSET_VAR"),
    ("[watcher:w]\ncmd = sleep 1\n[watcher:W]\ncmd = sleep 2\n", "watcher:W", None,
     "duplicate"),
    ("[plugin:p]\nhost = localhost\n", "plugin:p", "use", "missing option 'use'"),
    ("[plugin:p]\nuse = circus_no_such_module.Plugin\n", "plugin:p", "use",
     "circus_no_such_module"),
    ("[watcher:w]\ncmd = sleep 1\nuid = circus-no-such-user\n", "watcher:w", "uid",
     "no such user"),
    ("[watcher:w]\ncmd = sleep 1\ngid = circus-no-such-group\n", "watcher:w", "gid",
     "no such group"),
    ("[env:nobody]\nA = 1\n", "env:nobody", None, "no watcher named"),
    ("[socket:s]\nport = http\n", "socket:s", "port", "not an integer"),
    ("[socket:s]\nport = 0\nfamily = AF_BOGUS\n", "socket:s", "family", "AF_BOGUS"),
    ("[socket:s]\nport = 0\ntype = SOCK_BOGUS\n", "socket:s", "type", "SOCK_BOGUS"),
    ("[socket:s]\nport = 0\numask = 999\n", "socket:s", "umask", "999"),
    ("[watcher:w]\ncmd = sleep 1\nstdout_stream.class = circus_no_such_module.Stream\n",
     "watcher:w", "stdout_stream.class", "circus_no_such_module"),
    ("[watcher:w]\ncmd = sleep 1\nstderr_stream.class = NoSuchStream\n",
     "watcher:w", "stderr_stream.class", "NoSuchStream"),
    ("[watcher:w]\ncmd = sleep 1\nhooks.before_start = circus_no_such_module.hook\n",
     "watcher:w", "hooks.before_start", "circus_no_such_module"),
    ("[watcher:w]\ncmd = sleep 1\nstdout_stream.class = FileStream\n", "watcher:w",
     "stdout_stream.filename", "needs this option"),
    ("[watcher:w]\ncmd = sleep 1\nstderr_stream.filename = x.log\n"
     "stderr_stream.max_bytes = 1MB\n", "watcher:w", "stderr_stream.max_bytes", "1MB"),
    ("[watcher:w]\ncmd = sleep 1\nstdout_stream.class = tests.apps.streams.MyStream\n",
     "watcher:w", "stdout_stream.path", "needs this option"),
    ("[watcher:w]\ncmd = sleep 1\nstdout_stream.class = tests.apps.streams.MyStream\n"
     "stdout_stream.path = p\nstdout_stream.colour = red\n",
     "watcher:w", "stdout_stream.colour", "takes no option"),
    ("[circus]\ninclude_dir = not-there\n", "circus", "include_dir", "not a directory"),
    ("[circus]\nhttpd_port = eighty\n", "circus", "httpd_port", "not an integer"),
    ("[circus]\nloglevel = loud\n", "circus", "loglevel", "'loud' is not one of"),
    ("[socket:s]\nport = 70000\n", "socket:s", "port", "maximum"),
    ("[circus]\nendpoint =\npubsub_endpoint =\n[plugin:p]\nuse = circus.plugins.CircusPlugin\n",
     "plugin:p", None, "endpoint"),
]


@pytest.mark.parametrize("text,section,option,reason", ERRORS,
                         ids=["%s-%s" % (e[1], e[2] or e[3].split()[0]) for e in ERRORS])
def test_errors_name_file_section_and_option(tmp_path, text, section, option, reason):
    path = write(tmp_path / "bad.ini", text)
    with pytest.raises(ConfigError) as info:
        Arbiter.load_from_config(str(path))
    error = info.value
    message = str(error)
    assert str(path) in message and error.filename == str(path)
    assert "[%s]" % section in message and error.section == section
    if option:
        assert option in message and error.option == option
    assert reason in message


def test_a_file_that_cannot_be_parsed(tmp_path):
    path = write(tmp_path / "bad.ini", "[watcher:w]\ncmd = sleep 1\nthis line has no equals\n")
    with pytest.raises(ConfigError) as info:
        config.load(str(path))
    assert str(path) in str(info.value) and "line 3" in str(info.value)

    path = write(tmp_path / "twice.ini", "[watcher:w]\ncmd = a\ncmd = b\n")
    with pytest.raises(ConfigError) as info:
        config.load(str(path))
    assert str(path) in str(info.value) and "[watcher:w] cmd" in str(info.value)

    with pytest.raises(ConfigError) as info:
        config.load(str(tmp_path / "missing.ini"))
    assert "missing.ini" in str(info.value) and "no such file" in str(info.value)


def test_errors_in_an_included_file_name_that_file(tmp_path):
    write(tmp_path / "main.ini", "[circus]\ninclude = conf.d/*.ini\n")
    bad = write(tmp_path / "conf.d" / "web.ini", "[watcher:web]\ncmd = x\nnumprocesses = x\n")
    with pytest.raises(ConfigError) as info:
        config.load(str(tmp_path / "main.ini"))
    assert info.value.filename == str(bad)
    assert str(bad) in str(info.value) and "[watcher:web] numprocesses" in str(info.value)


def test_duplicate_watcher_across_an_included_file(tmp_path):
    main = write(tmp_path / "main.ini", """
        [circus]
        include = conf.d/*.ini

        [watcher:web]
        cmd = sleep 1
        """)
    other = write(tmp_path / "conf.d" / "web.ini", "[watcher:Web]\ncmd = sleep 2\n")
    with pytest.raises(ConfigError) as info:
        config.load(str(main))
    message = str(info.value)
    assert "duplicate" in message
    # both places are named, whichever was read first
    assert str(main) in message and str(other) in message
    assert "[watcher:web]" in message.lower()


# --- through the executable -----------------------------------------------------
def run_circusd(tmp_path, config_text, *args, timeout=20):
    path = write(tmp_path / "bad.ini", config_text)
    env = dict(os.environ, PYTHONPATH=ROOT)
    return path, subprocess.run([CIRCUSD, str(path)] + list(args), cwd=str(tmp_path), env=env,
                                capture_output=True, text=True, timeout=timeout)


GOOD_PART = """
[circus]
endpoint = tcp://127.0.0.1:{endpoint}
pubsub_endpoint = tcp://127.0.0.1:{pubsub}

[socket:web]
host = 127.0.0.1
port = {port}

[watcher:marker]
cmd = {py} -c "import pathlib, time; pathlib.Path('{marker}').touch(); time.sleep(60)"

[watcher:web]
cmd = {py} -c "import time; time.sleep(60)" $(circus.sockets.web)
use_sockets = true
"""


@pytest.mark.parametrize("bad,section,option", [
    ("[watcher:broken]\ncmd = sleep 1\nnumprocesses = abc\n", "watcher:broken", "numprocesses"),
    ("[watcher:broken]\ncmd = sleep 1\nmax_retry = -5\n", "watcher:broken", "max_retry"),
    ("[watcher:broken]\ncmd = sleep 1\nstop_signal = SIGNOPE\n", "watcher:broken",
     "stop_signal"),
    ("[watcher:broken]\ncmd = x $(circus.sockets.nope)\nuse_sockets = true\n",
     "watcher:broken", "cmd"),
    ("[watcher:broken]\ncmd = sleep 1\nstdout_stream.class = no.such.Stream\n",
     "watcher:broken", "stdout_stream.class"),
    ("[socket:broken]\nport = 0\nfamily = AF_NOPE\n", "socket:broken", "family"),
    ("[nonsense]\na = b\n", "nonsense", None),
])
def test_circusd_refuses_a_bad_config_and_starts_nothing(tmp_path, bad, section, option):
    port = free_port()
    marker = tmp_path / "started"
    text = GOOD_PART.format(endpoint=free_port(), pubsub=free_port(), port=port, py=PY,
                            marker=marker) + "\n" + bad
    path, result = run_circusd(tmp_path, text)
    assert result.returncode != 0
    assert "%s [%s]" % (path, section) in result.stderr, result.stderr
    if option:
        assert option in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not marker.exists()
    assert "listening" not in result.stdout and "Starting master" not in result.stdout
    assert port_is_free(port)


def test_circusd_with_a_missing_config_file(tmp_path):
    result = subprocess.run([CIRCUSD, str(tmp_path / "nope.ini")], capture_output=True,
                            text=True, timeout=20)
    assert result.returncode != 0
    assert "nope.ini" in result.stderr and "no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_circusd_with_a_port_in_use_starts_no_process(tmp_path):
    marker = tmp_path / "started"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        text = GOOD_PART.format(endpoint=free_port(), pubsub=free_port(), port=port, py=PY,
                                marker=marker)
        path, result = run_circusd(tmp_path, text)
    assert result.returncode != 0
    assert "socket 'web'" in result.stderr and "address already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_circusd_with_a_bad_config_leaves_no_child(tmp_path):
    """The error is found before any fork: while circusd runs, it never has a child."""
    text = GOOD_PART.format(endpoint=free_port(), pubsub=free_port(), port=free_port(), py=PY,
                            marker=tmp_path / "m")
    text += "\n[watcher:broken]\ncmd = a\nuid = nobody-xyz\n"
    path = write(tmp_path / "bad.ini", text)
    returncode, out, err, seen = run_until_exit([CIRCUSD, str(path)], 20)
    assert returncode != 0 and seen == set()
    assert b"no such user" in err and b"[watcher:broken] uid" in err
