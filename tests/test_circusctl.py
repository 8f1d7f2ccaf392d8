"""circusctl as users run it: the executable, as a subprocess."""
import json
import os
import select
import subprocess

import pytest

from support import BIN, PYTHON, ROOT, free_port, pid_alive, wait_for

CIRCUSCTL = os.path.join(BIN, "circusctl")

CONFIG = """
[watcher:sleeper]
cmd = sleep 300
numprocesses = 2
graceful_timeout = 5

[watcher:other]
cmd = sleep 301
"""


@pytest.fixture
def daemon(circusd):
    return circusd(CONFIG)


def ctl(daemon, *args, env=None, input=None, timeout=20):
    """Run circusctl against daemon; returns the CompletedProcess."""
    home = daemon.tmp_path if daemon is not None else ROOT
    full_env = dict(os.environ, PYTHONPATH=ROOT, HOME=str(home), **(env or {}))
    endpoint = ["--endpoint", daemon.endpoint] if daemon is not None else []
    return subprocess.run([CIRCUSCTL] + endpoint + list(args), capture_output=True,
                          text=True, env=full_env, input=input, timeout=timeout)


def pids(daemon, name="sleeper"):
    return daemon.call("list", name=name)["pids"]


def test_status_and_list(daemon):
    result = ctl(daemon, "status")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "other: active\nsleeper: active\n"
    assert ctl(daemon, "status", "sleeper").stdout == "active\n"
    assert ctl(daemon, "list").stdout == "other,sleeper\n"
    listed = ctl(daemon, "list", "sleeper").stdout.strip().split(",")
    assert sorted(int(p) for p in listed) == sorted(pids(daemon))


def test_endpoint_from_the_environment(daemon):
    result = subprocess.run([CIRCUSCTL, "numwatchers"], capture_output=True, text=True,
                            env=dict(os.environ, CIRCUSCTL_ENDPOINT=daemon.endpoint))
    assert (result.returncode, result.stdout) == (0, "2\n")


def test_incr_decr(daemon):
    result = ctl(daemon, "incr", "sleeper", "2", "--waiting")
    assert (result.returncode, result.stdout) == (0, "4\n")
    assert len(pids(daemon)) == 4
    assert ctl(daemon, "incr", "sleeper").stdout == "5\n"
    wait_for(lambda: len(pids(daemon)) == 5)
    result = ctl(daemon, "decr", "sleeper", "4", "--waiting")
    assert (result.returncode, result.stdout) == (0, "1\n")
    assert len(pids(daemon)) == 1


def test_stats(daemon):
    result = ctl(daemon, "stats", "sleeper")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "sleeper:"
    assert lines[1].split()[:3] == ["PID", "CPU%", "MEM%"]
    assert {int(line.split()[0]) for line in lines[2:]} == set(pids(daemon))
    assert all(line.rstrip().endswith("sleep 300") for line in lines[2:])
    everything = ctl(daemon, "stats").stdout
    assert "other:" in everything and "sleeper:" in everything
    pid = pids(daemon)[0]
    one = ctl(daemon, "stats", "sleeper", str(pid)).stdout.splitlines()
    assert len(one) == 3 and one[2].split()[0] == str(pid)
    data = json.loads(ctl(daemon, "--json", "stats", "sleeper").stdout)
    assert set(data["info"]) == {str(p) for p in pids(daemon)}


def test_set_and_get(daemon):
    result = ctl(daemon, "set", "sleeper", "graceful_timeout", "9", "max_retry", "-1")
    assert (result.returncode, result.stdout) == (0, "ok\n")
    result = ctl(daemon, "get", "sleeper", "graceful_timeout", "max_retry")
    assert result.stdout == "graceful_timeout: 9.0\nmax_retry: -1\n"
    result = ctl(daemon, "set", "sleeper", "graceful_timeout", "soon")
    assert result.returncode == 1
    assert "graceful_timeout" in result.stderr and result.stdout == ""
    assert ctl(daemon, "set", "sleeper", "graceful_timeout").returncode == 2
    assert "cmd: sleep 300" in ctl(daemon, "options", "sleeper").stdout


def test_reload(daemon):
    before = pids(daemon)
    result = ctl(daemon, "reload", "sleeper", "--waiting")
    assert (result.returncode, result.stdout) == (0, "ok\n")
    after = pids(daemon)
    assert len(after) == 2 and not set(before) & set(after)
    assert ctl(daemon, "reload", "--sequential", "--waiting").returncode == 0
    assert not set(after) & set(pids(daemon))


