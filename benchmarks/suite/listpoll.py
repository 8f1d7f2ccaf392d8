"""Poll `list` on a circusd while it starts, in a process of its own.

    python benchmarks/suite/listpoll.py ENDPOINT OUT_JSON STOP_FILE [GAP_S]

Waits for circusd's first answer (the endpoint is bound before any watcher
starts), then calls `list` over and over on one persistent DEALER socket,
GAP_S seconds apart, until STOP_FILE exists; writes every round trip (ms)
to OUT_JSON. A process of its own: in the suite's process the measuring
thread would wait for the GIL behind the thread counting processes, and
that wait would be counted as circusd's.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from suite.rawclient import RawClient, RawError  # noqa: E402


def main(argv):
    endpoint, out, stop_file = argv[:3]
    gap = float(argv[3]) if len(argv) > 3 else 0.001
    client = RawClient(endpoint, timeout=60)
    started = time.monotonic()
    while client.try_call("list", timeout=0.05) is None:
        if os.path.exists(stop_file) or time.monotonic() - started > 120:
            break
    first_answer = time.monotonic() - started
    latencies = []
    errors = 0
    while not os.path.exists(stop_file):
        try:
            reply, seconds = client.call("list", timeout=60)
        except RawError:
            errors += 1
            continue
        if reply.get("status") != "ok":
            errors += 1
        latencies.append(seconds * 1000.0)
        time.sleep(gap)
    client.close()
    with open(out, "w") as handle:
        json.dump({"latencies_ms": latencies, "errors": errors, "gap_s": gap,
                   "first_answer_s": first_answer,
                   "polled_s": time.monotonic() - started - first_answer}, handle)


if __name__ == "__main__":
    main(sys.argv[1:])
