"""circus-worker: the built-in WSGI worker, the code of a web worker process.

Serves one WSGI application on a listening socket inherited from circusd
(``--fd N``) or bound by itself (``--host``/``--port``), with waitress
(default), meinheld or wsgiref. It takes chaussette's flags, so it can
replace ``chaussette`` in a watcher's cmd unchanged::

    [watcher:web]
    cmd = circus-worker --fd $(circus.sockets.web) --backend meinheld app.application
    use_sockets = True
    numprocesses = 4

The package, in the order a worker runs it: ``cli`` (flags, logging, main),
``app`` (loading the application and the hooks), ``listener`` (the socket
and what the kernel says of its connections), ``backends`` (one module per
server behind one contract), ``accesslog`` (the one access-log line),
``framestack`` (meinheld's per-request frame-stack chunk, kept for reuse).
It imports no daemon module: only leaves such as circus.util, circus.errors
and circus.sdnotify.

Readiness: once the application is loaded and the server accepts, it sends
``READY=1`` to $NOTIFY_SOCKET (sd_notify), and ``STOPPING=1`` when a stop
begins.

Stopping: SIGTERM, SIGQUIT and SIGINT all stop gracefully. The worker stops
accepting (it only closes its own copy of the listening fd: the socket is
shared with circusd and the sibling workers, which keep accepting), lets the
requests in flight finish, runs the post-hook and exits once no connection
is left. A second SIGINT exits at once.

Zero downtime with keep-alive: a client that reuses a connection sends its
next request the moment it has read a response; if the server closes that
connection in between, the request meets an EOF or a reset and fails (wrk
counts a read error; nginx retries it only if it is idempotent). So during a
stop the worker never closes a connection a client may be about to use:

- every response that starts after the stop (meinheld: to a request read
  after the stop) carries ``Connection: close``, so the client closes the
  connection itself and reconnects (to a sibling: this worker no longer
  accepts). Under load every connection gets one or two more requests and
  leaves that way, within a round trip or two;
- a connection is closed from the server side only when it has been idle
  (nothing received, nothing being answered) for IDLE_GRACE seconds: a
  client that idle is not in the middle of anything, and closing an idle
  keep-alive connection is what its keep-alive timeout does anyway;
- at --graceful-timeout, whatever is left is cut (exit status 3).

With circusd this only holds if the replacement workers accept before the
old ones stop: ``ready = notify`` (the worker sends READY=1 once it accepts)
makes reload and max_age recycling wait for that.

Latency during a reload is bounded by CPU, not by this stop. With meinheld,
READY=1 goes out from the loop's first turn, after the listener is in its
epoll set (a connection arriving in between waits in the backlog and is
accepted on the first poll), and under load an old worker exits within tens
of milliseconds of SIGTERM: meinheld's one-second timer wheel and the idle
sweep are not reached (an idle meinheld worker notices the signal within
about a second: see backends/meinheld.py). But a keep-alive connection stays
with the worker that accepted it: a worker the kernel leaves runnable but
unscheduled (on 2 busy cores, measured up to 0.7 s) stalls every connection
it holds, and a reload adds the new workers' start to the CPU demand at that
very moment. recipes/pyramid/README.rst has the measurements.

Exit status: 0 stopped cleanly; 1 could not start (application, hook or
socket error, backend not installed), with one line on stderr saying why
and, for the common reasons, what to do; 2 bad command line; 3
--graceful-timeout expired and the remaining requests or connections were
cut.
"""

EXIT_OK = 0
EXIT_START_FAILED = 1
EXIT_USAGE = 2
EXIT_FORCED = 3
