"""waitress: its channels and thread pool (--threads), driven by our own
loop so that a stop can drop the listener without closing anything shared,
and whose turns cost what the busy connections cost (see Poller)."""
import collections
import select
import socket
import time

from circus.sdnotify import STOPPING, notify
from circus.worker import EXIT_FORCED, EXIT_OK
from circus.worker.backends import IDLE_GRACE, SWEEP_INTERVAL, Backend, logger


class WaitressBackend(Backend):
    name = "waitress"
    requires = ("waitress",)
    install = "pip install waitress"

    def __init__(self, app, sock, args):
        super().__init__(app, sock, args)
        from waitress import wasyncore
        from waitress.adjustments import Adjustments
        from waitress.channel import HTTPChannel
        from waitress.server import TcpWSGIServer, UnixWSGIServer
        from waitress.task import ThreadedTaskDispatcher, WSGITask

        self.wasyncore = wasyncore
        keep_alive = args.keep_alive

        class Task(WSGITask):
            def build_response_header(self):
                # checked when the headers go out, so a request already in
                # flight when the stop began still answers Connection: close
                if self.channel.server.draining or not keep_alive:
                    self.set_close_on_finish()
                return super().build_response_header()

        poller = self.poller = Poller(HTTPChannel, wasyncore.readwrite)

        class Channel(_Polled, HTTPChannel):
            task_class = Task

            def write_soon(self, data):
                written = super().write_soon(data)
                if self.total_outbufs_len >= self.adj.send_bytes:
                    # output to flush while the application still runs
                    poller.stirred(self)
                return written

        Channel.poller = poller
        base = UnixWSGIServer if sock.family == socket.AF_UNIX else TcpWSGIServer

        class Server(_Polled, base):
            channel_class = Channel
            draining = False

            def maintenance(self, now):
                super().maintenance(now)
                poller.look_at_everything()  # idle channels may close now

            def set_reuse_addr(self):
                pass  # the socket is shared: leave its options alone

            def accept_connections(self):
                # already listening (see listener.open_listener); no listen() call,
                # which would reset the backlog shared with the siblings
                self.accepting = True

        Server.poller = poller
        unix = sock.family == socket.AF_UNIX
        adj = Adjustments(
            sockets=[sock], threads=args.threads, backlog=args.backlog,
            server_name="localhost" if unix else sock.getsockname()[0],
            # poll(): select() fails on fds >= 1024
            asyncore_use_poll=True,
            channel_timeout=keep_alive or 120,
            cleanup_interval=max(1, min(30, keep_alive or 30)))
        self.map = {}

        class Dispatcher(ThreadedTaskDispatcher):
            def add_task(self, channel):
                super().add_task(_Service(channel, poller))

        self.dispatcher = Dispatcher()
        self.dispatcher.set_thread_count(adj.threads)
        self.server = Server(self.app, map=self.map, _sock=sock, dispatcher=self.dispatcher,
                             adj=adj, bind_socket=False,
                             sockinfo=(sock.family, sock.type, sock.proto,
                                       sock.getsockname()))
        if unix:
            self.server.effective_port = 0  # SERVER_PORT, as the other backends say
        self.timeout = adj.asyncore_loop_timeout
        poller.look_at_everything()  # the trigger is in the map too

    def request_stop(self, signum):
        # responses not started yet say Connection: close from now on
        self.server.draining = True
        self.server.pull_trigger()  # wake the poll() now

    def serve(self, on_ready):
        poll = self.poller.poll
        socket_map = self.map
        timeout = self.timeout
        on_ready()
        while not self.stopping:
            poll(timeout, socket_map)
        return self._drain(poll)

    def _drain(self, poll):
        server = self.server
        server.draining = True
        # Stop accepting: drop the listener from the map and close our copy of
        # the fd. Never shutdown(): that would stop circusd and the siblings.
        self.wasyncore.dispatcher.close(server)
        notify(STOPPING)  # after: from now on, siblings get every connection
        deadline = time.monotonic() + self.args.graceful_timeout
        grace = min(IDLE_GRACE, self.args.graceful_timeout)
        channels = server.active_channels
        while True:
            self._close_idle(channels, grace)
            if not channels:
                break
            if time.monotonic() >= deadline:
                logger.warning("graceful timeout: closing %d connection(s)", len(channels))
                for channel in list(channels.values()):
                    channel.handle_close()
                self.dispatcher.shutdown(cancel_pending=True, timeout=0.5)
                self.poller.close()
                return EXIT_FORCED
            # tasks pull the trigger when done and channels closed by their
            # client wake poll(): the timeout only paces the idle sweep
            poll(SWEEP_INTERVAL, self.map)
        self.dispatcher.shutdown(timeout=5)
        server.trigger.close()
        self.poller.close()
        return EXIT_OK

    @staticmethod
    def _close_idle(channels, grace):
        """Close the channels idle for `grace` seconds. The others are
        served: their next response says Connection: close (see Task) and
        the client closes them."""
        idle_since = time.time() - grace  # waitress stamps last_activity with time()
        for channel in list(channels.values()):
            if (channel.requests or channel.request is not None or channel.total_outbufs_len
                    or channel.will_close or channel.close_when_flushed
                    or channel.last_activity > idle_since):
                continue  # being read, answered or sent, or idle for too short a time
            try:
                if channel.socket.recv(1, socket.MSG_PEEK):
                    continue  # a request just arrived: the loop reads it next
            except BlockingIOError:
                pass
            except OSError:
                pass  # reset by the client: close it all the same
            channel.handle_close()



