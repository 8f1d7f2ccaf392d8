"""The path a newcomer takes with pip: build the wheel, install it in a fresh
virtualenv without the development tools (dependencies from the index),
then `circusd` with no argument serves its built-in config over HTTP and
`circusctl status` answers; no meinheld is installed there.

The built-in config binds 127.0.0.1:8080, 5555 and 5556: circusd runs in a
network namespace of its own (unshare -n), so these are private to the test
and never meet another test's circusd or a developer's."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest

from support import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# what the checkout holds that a build must not see
NOT_SOURCE = shutil.ignore_patterns(".venv*", ".git", "build", "dist", "*.egg-info",
                                    "__pycache__", ".pytest_cache", ".ruff_cache", "*.so",
                                    ".work")

# runs inside the namespace, with the fresh virtualenv's python: only the
# standard library and the installed scripts
DRIVER = textwrap.dedent("""
    import http.client, json, signal, subprocess, sys, time

    bindir, log_path = sys.argv[1:3]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    result = {}
    with open(log_path, "wb") as log:
        circusd = subprocess.Popen([bindir + "/circusd"], stdout=log,
                                   stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 40
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", 8080, timeout=5)
            conn.request("GET", "/")
            response = conn.getresponse()
            result["http"] = [response.status, response.read().decode()]
            conn.close()
            break
        except OSError as exc:
            if time.monotonic() > deadline or circusd.poll() is not None:
                result["http"] = repr(exc)
                break
            time.sleep(0.2)
    # the first worker serves before its siblings are ready: wait for them
    deadline = time.monotonic() + 30
    while True:
        ctl = subprocess.run([bindir + "/circusctl", "status"], capture_output=True,
                             text=True, timeout=30)
        result["status"] = [ctl.returncode, ctl.stdout, ctl.stderr]
        if ctl.stdout != "web: starting\\n" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    worker = subprocess.run([bindir + "/circus-worker", "--backend", "meinheld", "--port", "0",
                             "circus.demo:application"], capture_output=True, text=True,
                            timeout=30)
    result["meinheld"] = [worker.returncode, worker.stderr]
    circusd.send_signal(signal.SIGTERM)
    try:
        result["circusd"] = circusd.wait(30)
    except subprocess.TimeoutExpired:
        circusd.kill()
        result["circusd"] = "killed"
    print(json.dumps(result))
""")


def namespaces_work():
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def run(args, timeout=120, **kw):
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    assert result.returncode == 0, "%s\n%s\n%s" % (args, result.stdout, result.stderr)
    return result


def test_pip_install_of_the_wheel_then_circusd_serves(tmp_path):
    if not namespaces_work() or shutil.which("ip") is None:
        pytest.skip("needs unshare -n (root) and ip, to run the default ports privately")
    source, wheels, venv = tmp_path / "source", tmp_path / "wheels", tmp_path / "venv"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels),
         str(source)], timeout=180)
    (wheel,) = wheels.iterdir()
    # a user's environment: no PYTHONPATH, no activated virtualenv, the
    # system's PATH (circusd finds circus-worker beside its interpreter)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               HOME=str(tmp_path))
    run([sys.executable, "-m", "venv", str(venv)], env=env)
    bindir = venv / "bin"
    run([str(bindir / "pip"), "install", "-q", str(wheel)], timeout=180, env=env,
        cwd=tmp_path)
    # what was installed: circus from the wheel, not the checkout; none of
    # the development tools; no meinheld
    probe = run([str(bindir / "python"), "-c", textwrap.dedent("""
        import importlib.util, json, circus
        print(json.dumps([circus.__file__] + [importlib.util.find_spec(m) is not None
                          for m in ("pytest", "ruff", "meinheld")]))
        """)], env=env, cwd=tmp_path)
    location, *found = json.loads(probe.stdout)
    assert location.startswith(str(venv)) and found == [False, False, False]

    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    log = tmp_path / "circusd.log"
    proc = subprocess.Popen(["unshare", "-n", str(bindir / "python"), str(driver), str(bindir),
                             str(log)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=tmp_path, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=150)
    finally:
        # whatever is left in the namespace goes with the session
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    circusd_log = log.read_text() if log.exists() else ""
    assert proc.returncode == 0, "%s\n%s\n%s" % (out, err, circusd_log)
    result = json.loads(out)
    status, body = result["http"]
    assert status == 200 and body.startswith("Hello from circus worker "), circusd_log
    assert result["status"] == [0, "web: active\n", ""]
    assert "serving http://127.0.0.1:8080 (socket web)" in circusd_log
    assert result["circusd"] == 0, circusd_log
    # the worker asked for meinheld says, in one line, how to install it
    code, stderr = result["meinheld"]
    assert code == 1
    (line,) = stderr.splitlines()
    assert line.endswith("backend meinheld is not installed: no module meinheld; install it "
                         "with: pip install 'greenlet>=3' && pip install --no-deps "
                         "meinheld==1.0.2 (or use --backend waitress)")
