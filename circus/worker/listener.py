"""The listening socket: inherited from circusd (--fd) or bound here, and
what the kernel tells of the connections accepted on it.

The socket is shared with circusd and the sibling workers: nothing here
changes it for them (no listen() on a listening socket, no shutdown())."""
import fcntl
import os
import socket
import stat
import struct
import termios

from circus.errors import WorkerStartError


def describe(sock):
    """The address for a log line: host:port, [v6]:port or unix:PATH."""
    if sock.family == socket.AF_UNIX:
        return "unix:%s" % sock.getsockname()
    addr = sock.getsockname()
    host = "[%s]" % addr[0] if sock.family == socket.AF_INET6 else addr[0]
    return "%s:%s" % (host, addr[1])


def open_listener(args):
    """Return (socket, path to unlink at exit or None)."""
    if args.fd is not None and args.fd >= 0:
        try:
            sock = socket.socket(fileno=args.fd)
        except OSError as exc:
            raise WorkerStartError("--fd %d is not an open socket: %s" % (args.fd, exc)) from exc
        if sock.type != socket.SOCK_STREAM:
            sock.detach()
            raise WorkerStartError("--fd %d is not a stream socket" % args.fd)
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            # bound but not listening yet; an already listening socket is left
            # alone: listen() again would change the backlog for every sibling
            sock.listen(args.backlog)
        # close-on-exec is per fd, not shared: keeps the app's subprocesses
        # from holding the port open, without touching siblings
        sock.set_inheritable(False)
        return sock, None

    host = args.host
    if host.startswith("fd://"):  # chaussette's own spelling
        args.fd = int(host[5:])
        return open_listener(args)
    if host.startswith("unix:") or args.address_family == "AF_UNIX":
        path = host[5:] if host.startswith("unix:") else host
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if os.path.exists(path):
                if stat.S_ISSOCK(os.stat(path).st_mode):
                    os.unlink(path)  # stale socket of an earlier run
            sock.bind(path)
            sock.listen(args.backlog)
        except OSError as exc:
            sock.close()
            raise WorkerStartError("cannot bind unix:%s: %s" % (path, exc)) from exc
        return sock, path

    host = host.strip("[]")
    family = socket.AF_INET6 if args.address_family == "AF_INET6" else socket.AF_UNSPEC
    try:
        infos = socket.getaddrinfo(host, args.port, family, socket.SOCK_STREAM, 0,
                                   socket.AI_PASSIVE)
        af, kind, proto, _, addr = infos[0]
        sock = socket.socket(af, kind, proto)
    except OSError as exc:
        raise WorkerStartError("cannot bind %s:%s: %s" % (host, args.port, exc)) from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(args.backlog)
    except OSError as exc:
        sock.close()
        raise WorkerStartError("cannot bind %s:%s: %s" % (host, args.port, exc)) from exc
    return sock, None


def same_listener(conn, family, local):
    """True when `conn` is a connection accepted on the listener whose family
    and getsockname() are given (accepted sockets carry the listener's local
    address; the app's own client sockets have an ephemeral one)."""
    if conn.family != family:
        return False
    try:
        if conn.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return False
        mine = conn.getsockname()
    except OSError:
        return False
    if family == socket.AF_UNIX:
        return bool(mine) and mine == local
    return mine[1] == local[1] and (local[0] in ("0.0.0.0", "::") or mine[0] == local[0])


def accepted_connections(family, local):
    """Yield a socket object for each connection of this process accepted on
    the listener. The fds belong to the server: each object is detached
    (never closed) once the caller is done with it."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return
    for name in names:
        fd = int(name)
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            conn = socket.socket(fileno=fd)
        except OSError:
            continue
        try:
            if same_listener(conn, family, local):
                yield conn
        finally:
            conn.detach()


def tcp_idle_seconds(conn):
    """How long a TCP connection has been idle, from the kernel's own
    counters: 0 while something is unread, unsent, or received and not yet
    answered (data came in after the last data went out); otherwise the
    time since data last went out (the answer, or the accept)."""
    info = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    # struct tcp_info: tcpi_last_data_sent at byte 44, tcpi_last_data_recv
    # at byte 52, in milliseconds ago
    sent_ago, received_ago = struct.unpack_from("I4xI", info, 44)
    if received_ago < sent_ago:
        return 0.0  # a request is being read or answered
    for request in (termios.FIONREAD, termios.TIOCOUTQ):  # SIOCINQ, SIOCOUTQ
        if struct.unpack("i", fcntl.ioctl(conn.fileno(), request, b"\0" * 4))[0]:
            return 0.0
    return sent_ago / 1000.0

