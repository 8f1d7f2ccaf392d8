"""waitress: its channels and thread pool (--threads), driven by our own
loop so that a stop can drop the listener without closing anything shared."""
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

        class Channel(HTTPChannel):
            task_class = Task

        base = UnixWSGIServer if sock.family == socket.AF_UNIX else TcpWSGIServer

        class Server(base):
            channel_class = Channel
            draining = False

            def set_reuse_addr(self):
                pass  # the socket is shared: leave its options alone

            def accept_connections(self):
                # already listening (see listener.open_listener); no listen() call,
                # which would reset the backlog shared with the siblings
                self.accepting = True

        unix = sock.family == socket.AF_UNIX
        adj = Adjustments(
            sockets=[sock], threads=args.threads, backlog=args.backlog,
            server_name="localhost" if unix else sock.getsockname()[0],
            # poll(): select() fails on fds >= 1024
            asyncore_use_poll=True,
            channel_timeout=keep_alive or 120,
            cleanup_interval=max(1, min(30, keep_alive or 30)))
        self.map = {}
        self.dispatcher = ThreadedTaskDispatcher()
        self.dispatcher.set_thread_count(adj.threads)
        self.server = Server(self.app, map=self.map, _sock=sock, dispatcher=self.dispatcher,
                             adj=adj, bind_socket=False,
                             sockinfo=(sock.family, sock.type, sock.proto,
                                       sock.getsockname()))
        if unix:
            self.server.effective_port = 0  # SERVER_PORT, as the other backends say
        self.timeout = adj.asyncore_loop_timeout

    def request_stop(self, signum):
        # responses not started yet say Connection: close from now on
        self.server.draining = True
        self.server.pull_trigger()  # wake the poll() now

    def serve(self, on_ready):
        poll = self.wasyncore.poll2
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
                return EXIT_FORCED
            # tasks pull the trigger when done and channels closed by their
            # client wake poll(): the timeout only paces the idle sweep
            poll(SWEEP_INTERVAL, self.map)
        self.dispatcher.shutdown(timeout=5)
        server.trigger.close()
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



BACKEND = WaitressBackend
