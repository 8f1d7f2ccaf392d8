"""Running wrk against a loopback port and reading what it prints."""
import json
import os
import re
import subprocess

from suite.util import LOOPBACK

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "report.lua")
THREADS = 2
CONNECTIONS = 50
TIMEOUT = "5s"


class WrkError(Exception):
    pass


def run(port, duration, threads=THREADS, connections=CONNECTIONS, path="/"):
    """wrk -tT -cC -dDs --latency http://127.0.0.1:PORT/; returns a dict.

    Only loopback is ever targeted, and wrk itself is bounded by -d (plus a
    hard subprocess timeout in case it hangs)."""
    url = "http://%s:%d%s" % (LOOPBACK, port, path)
    argv = ["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % duration,
            "--timeout", TIMEOUT, "--latency", "-s", SCRIPT, url]
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=duration + 30)
    except subprocess.TimeoutExpired:
        raise WrkError("wrk did not finish within %ds" % (duration + 30)) from None
    if proc.returncode != 0:
        raise WrkError("wrk failed (%d): %s" % (proc.returncode, proc.stdout[-500:]))
    result = parse(proc.stdout)
    result["argv"] = " ".join(argv)
    return result


def parse(text):
    """The figures of one wrk run: the JSON line of report.lua, checked
    against (and completed by) wrk's own text summary."""
    match = re.search(r"^WRK-JSON (\{.*\})$", text, re.M)
    if not match:
        raise WrkError("no result line in wrk output:\n%s" % text[-1000:])
    data = json.loads(match.group(1))
    seconds = data["duration_us"] / 1e6
    out = {
        "requests": data["requests"],
        "seconds": seconds,
        "rps": data["requests"] / seconds if seconds else 0.0,
        "p50_ms": data["p50_us"] / 1000.0,
        "p90_ms": data["p90_us"] / 1000.0,
        "p99_ms": data["p99_us"] / 1000.0,
        "p999_ms": data["p999_us"] / 1000.0,
        "max_ms": data["max_us"] / 1000.0,
        "mean_ms": data["mean_us"] / 1000.0,
        "errors_connect": data["connect"],
        "errors_read": data["read"],
        "errors_write": data["write"],
        "errors_timeout": data["timeout"],
        "non2xx": data["status"],
        "bytes": data["bytes"],
    }
    out["errors"] = (out["errors_connect"] + out["errors_read"] + out["errors_write"]
                     + out["errors_timeout"])
    # the text summary says the same; a mismatch would mean a parsing bug
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if rps:
        out["rps_text"] = float(rps.group(1))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", text)
    if socket_errors:
        counts = [int(n) for n in socket_errors.groups()]
        if counts != [out["errors_connect"], out["errors_read"], out["errors_write"],
                      out["errors_timeout"]]:
            raise WrkError("wrk's socket error counts disagree: %s" % socket_errors.group(0))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx and int(non2xx.group(1)) != out["non2xx"]:
        raise WrkError("wrk's non-2xx counts disagree")
    return out
