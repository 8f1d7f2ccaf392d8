"""Every metric circusd-metrics exposes: name, type, labels and help, in one
place. The collector builds its families from here, README.rst's metrics
section lists the same names and the tests hold the three together.
"""
from collections import namedtuple

Family = namedtuple("Family", "name type labels help")

GAUGE, COUNTER, HISTOGRAM = "gauge", "counter", "histogram"

FAMILIES = (
    # circusd itself
    Family("circus_up", GAUGE, (),
           "1 when circusd answered this scrape's metrics command, else 0"),
    Family("circus_build_info", GAUGE, ("version",), "circusd's version, in the label"),
    Family("circus_daemon_state", GAUGE, ("state",),
           "1 for circusd's state (starting, active, stopping), 0 for the others"),
    Family("circus_daemon_start_time_seconds", GAUGE, (),
           "when circusd started, in seconds since the epoch"),
    Family("circus_daemon_uptime_seconds", GAUGE, (), "seconds since circusd started"),
    Family("circus_daemon_cpu_seconds_total", COUNTER, (),
           "CPU time (user + system) circusd has used"),
    Family("circus_daemon_resident_memory_bytes", GAUGE, (), "circusd's resident memory"),
    Family("circus_daemon_open_fds", GAUGE, (), "file descriptors circusd has open"),
    # watchers
    Family("circus_watcher_state", GAUGE, ("watcher", "state"),
           "1 for the watcher's state (stopped, starting, active, stopping), 0 for the "
           "others"),
    Family("circus_watcher_processes_wanted", GAUGE, ("watcher",),
           "processes the watcher is set to run (numprocesses)"),
    Family("circus_watcher_processes_running", GAUGE, ("watcher",),
           "processes running and not on their way out"),
    Family("circus_watcher_processes_ready", GAUGE, ("watcher",),
           "running processes that are ready (ready = notify: said READY=1)"),
    Family("circus_watcher_spawns_total", COUNTER, ("watcher",), "processes spawned"),
    Family("circus_watcher_respawns_total", COUNTER, ("watcher",),
           "processes spawned to replace one that died unasked (a crash, a kill -9)"),
    Family("circus_watcher_exits_total", COUNTER, ("watcher", "cause", "code"),
           "processes reaped, by cause: exit (code: the exit status) or signal (code: "
           "the signal's name)"),
    Family("circus_watcher_spawn_failures_total", COUNTER, ("watcher", "cause"),
           "failed starts, by cause: error (the spawn failed), early_exit (died before "
           "it started well), ready_timeout (no READY=1 within ready_timeout), refused "
           "(a before_spawn hook)"),
    Family("circus_watcher_give_ups_total", COUNTER, ("watcher", "cause"),
           "times the watcher was stopped for failing, by cause: max_retry (circusd) "
           "or flapping (the flapping plugin)"),
    Family("circus_watcher_recycles_total", COUNTER, ("watcher",),
           "processes replaced for reaching max_age"),
    Family("circus_watcher_reload_duration_seconds", HISTOGRAM, ("watcher",),
           "how long each reload of the watcher took (its _count: the reloads)"),
    Family("circus_watcher_cpu_seconds_total", COUNTER, ("watcher",),
           "CPU time used by the watcher's processes, those gone included (as last "
           "seen by circusd-metrics)"),
    Family("circus_watcher_resident_memory_bytes", GAUGE, ("watcher",),
           "resident memory of the watcher's processes, summed"),
    # per process: only with prometheus_per_process = true
    Family("circus_process_cpu_seconds_total", COUNTER, ("watcher", "pid"),
           "CPU time used by one process"),
    Family("circus_process_resident_memory_bytes", GAUGE, ("watcher", "pid"),
           "resident memory of one process"),
    # circus sockets, as the kernel sees them (sock_diag)
    Family("circus_socket_connections", GAUGE, ("socket",),
           "open connections on the socket's address (accepted or waiting)"),
    Family("circus_socket_accept_queue", GAUGE, ("socket",),
           "connections waiting in the accept queue"),
    Family("circus_socket_backlog", GAUGE, ("socket",), "the accept queue's limit"),
    Family("circus_socket_drops_total", COUNTER, ("socket",),
           "incoming connections the kernel dropped on the socket since it was bound"),
    # the control plane
    Family("circus_command_duration_seconds", HISTOGRAM, ("command", "status"),
           "time from a command's request to its reply, by command and status (ok, "
           "error); its _count: commands answered"),
    # circusd-metrics itself
    Family("circus_scrape_duration_seconds", GAUGE, (),
           "how long circusd-metrics took to collect this scrape's figures (circusd's "
           "reply, /proc, sock_diag)"),
)

BY_NAME = {family.name: family for family in FAMILIES}
PER_PROCESS = ("circus_process_cpu_seconds_total", "circus_process_resident_memory_bytes")


def sample_names(family):
    """The names of the samples a family shows in a scrape."""
    if family.type == HISTOGRAM:
        return [family.name + suffix for suffix in ("_bucket", "_sum", "_count")]
    return [family.name]
