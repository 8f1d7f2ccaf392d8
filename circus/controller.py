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
from circus.commands.base import CommandError, MessageError, errors
from circus.tasks import BackgroundTasks

logger = logging.getLogger("circus")


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
            self._secure(self.router, "command")
            _bind(self.router, self.endpoint)
            self._serve_task = asyncio.get_running_loop().create_task(self._serve())
        if self.pubsub_endpoint:
            self.pub = self.context.socket(zmq.PUB)
            self.pub.linger = 0
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
            try:
                await self.router.send_multipart(envelope + [json.dumps(reply).encode()])
            except zmq.ZMQError as exc:
                logger.warning("could not send a reply: %s", exc)

    async def dispatch(self, raw):
        """One request (bytes or mapping) in, one reply mapping out (None for a cast)."""
        msg_id = None
        cast = False
        try:
            if isinstance(raw, (bytes, str)):
                try:
                    request = json.loads(raw)
                except ValueError as exc:
                    raise CommandError(errors.INVALID_JSON, "invalid JSON: %s" % exc) from None
            else:
                request = raw
            if not isinstance(request, dict):
                raise CommandError(errors.INVALID_JSON, "the request must be a JSON object")
            msg_id = request.get("id")
            cast = request.get("msg_type") == "cast"
            name = request.get("command")
            if not isinstance(name, str) or not name:
                raise CommandError(errors.INVALID_MESSAGE, "missing 'command'")
            command = get_command(name)
            props = request.get("properties") or {}
            if not isinstance(props, dict):
                raise CommandError(errors.INVALID_MESSAGE, "'properties' must be an object")
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
            logger.exception("command failed: %r", raw)
            reply = CommandError(errors.COMMAND_ERROR, "%s: %s" % (type(exc).__name__, exc)).reply()
        if cast:
            return None
        reply["time"] = time.time()
        reply["id"] = msg_id
        return reply


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