class _Polled:
    """Tells the Poller when a dispatcher enters or leaves the map."""
    poller = None

    def add_channel(self, map=None):
        super().add_channel(map)
        self.poller.added(self._fileno)

    def del_channel(self, map=None):
        if self._fileno is not None:
            self.poller.removed(self._fileno)
        super().del_channel(map)


class _Service:
    """A channel's turn in the threads, which tells the Poller once done."""
    __slots__ = ("channel", "poller")

    def __init__(self, channel, poller):
        self.channel = channel
        self.poller = poller

    def service(self):
        try:
            self.channel.service()
        finally:
            self.poller.stirred(self.channel)

    def cancel(self):
        self.channel.cancel()

    def __repr__(self):
        return repr(self.channel)


class Poller:
    """One turn of waitress's loop, as wasyncore.poll2 does it, with epoll.

    poll2 asks every connection whether it is readable and writable and
    registers it again, at every turn: with 25 keep-alive connections per
    process that was most of the main thread's work, and with an
    application that takes a millisecond of CPU per request (one request,
    so a turn or two, at a time) it cost more CPU per request than
    gunicorn's sync worker spends in all.

    Here the registrations stay in the epoll set, and a turn looks again
    only at what may have changed: the dispatchers that had an event or
    were just added, the connections the threads are done with or have
    output for (`stirred`: marked, then the trigger pulled), the listener
    and the trigger; after the server's idle sweep, at everything. A
    connection waiting for its turn in the threads changes only there; an
    idle keep-alive connection only by an event of its own or by the sweep.
    A dispatcher that wants nothing is not registered at all, as with poll2
    (so a hang-up is not reported meanwhile either)."""

    READ = select.EPOLLIN | select.EPOLLPRI

    def __init__(self, channel_class, readwrite):
        self.channel_class = channel_class
        self.readwrite = readwrite
        self.epoll = select.epoll()
        self.masks = {}  # fd -> the mask registered
        self.always = set()  # fds of the dispatchers that are not connections
        self.pending = set()  # to look at before the next wait
        self.marked = collections.deque()  # fds the threads stirred (thread-safe)
        self.everything = False

    def added(self, fd):
        self.pending.add(fd)

    def removed(self, fd):
        self.pending.discard(fd)
        self.always.discard(fd)
        if self.masks.pop(fd, None) is not None:
            try:
                self.epoll.unregister(fd)
            except OSError:
                pass

    def stirred(self, channel):
        """From a thread: channel changed; wake the loop to look at it."""
        fd = channel._fileno
        if fd is not None:
            self.marked.append(fd)
            channel.server.pull_trigger()

    def look_at_everything(self):
        self.everything = True

    def _look_at(self, fd, obj):
        if not isinstance(obj, self.channel_class):
            self.always.add(fd)
        mask = 0
        if obj.readable():
            mask = self.READ
        if obj.writable() and not obj.accepting:
            mask |= select.EPOLLOUT
        old = self.masks.get(fd, 0)
        if mask != old:
            try:
                if not mask:
                    del self.masks[fd]
                    self.epoll.unregister(fd)
                elif not old:
                    self.masks[fd] = mask
                    try:
                        self.epoll.register(fd, mask)
                    except FileExistsError:  # a new socket on a number not forgotten yet
                        self.epoll.modify(fd, mask)
                else:
                    self.masks[fd] = mask
                    self.epoll.modify(fd, mask)
            except OSError:  # closed behind our back: gone from the epoll set
                self.masks.pop(fd, None)

    def poll(self, timeout, socket_map):
        if self.everything:
            self.everything = False
            fds = set(socket_map)
            for fd in [fd for fd in self.masks if fd not in socket_map]:
                self.removed(fd)
        else:
            fds = self.pending | self.always
        self.pending = set()
        marked = self.marked
        while marked:
            fds.add(marked.popleft())
        for fd in fds:
            obj = socket_map.get(fd)
            if obj is None:
                self.removed(fd)
            else:
                self._look_at(fd, obj)
        readwrite = self.readwrite
        for fd, flags in self.epoll.poll(-1 if timeout is None else timeout):
            obj = socket_map.get(fd)
            if obj is not None:
                readwrite(obj, flags)
                self.pending.add(fd)

    def close(self):
        self.epoll.close()


BACKEND = WaitressBackend
