"""HTTP observer: poll a URL; on failure report it and optionally restart
a watcher.

::

    [plugin:http]
    use = circus.plugins.http_observer.HttpObserver
    check_url = http://127.0.0.1:8080/health
    loop_rate = 30
    timeout = 5
    restart_on_error = web

Options:

- ``check_url``: the http:// or https:// URL to GET (mandatory).
- ``loop_rate``: seconds between two checks (default 60).
- ``timeout``: seconds a check may take (default 10).
- ``restart_on_error``: a watcher to restart when a check fails (default:
  none).

A check fails when the connection fails, the answer takes longer than
``timeout``, or its status is 400 or more. Each failure is reported as an
event: the plugin sets the options ``http_observer.state`` ("failing"),
``http_observer.error`` and ``http_observer.url`` of its own watcher
(``plugin:NAME``), which circusd publishes as ``watcher.plugin:NAME.updated``;
the first check that succeeds after a failure sets ``http_observer.state``
back to "ok". With ``restart_on_error``, the watcher's restart follows
(its ``stop`` and ``start`` events).

The check runs on the plugin's event loop (asyncio streams): no thread.
"""
import asyncio
import logging
import ssl
import time
from urllib.parse import urlsplit

from circus.plugins import CircusPlugin
from circus.plugins._options import number, option

logger = logging.getLogger("circus.plugins.http_observer")


class CheckFailed(Exception):
    pass


async def http_status(url, timeout):
    """GET url; its status code (CheckFailed on any failure to get one)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CheckFailed("not an http(s) URL: %r" % url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host = parts.hostname if parts.port is None else "%s:%d" % (parts.hostname, parts.port)

    async def get():
        context = ssl.create_default_context() if parts.scheme == "https" else None
        reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=context)
        try:
            writer.write(("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: circus-http-observer\r\n"
                          "Connection: close\r\n\r\n" % (path, host)).encode("latin-1"))
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
        fields = line.decode("latin-1").split(None, 2)
        if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
            raise CheckFailed("not an HTTP answer: %r" % line[:80])
        return int(fields[1])

    try:
        async with asyncio.timeout(timeout):
            return await get()
    except TimeoutError:
        raise CheckFailed("no answer within %ss" % timeout) from None
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise CheckFailed(str(exc) or type(exc).__name__) from None


class HttpObserver(CircusPlugin):
    name = "http_observer"

    def __init__(self, endpoint, pubsub_endpoint, check_delay, ssh_server=None, **config):
        super().__init__(endpoint, pubsub_endpoint, check_delay, ssh_server=ssh_server, **config)
        self.check_url = str(config.get("check_url") or "").strip()
        if not self.check_url:
            raise ValueError("option check_url is mandatory")
        self.loop_rate = option(config, "loop_rate", number, 60.0)
        self.timeout = option(config, "timeout", number, 10.0)
        self.restart_on_error = str(config.get("restart_on_error") or "").strip() or None
        self.failing = False

    def handle_init(self):
        self.every(self.loop_rate, self.check)

    def handle_recv(self, data):
        pass

    async def check(self):
        try:
            status = await http_status(self.check_url, self.timeout)
            if status >= 400:
                raise CheckFailed("HTTP status %d" % status)
        except CheckFailed as exc:
            await self.failed(str(exc))
            return
        if self.failing:
            self.failing = False
            logger.info("%s answers again", self.check_url)
            await self.report(state="ok", error="")

    async def failed(self, error):
        self.failing = True
        logger.warning("check of %s failed: %s", self.check_url, error)
        await self.report(state="failing", error=error, url=self.check_url,
                          checked_at=time.time())
        if self.restart_on_error:
            logger.info("restarting %s", self.restart_on_error)
            reply = await self.acall("restart", name=self.restart_on_error)
            if reply.get("status") != "ok":
                logger.error("cannot restart %s: %s", self.restart_on_error, reply.get("reason"))

    async def report(self, **state):
        if self.watcher_name is None:
            return  # run by hand: the log says it all
        options = {"http_observer." + key: value for key, value in state.items()}
        await self.acall("set", name=self.watcher_name, options=options)
