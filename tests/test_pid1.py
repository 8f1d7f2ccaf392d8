"""circusd as a container's main process (PID 1) reaps re-parented orphans."""
import os
import signal
import subprocess
import sys

import psutil
import pytest

from support import ROOT, free_port, tools, wait_for


def _cmdline(proc):
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:  # a zombie has no command line
        return ""


def _pid_namespace_refused():
    """Why unshare cannot make a PID namespace here (a container may forbid
    it), or None."""
    result = subprocess.run([tools.path("unshare"), "--pid", "--fork", "--mount-proc", "true"],
                            capture_output=True, text=True)
    if result.returncode == 0:
        return None
    return result.stderr.strip() or "exit status %d" % result.returncode


@pytest.mark.needs("unshare")
@pytest.mark.skipif(os.geteuid() != 0, reason="a PID namespace needs root")
def test_orphans_are_reaped_when_circusd_is_pid1(tmp_path):
    refused = _pid_namespace_refused()
    if refused:
        pytest.skip("no PID namespace here: %s" % refused)
    config = tmp_path / "pid1.ini"
    config.write_text(
        "[circus]\nendpoint = tcp://127.0.0.1:%d\npubsub_endpoint = tcp://127.0.0.1:%d\n"
        "[watcher:orphans]\n"
        # the subshell exits at once, so its short sleep is re-parented to PID 1
        "cmd = sh -c '(sleep 2 &) ; exec sleep 120'\nnumprocesses = 3\n"
        % (free_port(), free_port()))
    log = open(tmp_path / "log", "wb")
    proc = subprocess.Popen([tools.path("unshare"), "--pid", "--fork", "--mount-proc",
                             sys.executable, "-m", "circus.circusd", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    try:
        def circusd():
            for child in psutil.Process(proc.pid).children(recursive=True):
                if "circus.circusd" in _cmdline(child):
                    return child
        daemon = wait_for(circusd, message="circusd in its namespace")
        wait_for(lambda: b"Arbiter now waiting" in (tmp_path / "log").read_bytes(),
                 message="circusd started")
        assert b"circus[1]" in (tmp_path / "log").read_bytes()
        # exact command lines: a child not yet exec'd still shows sh's (or
        # circusd's) command line, which holds both "120" and "sleep 2"
        workers = set()

        def workers_seen():
            workers.update(c.pid for c in daemon.children() if _cmdline(c) == "sleep 120")
            return len(workers) == 3
        wait_for(workers_seen, message="3 workers running sleep 120")
        orphans = set()

        def orphans_seen():
            orphans.update(c.pid for c in daemon.children() if _cmdline(c) == "sleep 2")
            return len(orphans) == 3
        wait_for(orphans_seen, message="orphans re-parented to circusd")
        # each orphan exits after 2 s; reaped, its pid disappears, while an
        # unreaped one would stay a zombie child of circusd
        wait_for(lambda: not any(psutil.pid_exists(pid) for pid in orphans), timeout=5,
                 message="orphans reaped")
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True):
            if "circus.circusd" in _cmdline(child):
                child.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
