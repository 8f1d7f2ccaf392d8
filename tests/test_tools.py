"""tests/support/tools.py: a test that drives a missing tool fails at once,
naming it and the command that installs it; the session says what is missing."""
import os
import subprocess
import sys
import textwrap
import time

from support import ROOT, tools

TESTS = os.path.join(ROOT, "tests")

FAKE_TOOLS = """
from support import tools

# one tool that is nowhere, one that is always here (a module every Python has)
tools.TOOLS["circus-no-such-tool"] = tools.Tool(
    "circus-no-such-tool", "apt-get install -y circus-no-such-package",
    package="circus-no-such-package")
tools.TOOLS["circus-here"] = tools.Tool("circus-here", "nothing to do", module="os")
"""

DRIVING_TESTS = """
import time

import pytest


@pytest.fixture
def server():
    raise AssertionError("the fixture ran")  # what would start the tool


@pytest.mark.needs("circus-no-such-tool")
def test_drives_the_missing_tool(server):
    time.sleep(600)  # a worker that never answers


@pytest.mark.needs("circus-here")
def test_drives_a_tool_that_is_here():
    pass


@pytest.mark.needs("circus-here", "circus-no-such-tool")
@pytest.mark.skipif(True, reason="an environment limit no install lifts")
def test_skipped_for_the_environment_first():
    pass


@pytest.mark.needs("circus-no-such-tol")
def test_with_a_typo():
    pass
"""


def run_pytest(tmp_path, *args):
    (tmp_path / "conftest.py").write_text(FAKE_TOOLS)
    (tmp_path / "test_driving.py").write_text(textwrap.dedent(DRIVING_TESTS))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "support.tools", "-p", "no:cacheprovider",
         "-rfEs", *args, str(tmp_path)],
        cwd=str(tmp_path), capture_output=True, text=True, timeout=120,
        # wide: the short summary's lines are not cut
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS, ROOT]), COLUMNS="400"))

    return result, time.monotonic() - started


def test_a_test_that_needs_a_missing_tool_fails_at_once_with_the_install_command(tmp_path):
    result, elapsed = run_pytest(tmp_path)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    # at once: neither its body (600 s) nor its fixtures ran
    assert elapsed < 60, elapsed
    assert "the fixture ran" not in out
    assert ("ERROR test_driving.py::test_drives_the_missing_tool - Failed: circus-no-such-tool "
            "is missing, install it with: apt-get install -y circus-no-such-package") in out
    # a tool that is here, and a skip for the environment, are left alone
    assert "1 passed, 1 skipped, 2 errors" in out
    assert "SKIPPED [1]" in out and ": an environment limit no install lifts" in out

    # a misspelt tool is an error too, naming the tools there are
    assert ("ERROR test_driving.py::test_with_a_typo - Failed: needs(circus-no-such-tol): "
            "unknown to tests/support/tools.py (it knows ") in out
    # the session's header lists what is missing, with the command
    header = out.split("collected", 1)[0]
    assert "tools missing (the tests that drive them fail):" in header
    assert "  circus-no-such-tool: apt-get install -y circus-no-such-package" in header
    assert "circus-here:" not in header


def test_quiet_runs_list_the_missing_tools_at_the_end(tmp_path):
    result, _ = run_pytest(tmp_path, "-q")
    summary = result.stdout.split("tools missing", 1)[1]
    assert "circus-no-such-tool: apt-get install -y circus-no-such-package" in summary


def test_the_suite_knows_every_tool_it_drives():
    assert {"chaussette", "meinheld", "greenlet", "nginx", "wrk", "tmux", "ss", "unshare",
            "systemd-analyze"} <= set(tools.TOOLS)
    meinheld = tools.TOOLS["meinheld"].install
    assert meinheld.endswith("-m pip install 'greenlet>=3' && %s -m pip install --no-deps "
                             "meinheld==1.0.2" % sys.executable)
    assert tools.TOOLS["ss"].install.startswith("apt-get install -y iproute2")


def test_dev_sh_installs_the_missing_system_packages(monkeypatch, capsys):
    monkeypatch.setattr(tools, "missing", lambda names=None: [
        tools.TOOLS["nginx"], tools.TOOLS["meinheld"], tools.TOOLS["ss"]])
    assert tools.main(["--missing-packages"]) == 0
    # pip's packages are setup_venv's business
    assert capsys.readouterr().out == "nginx iproute2\n"