def test_signal(daemon):
    first, second = pids(daemon)
    result = ctl(daemon, "signal", "sleeper", str(first), "KILL")
    assert (result.returncode, result.stdout) == (0, "ok\n")
    wait_for(lambda: not pid_alive(first))
    assert pid_alive(second)
    result = ctl(daemon, "signal", "sleeper", "--children", "NOSUCH")
    assert result.returncode == 1 and "NOSUCH" in result.stderr


def test_start_stop_match(daemon):
    result = ctl(daemon, "stop", "s*", "--match", "glob", "--waiting")
    assert result.returncode == 0
    assert daemon.call("status")["statuses"] == {"other": "active", "sleeper": "stopped"}
    assert ctl(daemon, "start", "--match=regex", "sl", "--waiting").returncode == 0
    assert daemon.call("status", name="sleeper")["status"] == "active"


def test_add_and_rm(daemon):
    result = ctl(daemon, "add", "--start", "extra", "sleep", "302")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: len(pids(daemon, "extra")) == 1)
    assert ctl(daemon, "rm", "extra", "--waiting").returncode == 0
    assert daemon.call("list")["watchers"] == ["other", "sleeper"]


def test_listen_streams_events(daemon):
    listener = subprocess.Popen([CIRCUSCTL, "--endpoint", daemon.endpoint, "listen",
                                 "watcher.sleeper.", "--count", "2"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        # subscriptions take a moment to reach circusd: poke until one shows up
        for _ in range(50):
            daemon.call("set", name="sleeper", options={"priority": 0})
            if select.select([listener.stdout], [], [], 0.2)[0]:
                break
        assert listener.stdout.readline().startswith("watcher.sleeper.updated: {")
        daemon.call("incr", name="sleeper")
        out, err = listener.communicate(timeout=10)
        line = out.splitlines()[0]
        topic, _, body = line.partition(": ")
        assert topic.startswith("watcher.sleeper.")
        assert "time" in json.loads(body)
        assert listener.returncode == 0
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()


def test_listen_with_an_explicit_endpoint(daemon):
    listener = subprocess.Popen([CIRCUSCTL, "--json", "listen", daemon.pubsub, "--count", "1"],
                                stdout=subprocess.PIPE, text=True,
                                env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        for _ in range(50):
            daemon.call("set", name="other", options={"priority": 0})
            if select.select([listener.stdout], [], [], 0.2)[0]:
                break
        event = json.loads(listener.stdout.readline())
        assert event["topic"] == "watcher.other.updated"
        assert listener.wait(10) == 0
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()


def test_quit(daemon):
    children = pids(daemon)
    result = ctl(daemon, "quit", "--waiting")
    assert (result.returncode, result.stdout) == (0, "ok\n")
    assert daemon.proc.wait(10) == 0
    assert not any(pid_alive(p) for p in children)


def test_errors_and_exit_status(daemon):
    result = ctl(daemon, "status", "ghost")
    assert result.returncode == 1
    assert "program ghost not found" in result.stderr and result.stdout == ""
    result = ctl(daemon, "--json", "status", "ghost")
    assert result.returncode == 1 and json.loads(result.stdout)["errno"] == 3
    result = ctl(daemon, "frobnicate")
    assert result.returncode == 2 and "unknown command" in result.stderr
    result = ctl(daemon, "incr")
    assert result.returncode == 2 and "usage" in result.stderr
    result = ctl(daemon, "incr", "sleeper", "two")
    assert result.returncode == 2
    # nobody listens there
    result = subprocess.run([CIRCUSCTL, "--endpoint", "tcp://127.0.0.1:%d" % free_port(),
                             "--timeout", "0.3", "status"], capture_output=True, text=True)
    assert result.returncode == 3 and "no answer" in result.stderr


def test_help():
    result = ctl(None, "help")
    assert result.returncode == 0
    assert "incr" in result.stdout and "Increment the number of processes" in result.stdout
    result = ctl(None, "incr", "--help")
    assert result.returncode == 0
    assert "circusctl incr <name> [<nb>]" in result.stdout
    assert '"command": "incr"' in result.stdout  # the docstring
    assert ctl(None, "help", "signal").stdout == ctl(None, "signal", "--help").stdout


def test_shell(daemon):
    script = "status\nincr sleeper --waiting\nlist other\nnope\nhelp numwatchers\nexit\n"
    result = ctl(daemon, input=script)
    assert result.returncode == 0, result.stderr
    assert "other: active\nsleeper: active\n" in result.stdout
    assert "3\n" in result.stdout
    assert "unknown command 'nope'" in result.stderr
    assert "Get the number of watchers" in result.stdout
    assert len(pids(daemon)) == 3


def test_shell_completion(daemon):
    import argparse

    from circus.circusctl import Runner, Shell
    options = argparse.Namespace(endpoint=daemon.endpoint, timeout=5.0, json=False, ssh=None,
                                 ssh_keyfile=None, curve_key=None, server_key=None)
    runner = Runner(options)
    try:
        shell = Shell(runner)
        assert shell.cmd.completenames("re") == ["reload", "reloadconfig", "restart"]
        assert shell.cmd.completedefault("sl", "incr sl", 5, 7) == ["sleeper"]
        assert sorted(shell.cmd.completedefault("", "stats ", 6, 6)) == ["other", "sleeper"]
    finally:
        runner.close()


def test_imports_stay_lean(daemon):
    """circusctl status loads neither asyncio nor psutil (startup time)."""
    code = ("import sys; from circus.circusctl import main; "
            "status = main(['--endpoint', %r, 'status']); "
            "heavy = [m for m in ('asyncio', 'psutil', 'circus.config', 'circus.options', "
            "'circus.arbiter') "
            "if m in sys.modules]; "
            "print('heavy:', heavy); sys.exit(status)" % daemon.endpoint)
    result = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "heavy: []"


class Pty:
    """circusctl's shell on a pseudo-terminal, as a user types into it:
    readline (and so the history) only works on a terminal."""

    def __init__(self, daemon, home):
        import pty
        self.master, slave = pty.openpty()
        inputrc = home / "inputrc"
        inputrc.write_text("")  # no system key bindings
        env = dict(os.environ, PYTHONPATH=ROOT, HOME=str(home), INPUTRC=str(inputrc),
                   TERM="xterm")
        self.proc = subprocess.Popen([CIRCUSCTL, "--endpoint", daemon.endpoint],
                                     stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True)
        os.close(slave)
        self.output = b""

    def read_until(self, text, timeout=10.0):
        """Everything read since the last call, up to and including text."""
        def read(remaining):
            if select.select([self.master], [], [], remaining)[0]:
                try:
                    self.output += os.read(self.master, 4096)
                except OSError:  # EIO: the program is gone
                    raise AssertionError("circusctl exited; got %r" % self.output) from None
        wait_for(lambda: text.encode() in self.output, timeout, pause=read,
                 message=lambda: "%r; got %r" % (text, self.output))
        index = self.output.index(text.encode()) + len(text)
        seen, self.output = self.output[:index], self.output[index:]
        return seen.decode(errors="replace")

    def type(self, keys):
        os.write(self.master, keys.encode())

    def close(self):
        try:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(10)
        finally:
            os.close(self.master)


def test_shell_history_is_saved_and_reloaded(daemon, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    history = home / ".circusctl_history"
    prompt = "(circusctl) "

    shell = Pty(daemon, home)
    try:
        shell.read_until(prompt)
        shell.type("list other\n")
        shell.read_until(prompt)
        shell.type("numwatchers\n")
        assert "2" in shell.read_until(prompt).splitlines()[-2]
        shell.type("exit\n")
        assert shell.proc.wait(10) == 0
    finally:
        shell.close()
    assert history.read_text().splitlines() == ["list other", "numwatchers", "exit"]

    # a new shell starts from that history: Ctrl-P thrice recalls "list other"
    shell = Pty(daemon, home)
    try:
        shell.read_until(prompt)
        shell.type("\x10\x10\x10")
        shell.read_until("list other")
        shell.type("\n")
        [pid] = pids(daemon, "other")
        assert str(pid) in shell.read_until(prompt)
        shell.type("status sleeper\n")
        shell.read_until(prompt)
        shell.type("exit\n")
        assert shell.proc.wait(10) == 0
    finally:
        shell.close()
    # the old lines kept, the new ones appended
    assert history.read_text().splitlines() == ["list other", "numwatchers", "exit",
                                                "list other", "status sleeper", "exit"]
