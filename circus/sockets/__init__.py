"""Listening sockets that circusd binds once and its workers inherit."""
import errno
import os
import socket
import stat

from circus.errors import SocketError
from circus.options.facts import socket_family as _family
from circus.options.facts import socket_type as _type


class CircusSocket:
    """One bound socket. Options are those of a [socket:NAME] section."""

    OPTIONS = ("host", "port", "family", "type", "backlog", "path", "umask",
               "replace", "so_reuseport", "blocking", "interface")

    def __init__(self, name="", host="localhost", port=8080, family=socket.AF_INET,
                 type=socket.SOCK_STREAM, backlog=2048, path=None, umask=None,
                 replace=False, so_reuseport=False, blocking=False, interface=None):
        self.name = name
        self.host = host
        self.port = int(port)
        self.path = path
        self.family = socket.AF_UNIX if path else _family(family)
        self.type = _type(type)
        self.backlog = int(backlog)
        self.umask = umask
        self.replace = replace
        self.so_reuseport = so_reuseport
        self.blocking = blocking
        self.interface = interface
        self.sock = None

    # the identity used to decide whether a config reload changed the socket
    def config(self):
        return {k: getattr(self, k) for k in self.OPTIONS}

    def fileno(self):
        return self.sock.fileno() if self.sock is not None else None

    @property
    def bound(self):
        return self.sock is not None

    @property
    def location(self):
        if self.family == socket.AF_UNIX:
            return "unix:%s" % self.path
        host = "[%s]" % self.host if self.family == socket.AF_INET6 else self.host
        return "%s:%d" % (host, self.port)

    def bind_and_listen(self):
        try:
            self.sock = self._bind()
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            if exc.errno == errno.EADDRINUSE:
                reason = "address already in use"
            error = SocketError("socket %r: cannot bind %s: %s"
                                % (self.name, self.location, reason.lower()))
            error.socket = self
            raise error from exc
        return self.sock

    def _bind(self):
        if self.family == socket.AF_UNIX:
            self._clear_unix_path()
            sock = socket.socket(self.family, self.type)
            try:
                old = os.umask(self.umask) if self.umask is not None else None
                try:
                    sock.bind(self.path)
                finally:
                    if old is not None:
                        os.umask(old)
                self._listen(sock)
            except BaseException:
                sock.close()
                raise
            return sock

        infos = socket.getaddrinfo(self.host, self.port, self.family, self.type)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.so_reuseport:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if self.interface:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE,
                                self.interface.encode() + b"\0")
            sock.bind(address)
            self._listen(sock)
        except BaseException:
            sock.close()
            raise
        # port 0 asks the kernel for a free port: report the real one
        self.port = sock.getsockname()[1]
        return sock

    def _listen(self, sock):
        if self.type in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET):
            sock.listen(self.backlog)
        sock.setblocking(bool(self.blocking))

    def _clear_unix_path(self):
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise OSError(errno.EEXIST, "%s exists and is not a socket" % self.path)
        if not self.replace and self._unix_path_alive():
            raise OSError(errno.EADDRINUSE, "a server is listening on %s" % self.path)
        # replace = true, or a stale socket left by a dead process
        os.unlink(self.path)

    def _unix_path_alive(self):
        probe = socket.socket(socket.AF_UNIX, self.type)
        try:
            probe.connect(self.path)
            return True
        except OSError:
            return False
        finally:
            probe.close()

    # what listen() can change on a bound socket without binding it again
    RELISTEN_OPTIONS = ("backlog",)

    def can_relisten(self, options):
        """True when options (a [socket:NAME] section) differ from this
        bound socket's only by what relisten() applies in place."""
        if self.sock is None or self.type not in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET):
            return False
        mine = {k: v for k, v in self.config().items() if k not in self.RELISTEN_OPTIONS}
        try:
            theirs = CircusSocket(**{k: v for k, v in options.items()
                                     if k in self.OPTIONS}).config()
        except (ValueError, TypeError):
            return False
        theirs = {k: v for k, v in theirs.items() if k not in self.RELISTEN_OPTIONS}
        if options.get("port") in (0, "0"):
            theirs["port"] = self.port  # the port the kernel gave us last time
        return mine == theirs and set(options) <= set(self.OPTIONS) | {"name", "_where"}

    def relisten(self, backlog):
        """listen() again with a new backlog: same bound socket, same fd, so
        the workers that inherited it keep serving."""
        self.sock.listen(int(backlog))
        self.backlog = int(backlog)

    def close(self):
        if self.sock is None:
            return
        self.sock.close()
        self.sock = None
        if self.family == socket.AF_UNIX and self.path:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def info(self):
        """What listsockets answers: path for a unix socket, host and port
        otherwise, never a null one (Circus 0.19's circusctl prints a socket
        with a "path" key as "at PATH": "at None")."""
        info = {"name": self.name, "fd": self.fileno(), "family": self.family.name,
                "type": self.type.name, "backlog": self.backlog}
        if self.family == socket.AF_UNIX:
            info["path"] = self.path
        else:
            info.update(host=self.host, port=self.port)
        return info

    def __repr__(self):
        return "<CircusSocket %s %s fd=%s>" % (self.name, self.location, self.fileno())


class CircusSockets(dict):
    """Name -> CircusSocket, bound all together or not at all."""

    def __init__(self, sockets=()):
        super().__init__()
        for sock in sockets:
            self[sock.name] = sock

    def add(self, sock):
        self[sock.name] = sock

    def bind_and_listen_all(self):
        done = []
        try:
            for sock in self.values():
                if not sock.bound:
                    sock.bind_and_listen()
                    done.append(sock)
        except SocketError:
            for sock in done:
                sock.close()
            raise

    def close_all(self):
        for sock in self.values():
            sock.close()

    def fds(self):
        return [s.fileno() for s in self.values() if s.bound]

    def variables(self):
        return {"sockets." + name.lower(): s.fileno() for name, s in self.items()}
