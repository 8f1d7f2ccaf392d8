"""circus.logs: one meaning of --log-output for circusd, circusd-stats and
circus-plugin; circus.pidfd: learning that circusd is gone."""
import asyncio
import os
import subprocess
import sys

from support import PYTHON, ROOT

SNIPPET = """
import logging, sys
from circus.logs import configure_logging
configure_logging(sys.argv[1], sys.argv[2], "[%(levelname)s] %(name)s %(message)s",
                  logger_name=None if sys.argv[3] == "root" else sys.argv[3])
logging.getLogger("circus").debug("circus debug")
logging.getLogger("circus").info("circus info")
if sys.argv[3] == "root":
    logging.getLogger("myplugin").warning("plugin warning")
"""


def run(level, output, logger_name="circus", cwd=None):
    result = subprocess.run([PYTHON, "-c", SNIPPET, level, output, logger_name],
                            capture_output=True, text=True, timeout=30, cwd=cwd,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr
    return result.stdout, result.stderr


def test_dash_and_stdout_mean_standard_output():
    for output in ("-", "stdout"):
        assert run("info", output) == ("[INFO] circus circus info\n", "")


def test_stderr_means_standard_error():
    assert run("debug", "stderr") == ("", "[DEBUG] circus circus debug\n"
                                          "[INFO] circus circus info\n")


def test_anything_else_is_a_file_appended_to(tmp_path):
    log = tmp_path / "circus.log"
    log.write_text("before\n")
    assert run("info", str(log)) == ("", "")
    assert log.read_text() == "before\n[INFO] circus circus info\n"


def test_every_logger_for_a_plugin_process():
    # a plugin logs under names of its own: they reach the handler too
    out, _ = run("info", "-", "root")
    assert out == "[INFO] circus circus info\n[WARNING] myplugin plugin warning\n"


def test_the_children_circusd_reads_log_to_stderr_by_default():
    from circus.circusd import build_parser as circusd_parser
    from circus.plugins.runner import build_parser as plugin_parser
    from circus.stats.streamer import build_parser as stats_parser
    # circusd: stdout unless told otherwise ([circus] logoutput or the flag)
    assert circusd_parser().parse_args([]).logoutput is None
    # circusd reads their stderr into its own log (circus.system_watchers)
    assert stats_parser().parse_args([]).logoutput == "stderr"
    assert plugin_parser().parse_args(["x.Plugin"]).log_output == "stderr"


def test_call_when_gone():
    from circus.pidfd import call_when_gone

    async def main():
        loop = asyncio.get_running_loop()
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                 stdin=subprocess.PIPE)
        gone = asyncio.Event()
        call_when_gone(loop, child.pid, gone.set)
        await asyncio.sleep(0.05)
        assert not gone.is_set()  # alive: nothing said
        child.stdin.close()  # the child exits
        async with asyncio.timeout(10):
            await gone.wait()
        child.wait()
        # a process already gone (reaped): said at once
        already = asyncio.Event()
        call_when_gone(loop, child.pid, already.set)
        async with asyncio.timeout(10):
            await already.wait()
        # watching stops when asked, and the callback is not called
        other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                 stdin=subprocess.PIPE)
        called = []
        stop = call_when_gone(loop, other.pid, lambda: called.append(1))
        stop()
        stop()
        other.stdin.close()
        other.wait()
        await asyncio.sleep(0.1)
        assert called == []

    asyncio.run(main())
