"""circusd as a container's main process (PID 1): it reaps re-parented
orphans, and the container recipe (recipes/container) is probed, then
drained on SIGTERM within the Kubernetes recipe's grace period."""
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from support import BIN, ROOT, free_port, tools, wait_for


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


CONTAINER = os.path.join(ROOT, "recipes", "container")
DEPLOYMENT = os.path.join(ROOT, "recipes", "kubernetes", "circus.yaml")


def _container_config(web, metrics):
    """recipes/container/circus.ini on loopback and free ports."""
    text = open(os.path.join(CONTAINER, "circus.ini")).read()
    for old, new in (("tcp://127.0.0.1:5555", "tcp://127.0.0.1:%d" % free_port()),
                     ("tcp://127.0.0.1:5556", "tcp://127.0.0.1:%d" % free_port()),
                     ("prometheus = 0.0.0.0:9102", "prometheus = 127.0.0.1:%d" % metrics),
                     ("host = 0.0.0.0", "host = 127.0.0.1"),
                     ("port = 8080", "port = %d" % web)):
        assert old in text, old
        text = text.replace(old, new)
    return text


@pytest.mark.slow
@pytest.mark.needs("unshare")
@pytest.mark.skipif(os.geteuid() != 0, reason="a PID namespace needs root")
def test_container_recipe_as_pid1_probed_then_drained_on_sigterm(tmp_path):
    refused = _pid_namespace_refused()
    if refused:
        pytest.skip("no PID namespace here: %s" % refused)
    import http.client

    import yaml
    deployment = next(d for d in yaml.safe_load_all(open(DEPLOYMENT))
                      if d["kind"] == "Deployment")
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    web, metrics = free_port(), free_port()
    config = tmp_path / "circus.ini"
    config.write_text(_container_config(web, metrics))
    log = open(tmp_path / "log", "wb")
    # the Dockerfile's CMD, in a PID namespace of its own
    proc = subprocess.Popen([tools.path("unshare"), "--pid", "--fork", "--mount-proc",
                             os.path.join(BIN, "circusd"), "--log-output", "-", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=CONTAINER,
                            env=dict(os.environ, PYTHONPATH=ROOT))

    def get(port, path, timeout=5):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode()
        except OSError:
            return None, ""
        finally:
            conn.close()

    workers = []
    try:
        def circusd():
            for child in psutil.Process(proc.pid).children(recursive=True):
                if "circusd" in _cmdline(child) and "circus.metrics" not in _cmdline(child):
                    return child
        daemon = wait_for(circusd, message="circusd in its namespace")
        # the kubelet's readiness probe: a 2xx or 3xx answer means Ready
        wait_for(lambda: 200 <= (get(metrics, "/readyz")[0] or 0) < 400, timeout=30,
                 message="/readyz ready")
        assert get(metrics, "/healthz")[0] == 200
        assert b"circus[1]" in (tmp_path / "log").read_bytes()  # circusd is PID 1
        status, body = get(web, "/")
        assert status == 200 and body.startswith("Hello from worker")
        workers = [c for c in daemon.children() if "circus-worker" in _cmdline(c)]
        assert len(workers) == 2
        # a request in flight, accepted by a worker, when the SIGTERM comes
        slow = http.client.HTTPConnection("127.0.0.1", web, timeout=grace)
        slow.request("GET", "/slow?seconds=3")
        local = slow.sock.getsockname()
        wait_for(lambda: any(c.raddr and tuple(c.raddr) == local
                             for w in workers for c in w.net_connections()),
                 message="a worker to accept the slow request")
        began = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        # out of the Service at once, while the workers drain
        status, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(
            get(metrics, "/readyz")), timeout=5, message="/readyz 503 while stopping")
        assert "circusd is stopping" in body, body
        response = slow.getresponse()
        assert response.status == 200 and response.read().startswith(b"Hello from worker")
        assert proc.wait(grace) == 0  # circusd, PID 1, exited 0 (unshare passes it on)
        assert time.monotonic() - began < grace
        assert not [w.pid for w in workers if psutil.pid_exists(w.pid)
                    and w.status() != psutil.STATUS_ZOMBIE]
        text = (tmp_path / "log").read_text()
        assert "watcher web stopped" in text and "Arbiter exiting" in text
    finally:
        if proc.poll() is None:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait()
        log.close()
