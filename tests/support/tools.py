"""The programs and packages the tests drive: how to tell that each is
here, and the command that installs it.

A test that drives one says so with ``@pytest.mark.needs("nginx", ...)``.
When one is missing such a test fails at once with the install command,
instead of timing out on a worker that never starts or being skipped (a
green CI run must have run them). The session header lists what is
missing. Limits no install lifts (not root, no PID namespace, no IPv6)
stay skips, with their reason.

This module is the pytest plugin that does it (tests/conftest.py loads
it), and a script: ``python tests/support/tools.py --missing-packages``
prints the Debian packages of the missing system tools, which is what
``./dev.sh test`` installs.
"""
import functools
import os
import shutil
import subprocess
import sys

import pytest

PYTHON = sys.executable
# where the tests find a program: PATH, then beside this Python (the venv's
# scripts, as circusd finds them: circus.util.which), then root's sbin
# (nginx), which a user's PATH may lack
SEARCH = os.pathsep.join([os.environ.get("PATH", os.defpath), os.path.dirname(PYTHON),
                          "/usr/sbin", "/sbin"])


class Tool:
    """A program found on SEARCH, or a Python module this Python imports
    (in a child process: a module that is there but cannot load, a
    meinheld built for another greenlet, counts as missing)."""

    def __init__(self, name, install, package=None, module=None, file=None):
        self.name = name
        self.install = install  # the command that installs it
        self.package = package  # the Debian package, for a system tool
        self.module = module
        self.file = file  # a file that must exist (a font), instead of a program

    def path(self):
        """The program's path; None when it is missing (or for a module)."""
        if self.file:
            return self.file if os.path.exists(self.file) else None
        return None if self.module else shutil.which(self.name, path=SEARCH)

    def present(self):
        return _present(self)


@functools.cache
def _present(tool):
    if tool.module is None:
        return tool.path() is not None
    return subprocess.run([PYTHON, "-c", "import " + tool.module],
                          capture_output=True, timeout=60).returncode == 0


def _pip(*args):
    return "%s -m pip install %s" % (PYTHON, " ".join(args))


def _apt(package):
    return "apt-get install -y %s (./dev.sh test does it)" % package


TOOLS = {tool.name: tool for tool in [
    # Python packages: the workers the tests start (dev.sh's setup_venv
    # installs them the same way)
    Tool("chaussette", _pip("'chaussette>=1.3'")),
    Tool("greenlet", _pip("'greenlet>=3'"), module="greenlet"),
    # its release pins greenlet<0.5, which does not build on Python 3.11
    Tool("meinheld", _pip("'greenlet>=3'") + " && " + _pip("--no-deps", "meinheld==1.0.2"),
         module="meinheld.server"),
    # system tools
    Tool("nginx", _apt("nginx"), package="nginx"),
    Tool("wrk", _apt("wrk"), package="wrk"),
    Tool("tmux", _apt("tmux"), package="tmux"),
    Tool("ss", _apt("iproute2"), package="iproute2"),
    Tool("unshare", _apt("util-linux"), package="util-linux"),
    Tool("systemd-analyze", _apt("systemd"), package="systemd"),
    # the web console's browser tests: Debian's chromium driven by playwright
    # (never `playwright install`: it downloads a browser), and a font for
    # the screenshots
    Tool("chromium", _apt("chromium"), package="chromium"),
    Tool("playwright", _pip("'playwright>=1.40'"), module="playwright.sync_api"),
    Tool("dejavu-font", _apt("fonts-dejavu-core"), package="fonts-dejavu-core",
         file="/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    # the metrics' tests: a real Prometheus server, and its promtool
    Tool("prometheus", _apt("prometheus"), package="prometheus"),
    Tool("promtool", _apt("prometheus"), package="prometheus"),
]}


def path(name):
    """The path of a program the tests drive (None when it is missing)."""
    return TOOLS[name].path()


def missing(names=None):
    return [TOOLS[n] for n in (TOOLS if names is None else names) if not TOOLS[n].present()]


def describe(tools):
    return "; ".join("%s is missing, install it with: %s" % (t.name, t.install) for t in tools)


# --- the pytest plugin -------------------------------------------------------------
def pytest_configure(config):
    config.addinivalue_line(
        "markers", "needs(*tools): the test drives these programs or packages "
                   "(tests/support/tools.py); it fails at once when one is missing")


def pytest_report_header(config):
    absent = missing()
    if not absent:
        return "tools: all here (%s)" % ", ".join(TOOLS)
    return ["tools missing (the tests that drive them fail):"] + [
        "  %s: %s" % (t.name, t.install) for t in absent]


def pytest_runtest_setup(item):
    # after skipif (tryfirst) and before the fixtures (nothing is started)
    names = [name for mark in item.iter_markers("needs") for name in mark.args]
    unknown = [n for n in names if n not in TOOLS]
    if unknown:
        pytest.fail("needs(%s): unknown to tests/support/tools.py (it knows %s)"
                    % (", ".join(unknown), ", ".join(TOOLS)), pytrace=False)
    absent = missing(dict.fromkeys(names))
    if absent:
        pytest.fail(describe(absent), pytrace=False)


def pytest_terminal_summary(terminalreporter):
    # also with -q, which hides the header
    absent = missing()
    if absent:

        terminalreporter.section("tools missing")
        for tool in absent:
            terminalreporter.line("%s: %s" % (tool.name, tool.install))


def main(argv):
    if argv != ["--missing-packages"]:
        return "usage: tools.py --missing-packages"
    print(" ".join(t.package for t in missing() if t.package))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
