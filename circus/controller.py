"""The ZeroMQ command endpoint (ROUTER) and event publisher (PUB).

Each request is handled in its own task, so a slow command never holds up
another client; watcher operations serialise on the watcher's own lock.
"""
import asyncio
import json
import logging
import os
import time

import zmq
import zmq.asyncio

from circus.commands import get_command
from circus.commands.base import CommandError, MessageError, errors, short
from circus.logs import Throttle, excerpt
from circus.tasks import BackgroundTasks

logger = logging.getLogger("circus")

# The largest request circusd reads: libzmq drops a bigger frame, and the
# connection that sent it, before buffering it. The largest legitimate
# request, an `add` with every option, is a few kilobytes.
MAX_REQUEST_BYTES = 1 << 20
# how deep a request may nest: the deepest legitimate one (add's options of
# a stream) has 4 levels
MAX_JSON_DEPTH = 32

# a client can provoke these at will: never let one fill the log
_throttle = Throttle(logger)


class Controller:
    def __init__(self, arbiter, endpoint, pubsub_endpoint, context=None,
                 curve_secret_key=None, curve_authorized_keys=None):
        self.arbiter = arbiter
        self.endpoint = endpoint
        self.pubsub_endpoint = pubsub_endpoint
        self.context = context if isinstance(context, zmq.asyncio.Context) else \
            zmq.asyncio.Context.shadow(context) if context is not None else zmq.asyncio.Context()
        self._own_context = context is None
        self.curve_secret_key = curve_secret_key
        self.curve_authorized_keys = curve_authorized_keys
        self.router = None
        self.pub = None
        self._pub_send = None
        self._serve_task = None
        self._tasks = BackgroundTasks("controller")
        self._auth = None
        self._monitors = []

    async def start(self):
        if self.curve_secret_key:
            from circus.security import server_keys, start_authenticator
            own_key = server_keys(self.curve_secret_key)[0]
            self._auth = start_authenticator(self.context, self.curve_authorized_keys, own_key)
        if self.endpoint:
            self.router = self.context.socket(zmq.ROUTER)
            self.router.linger = 0
            self.router.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
            self._secure(self.router, "command")
            _bind(self.router, self.endpoint)
            self._serve_task = asyncio.get_running_loop().create_task(self._serve())
        if self.pubsub_endpoint:
            self.pub = self.context.socket(zmq.PUB)
            self.pub.linger = 0
            # what a PUB reads are subscriptions: topic prefixes, a few bytes
            self.pub.setsockopt(zmq.MAXMSGSIZE, 64 * 1024)
            self._secure(self.pub, "event")
            _bind(self.pub, self.pubsub_endpoint)
            # events are sent through a plain (not asyncio) view of the same
            # socket: a send with NOBLOCK never waits, and the asyncio one
            # costs several times more per event (one per spawn, reap...)
            self._pub_send = zmq.Socket.shadow(self.pub.underlying).send_multipart

    def _secure(self, sock, label):
        if self.curve_secret_key:
            from circus.security import server_keys, watch_refusals
            public, secret = server_keys(self.curve_secret_key)
            sock.curve_server = True
            sock.curve_publickey = public
            sock.curve_secretkey = secret
            self._monitors.append(watch_refusals(sock, label))

    async def stop(self):
        if self._serve_task is not None:
            self._serve_task.cancel()
            try:
                await self._serve_task
            except asyncio.CancelledError:
                pass
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                try:
                    async with asyncio.timeout(1.0):
                        await asyncio.shield(task)
                except Exception:  # TimeoutError included
                    pass
        for task in self._monitors:
            task.cancel()
        for task in self._monitors:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._pub_send = None
        for sock in (self.router, self.pub):
            if sock is not None:
                sock.close(linger=0)
        for endpoint in (self.endpoint, self.pubsub_endpoint):
            if endpoint and endpoint.startswith("ipc://"):
                try:
                    os.unlink(endpoint[len("ipc://"):])
                except OSError:
                    pass
        if self._auth is not None:
            self._auth.stop()
        if self._own_context:
            self.context.term()

    # --- events -----------------------------------------------------------
    def publish(self, topic, msg):
        if self._pub_send is None:
            return
        try:
            # PUB drops for a slow subscriber at its high-water mark: never blocks
            self._pub_send([topic.encode(), json.dumps(msg).encode()], flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            logger.debug("event %s not published: %s", topic, exc)

    # --- commands ---------------------------------------------------------
    async def _serve(self):
        while True:
            frames = await self.router.recv_multipart()
            if len(frames) < 2:
                continue
            # the envelope is [identity] from a DEALER and [identity, b""]
            # from a REQ socket; echoing it serves both
            self._tasks.spawn(self._handle(frames[:-1], frames[-1]))

    async def _handle(self, envelope, raw):
        reply = await self.dispatch(raw)
        if reply is not None:
            data = json.dumps(reply).encode()
            del reply  # a stats reply's thousands of objects: freed now (circus.heap)
            try:
                await self.router.send_multipart(envelope + [data])
            except zmq.ZMQError as exc:
                logger.warning("could not send a reply: %s", exc)

    async def dispatch(self, raw):
        """One request (bytes or mapping) in, one reply mapping out (None for a cast)."""
        started = time.perf_counter()
        msg_id = None
        cast = False
        name = asked = audit = None
        # the metrics label: a known command's name, never what a client made up
        label = "invalid"
        try:
            request = parse_request(raw) if isinstance(raw, (bytes, str)) else raw
            if not isinstance(request, dict):
                raise CommandError(errors.INVALID_JSON, "the request must be a JSON object")
            cast = request.get("msg_type") == "cast"
            msg_id = request.get("id")
            if not isinstance(msg_id, (str, int, float, type(None))):
                msg_id = None  # echoed in the reply: a scalar, as clients send
                raise CommandError(errors.INVALID_MESSAGE, "'id' must be a string")
            name = request.get("command")
            if not isinstance(name, str) or not name:
                raise CommandError(errors.INVALID_MESSAGE, "missing 'command'")
            label = "unknown"
            command = get_command(name)
            label = command.name
            props = request.get("properties")
            if props is None:
                props = {}
            elif not isinstance(props, dict):
                # never read as {}: no properties means "every watcher" to stop
                raise CommandError(errors.INVALID_MESSAGE, "'properties' must be an object")
            # who asked, for the audit trail (the web console sends it); no
            # command sees it
            audit = props.pop("audit", None)
            asked = dict(props)  # as sent: validate() may add converted values
            command.validate(props)
            result = await command.run(self.arbiter, props)
            # the command's own fields win: `status NAME` answers
            # {"status": "active"}, as the documented clients expect
            reply = {"status": "ok"}
            reply.update(result or {})
        except CommandError as exc:
            reply = exc.reply()
        except MessageError as exc:
            reply = CommandError(errors.INVALID_MESSAGE, str(exc)).reply()
        except OSError as exc:
            reply = CommandError(errors.OS_ERROR, str(exc)).reply()
        except Exception as exc:
            _throttle.log("failed", logging.ERROR, "command failed: %s", excerpt(raw),
                          exc_info=True)
            reply = CommandError(errors.COMMAND_ERROR, "%s: %s" % (type(exc).__name__,
                                                                   short(str(exc), 200))).reply()
        if reply.get("errno") in (errors.INVALID_JSON, errors.UNKNOWN_COMMAND):
            # not a circus client, or a broken one
            _throttle.log("refused", logging.WARNING, "refused a request (errno %d, %s): %s",
                          reply["errno"], short(reply["reason"], 200), excerpt(raw))
        counters = getattr(self.arbiter, "counters", None)
        if counters is not None:
            counters.command(label, "ok" if reply.get("status") != "error" else "error",
                             time.perf_counter() - started)
        if isinstance(audit, dict):
            self.audit(name, asked, audit, reply)
        if cast:
            return None
        reply["time"] = time.time()
        reply["id"] = msg_id
        return reply

    def audit(self, command, props, who, reply):
        """Log a command run on someone's behalf and publish it as
        audit.<command>: user, role, client address, target, result."""
        def text(value):
            return str(value)[:200] if value is not None else None
        event = {"time": time.time(), "user": text(who.get("user")),
                 "role": text(who.get("role")), "addr": text(who.get("addr")),
                 "via": text(who.get("via")), "command": text(command),
                 "target": text((props or {}).get("name")),
                 "properties": {k: v for k, v in (props or {}).items() if k != "name"},
                 "status": "error" if reply.get("status") == "error" else "ok",
                 "reason": reply.get("reason")}
        logger.info("audit: %s (%s) from %s via %s: %s %s: %s", event["user"], event["role"],
                    event["addr"], event["via"], event["command"], event["target"] or "",
                    event["status"] if event["status"] == "ok"
                    else "error: %s" % event["reason"])
        self.publish("audit.%s" % (str(command).lower() if command else "unknown"), event)


def parse_request(raw):
    """The JSON of a request, or CommandError errno 1: not UTF-8, not JSON
    (NaN and Infinity are not), nested deeper than MAX_JSON_DEPTH."""
    try:
        request = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise CommandError(errors.INVALID_JSON, "invalid JSON: %s" % short(str(exc), 200)) from None
    if _depth_exceeds(request, MAX_JSON_DEPTH):
        raise CommandError(errors.INVALID_JSON, "invalid JSON: nested deeper than %d levels"
                           % MAX_JSON_DEPTH)
    return request


def _no_constant(name):
    raise ValueError("%s is not JSON" % name)


def _depth_exceeds(value, limit):
    """True when value nests lists and objects more than limit deep
    (iterative: the check itself must not recurse)."""
    if not isinstance(value, (dict, list)):
        return False
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, (dict, list)):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _bind(sock, endpoint):
    if endpoint.startswith("ipc://"):
        path = endpoint[len("ipc://"):]
        # the socket file must never be reachable by other users, not even
        # for the moment between bind and chmod
        old = os.umask(0o177)
        try:
            sock.bind(endpoint)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
    else:
        sock.bind(endpoint)
