"""Daemon side: `[circus] httpd = True` makes circusd run the console.

circusd binds a circus socket named circushttpd on httpd_host:httpd_port
and runs circushttpd on it as a singleton watcher of its own, the way it
runs circusd-stats. Users and the cookie secret reach the console through
its environment (CIRCUSHTTPD_USERS, CIRCUSHTTPD_SECRET), never its command
line, which any local user can read.

Only circusd calls this (it imports the daemon's Watcher and CircusSocket);
the console itself never imports it.
"""
import os
import shlex
import sys

from circus.web import WATCHER_NAME

# after circusd-stats (whose stream it reads), before every ordinary watcher
HTTPD_PRIORITY = 999999


def _connectable(endpoint):
    from circus.stats import connectable
    return connectable(endpoint) if endpoint else None


def make_httpd_watcher(arbiter):
    """The circushttpd watcher, its socket bound and added to arbiter.sockets."""
    from circus.sockets import CircusSocket
    from circus.stats import LogStream
    from circus.watcher import Watcher
    if not arbiter.endpoint:
        raise ValueError("httpd needs circusd's endpoint: the console sends its commands there")
    options = getattr(arbiter, "options", None) or {}
    args = ["-m", "circus.web", "--fd", "$(circus.sockets.%s)" % WATCHER_NAME,
            "--endpoint", _connectable(arbiter.endpoint),
            "--log-level", "debug" if arbiter.debug else "info"]
    if arbiter.pubsub_endpoint:
        args += ["--pubsub", _connectable(arbiter.pubsub_endpoint)]
    if arbiter.stats_endpoint:
        args += ["--stats-endpoint", _connectable(arbiter.stats_endpoint)]
    auth_file = options.get("httpd_auth_file")
    if auth_file:
        base = os.path.dirname(os.path.abspath(arbiter.config_file)) \
            if arbiter.config_file else os.getcwd()
        args += ["--auth-file", os.path.join(base, os.path.expanduser(auth_file))]
    for key, flag in (("httpd_insecure", "--insecure"), ("httpd_read_only", "--read-only")):
        if options.get(key):
            args.append(flag)
    if options.get("httpd_url_prefix"):
        args += ["--url-prefix", options["httpd_url_prefix"]]
    if options.get("httpd_trust_forwarded"):
        args += ["--trust-forwarded", options["httpd_trust_forwarded"]]
    secret = options.get("curve_secret_key")
    if secret:
        args += ["--curve-key", secret, "--server-key", secret]
    env = {}
    if options.get("httpd_users"):
        env["CIRCUSHTTPD_USERS"] = options["httpd_users"]
    if options.get("httpd_secret"):
        env["CIRCUSHTTPD_SECRET"] = options["httpd_secret"]
    sock = CircusSocket(name=WATCHER_NAME, host=arbiter.httpd_host, port=arbiter.httpd_port)
    sock.bind_and_listen()
    arbiter.sockets.add(sock)
    return Watcher(WATCHER_NAME, cmd=shlex.quote(sys.executable), args=args, env=env,
                   singleton=True, use_sockets=True, copy_env=True, copy_path=True,
                   priority=HTTPD_PRIORITY, graceful_timeout=5.0, max_retry=5,
                   stderr_stream={"class": LogStream, "label": WATCHER_NAME})
