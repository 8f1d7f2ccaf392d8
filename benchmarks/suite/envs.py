"""The suite's own virtualenvs under benchmarks/.work/, and what the machine is.

- benchmarks/.work/gunicorn: gunicorn, the same meinheld (and greenlet) as
  the project's venv, and matplotlib for the plots.
- benchmarks/.work/circus019: the original Circus 0.19.0 from PyPI. Its
  package is also called `circus`, so it can never share a venv with ours.

Each venv is created and filled once; a marker file records what was asked
for, so a changed requirement reinstalls.
"""
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time

from suite import util
from suite.util import ROOT, WORK_DIR, log

GUNICORN_VENV = os.path.join(WORK_DIR, "gunicorn")
CIRCUS019_VENV = os.path.join(WORK_DIR, "circus019")
BASE_PYTHON = shutil.which("python3") or sys.executable


def _version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _ensure(venv, steps):
    """steps: lists of pip install arguments, run in order."""
    marker = os.path.join(venv, ".bench-requirements")
    wanted = json.dumps(steps)
    python = os.path.join(venv, "bin", "python")
    if os.path.exists(marker) and os.path.exists(python):
        with open(marker) as handle:
            if handle.read() == wanted:
                return os.path.join(venv, "bin")
    log("setting up %s", os.path.relpath(venv, ROOT))
    if not os.path.exists(python):
        subprocess.run([BASE_PYTHON, "-m", "venv", venv], check=True)
    for step in steps:
        subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
                       + step, check=True, stdout=subprocess.DEVNULL)
    with open(marker, "w") as handle:
        handle.write(wanted)
    return os.path.join(venv, "bin")


def gunicorn_env():
    meinheld = _version("meinheld") or "1.0.2"
    greenlet = _version("greenlet")
    return _ensure(GUNICORN_VENV, [
        ["gunicorn", "matplotlib", "greenlet==%s" % greenlet if greenlet else "greenlet"],
        # meinheld pins an ancient greenlet; ours runs it on greenlet 3
        ["--no-deps", "meinheld==%s" % meinheld],
    ])


def circus_installed_env():
    """circus as a user installs it (pip install, not editable), for the
    circusctl wall time: an editable install adds an import hook to every
    Python start (15 ms here), which Circus 0.19's regular install does not
    pay. Reinstalled from the working tree on every run."""
    venv = os.path.join(WORK_DIR, "circus-installed")
    bindir = _ensure(venv, [["pyzmq==%s" % _version("pyzmq")]])
    subprocess.run([os.path.join(bindir, "python"), "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", "--no-deps", "--force-reinstall", ROOT],
                   check=True, stdout=subprocess.DEVNULL)
    return bindir


def compile_circus():
    """Write the bytecode of the working tree's circus package, as pip
    install does. Daemons run from this tree (an editable install) would
    otherwise compile every module at each start wherever bytecode writing
    is off (PYTHONDONTWRITEBYTECODE): 40 ms of a start here, which the
    pip-installed Circus 0.19 they are compared with never pays."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(ROOT, "circus")],
                   check=True, stdout=subprocess.DEVNULL)


def circus019_env():
    return _ensure(CIRCUS019_VENV, [["circus==0.19.0"]])


def venv_versions(bindir, names):
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: out[n] = None\n"
            "print(json.dumps(out))\n")
    # -I: neither the current directory (the repository, whose circus.egg-info
    # would answer for "circus") nor PYTHONPATH may leak into the answer
    proc = util.run_quiet([os.path.join(bindir, "python"), "-I", "-c", code] + list(names),
                          cwd=WORK_DIR)
    return json.loads(proc.stdout)


def _tool_version(argv):
    try:
        proc = util.run_quiet(argv, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    line = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""
    return line or None


def _git(*args):
    try:
        return subprocess.run(["git", "-C", ROOT] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory():
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return "%.1f GiB" % (int(line.split()[1]) / 2 ** 20)
    except OSError:
        pass
    return "unknown"


def circus_revision():
    """The commit of the circus under test, and whether circus/ differs from it."""
    commit = _git("rev-parse", "--short", "HEAD") or "?"
    if _git("status", "--porcelain", "--", "circus"):
        commit += " (circus/ modified)"
    return commit


def circus_tree():
    """What the code under test is: the git tree of circus/ plus any
    uncommitted change in it. A commit elsewhere (a result file) keeps it."""
    tree = _git("rev-parse", "HEAD:circus") or "?"
    return tree + (_git("diff", "HEAD", "--", "circus") or "")


def machine(gunicorn_bin=None, circus019_bin=None):
    import zmq

    from circus import __version__ as circus_version
    commit = circus_revision()
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory": _memory(),
        "kernel": "%s %s" % (platform.system(), platform.release()),
        "python": platform.python_version(),
        "circus": "%s (git %s)" % (circus_version, commit),
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
    }
    for name in ("psutil", "waitress", "meinheld", "greenlet", "chaussette"):
        info[name] = _version(name)
    if gunicorn_bin:
        for name, value in venv_versions(gunicorn_bin, ["gunicorn", "meinheld", "greenlet",
                                                        "matplotlib"]).items():
            info["gunicorn venv: %s" % name] = value
    if circus019_bin:
        for name, value in venv_versions(circus019_bin, ["circus", "pyzmq", "tornado",
                                                         "psutil"]).items():
            info["Circus 0.19 venv: %s" % name] = value
    info["wrk"] = _tool_version(["wrk", "-v"])
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                      else None)
    info["nginx"] = _tool_version([nginx, "-v"]) if nginx else None
    info["hyperfine"] = _tool_version(["hyperfine", "--version"]) \
        if shutil.which("hyperfine") else None
    return info


def nginx_path():
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                     else None)
