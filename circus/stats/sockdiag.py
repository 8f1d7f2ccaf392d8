"""What Linux says about listening sockets, through sock_diag netlink.

circusd-stats reports circus sockets without touching their traffic: it
never accepts, polls or reads a circus socket (an extra reader would steal
wake-ups from the workers). Instead it asks the kernel, the way `ss` does:

- a listening TCP socket: how many connections wait in its accept queue
  now (``queued``), the queue's limit (``backlog``), and how many incoming
  connections the kernel dropped on it since it was bound (``drops``:
  accept queue overflows and the like);
- its open connections (``connections``: ESTABLISHED or CLOSE_WAIT
  sockets on its local address, queued ones included), and the rate at
  which connections appear (``new``, per second: those not there at the
  previous count, divided by the seconds since; ``reads`` repeats it for
  clients of the original stream, whose ``reads`` counted readiness);
- a listening unix stream socket: ``queued`` and ``backlog`` likewise, and
  its open connections (the accepted server ends, which carry the
  socket's path, plus the queued ones);
- a UDP socket: the bytes waiting in its receive queue (``queued_bytes``)
  and ``drops``.

Linux keeps no per-socket count of connections accepted over time. ``new``
is therefore a lower bound: a connection opened and closed between two
samples is never seen. The kernel-wide counters (/proc/net/netstat) are not
per socket either.

Only Linux has sock_diag; elsewhere (or where a seccomp policy forbids
netlink) every figure is None and the address is still reported.
"""
import errno
import ipaddress
import logging
import os
import socket
import struct
import time

logger = logging.getLogger("circus")

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3

# TCP states, as the kernel numbers them (also used for unix sockets)
TCP_ESTABLISHED = 1
TCP_CLOSE = 7
TCP_CLOSE_WAIT = 8
TCP_LISTEN = 10
_OPEN_STATES = (1 << TCP_ESTABLISHED) | (1 << TCP_CLOSE_WAIT)
_ALL_STATES = 0xFFFFFFFF

INET_DIAG_SKMEMINFO = 7
SK_MEMINFO_DROPS = 8
INET_DIAG_NOCOOKIE = 0xFFFFFFFF

UDIAG_SHOW_NAME = 0x01
UDIAG_SHOW_RQLEN = 0x10
UNIX_DIAG_NAME = 0
UNIX_DIAG_RQLEN = 4

_NLMSGHDR = struct.Struct("=IHHII")
_RTATTR = struct.Struct("=HH")
# inet_diag_req_v2: family, protocol, ext, pad, states, then inet_diag_sockid
_INET_REQ = struct.Struct("=BBBxI")
# inet_diag_sockid: ports and addresses in network order, the rest native
_SOCKID_NET = struct.Struct("!HH16s16s")
_SOCKID_HOST = struct.Struct("=III")
# inet_diag_msg after the sockid: expires, rqueue, wqueue, uid, inode
_INET_MSG_HEAD = struct.Struct("=BBBB")
_INET_MSG_TAIL = struct.Struct("=IIIII")
_INET_MSG_SIZE = _INET_MSG_HEAD.size + _SOCKID_NET.size + _SOCKID_HOST.size + _INET_MSG_TAIL.size
# unix_diag_req and unix_diag_msg
_UNIX_REQ = struct.Struct("=BBxxIIIII")
_UNIX_MSG = struct.Struct("=BBBxIII")

_RECV_SIZE = 1 << 17


class DiagUnavailable(Exception):
    pass


class InetSock:
    __slots__ = ("family", "state", "sport", "src", "rqueue", "wqueue", "inode", "cookie",
                 "drops")

    def __init__(self, family, state, sport, src, rqueue, wqueue, inode, cookie, drops):
        self.family = family
        self.state = state
        self.sport = sport
        self.src = src
        self.rqueue = rqueue
        self.wqueue = wqueue
        self.inode = inode
        self.cookie = cookie
        self.drops = drops


class UnixSock:
    __slots__ = ("state", "inode", "cookie", "name", "rqueue", "wqueue")

    def __init__(self, state, inode, cookie, name, rqueue, wqueue):
        self.state = state
        self.inode = inode
        self.cookie = cookie
        self.name = name
        self.rqueue = rqueue
        self.wqueue = wqueue


class SockDiag:
    """One netlink socket, kept open, asked for dumps."""

    def __init__(self):
        try:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
        except (OSError, AttributeError) as exc:
            raise DiagUnavailable("sock_diag netlink is not available: %s" % exc) from None
        self._seq = 0

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _dump(self, payload):
        self._seq += 1
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), SOCK_DIAG_BY_FAMILY,
                                NLM_F_REQUEST | NLM_F_DUMP, self._seq, 0)
        self.sock.send(header + payload)
        while True:
            data = self.sock.recv(_RECV_SIZE)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _, seq, _ = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    return
                body = data[offset + _NLMSGHDR.size:offset + length]
                offset += (length + 3) & ~3
                if seq != self._seq:
                    continue
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return
                yield body

    def inet(self, family, protocol, states, sport=0, meminfo=False):
        """Sockets of one family and protocol in the given states (a bit
        mask), on local port sport when it is not 0."""
        ext = (1 << (INET_DIAG_SKMEMINFO - 1)) if meminfo else 0
        payload = (_INET_REQ.pack(family, protocol, ext, states)
                   # the kernel skips sockets on other local ports itself
                   + _SOCKID_NET.pack(sport, 0, b"", b"")
                   + _SOCKID_HOST.pack(0, INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE))
        result = []
        for body in self._dump(payload):
            if len(body) < _INET_MSG_SIZE:
                continue
            fam, state, _, _ = _INET_MSG_HEAD.unpack_from(body, 0)
            offset = _INET_MSG_HEAD.size
            port, _, src, _ = _SOCKID_NET.unpack_from(body, offset)
            offset += _SOCKID_NET.size
            _, cookie0, cookie1 = _SOCKID_HOST.unpack_from(body, offset)
            offset += _SOCKID_HOST.size
            _, rqueue, wqueue, _, inode = _INET_MSG_TAIL.unpack_from(body, offset)
            if sport and port != sport:
                continue
            drops = None
            if meminfo:
                for kind, value in _attributes(body, _INET_MSG_SIZE):
                    if kind == INET_DIAG_SKMEMINFO and len(value) >= 4 * (SK_MEMINFO_DROPS + 1):
                        drops = struct.unpack_from("=I", value, 4 * SK_MEMINFO_DROPS)[0]
            src = src[:4] if fam == socket.AF_INET else src
            result.append(InetSock(fam, state, port, src, rqueue, wqueue, inode,
                                   (cookie1 << 32) | cookie0, drops))
        return result

    def unix(self, states, show_name=False):
        show = UDIAG_SHOW_RQLEN | (UDIAG_SHOW_NAME if show_name else 0)
        payload = _UNIX_REQ.pack(socket.AF_UNIX, 0, states, 0, show,
                                 INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE)
        result = []
        for body in self._dump(payload):
            if len(body) < _UNIX_MSG.size:
                continue
            _, _, state, inode, cookie0, cookie1 = _UNIX_MSG.unpack_from(body, 0)
            name = None
            rqueue = wqueue = None
            for kind, value in _attributes(body, _UNIX_MSG.size):
                if kind == UNIX_DIAG_NAME:
                    # a path name may carry its NUL; an abstract one starts with one
                    name = value.rstrip(b"\0") if value[:1] != b"\0" else value
                elif kind == UNIX_DIAG_RQLEN and len(value) >= 8:
                    rqueue, wqueue = struct.unpack_from("=II", value)
            result.append(UnixSock(state, inode, (cookie1 << 32) | cookie0, name,
                                   rqueue, wqueue))
        return result


def _attributes(body, offset):
    while offset + _RTATTR.size <= len(body):
        length, kind = _RTATTR.unpack_from(body, offset)
        if length < _RTATTR.size:
            return
        yield kind, body[offset + _RTATTR.size:offset + length]
        offset += (length + 3) & ~3


def socket_inode(pid, fd):
    """The inode of fd in process pid, when it is a socket we may look at."""
    try:
        target = os.readlink("/proc/%d/fd/%d" % (pid, fd))
    except (OSError, TypeError):
        return None
    if target.startswith("socket:[") and target.endswith("]"):
        return int(target[8:-1])
    return None


def _packed_address(family, host):
    """The address a socket bound to host has, as sock_diag reports it."""
    try:
        infos = socket.getaddrinfo(host, None, family)
    except (OSError, UnicodeError):
        return None
    if not infos:
        return None
    address = infos[0][4][0]
    return ipaddress.ip_address(address.split("%")[0]).packed


class SocketStats:
    """Samples the circus sockets (the mappings `listsockets` answers, each
    with the inode of its fd when known) once per call of collect().

    Listening sockets are cheap to ask about: the kernel walks its small
    listening table. Open connections are not: the kernel walks its whole
    connection table, TIME_WAIT entries included, so a host with tens of
    thousands of sockets costs milliseconds per question. Connections are
    therefore counted at most once a second, and less often when counting
    takes longer than `budget` seconds (the figures in between are the last
    ones measured).
    """

    def __init__(self, budget=0.005):
        self.budget = budget
        self._diag = None
        self._failed = False
        self._previous = {}  # socket key -> cookies of its open connections
        self._counts = {}  # socket key -> (connections, new per second)
        self._last_count = None  # monotonic time of the last count
        self._next_count = 0.0

    def close(self):
        if self._diag is not None:
            self._diag.close()
            self._diag = None

    def _get_diag(self):
        if self._diag is None and not self._failed:
            try:
                self._diag = SockDiag()
            except DiagUnavailable as exc:
                self._failed = True
                logger.warning("socket statistics unavailable: %s", exc)
        return self._diag

    def collect(self, sockets, now=None):
        """A mapping per socket: name, fd, address, and what the kernel says."""
        now = time.monotonic() if now is None else now
        results = [_describe(s) for s in sockets]
        diag = self._get_diag()
        if diag is None or not sockets:
            return _finish(results)
        kinds = [_kind(info) for info in sockets]
        try:
            listeners = self._listeners(diag, sockets, kinds, results)
            if now >= self._next_count:
                started = time.monotonic()
                self._count(diag, sockets, kinds, results, listeners, now)
                spent = time.monotonic() - started
                # counting costs what the host's connection table holds: keep
                # to the budget on average by counting less often
                self._next_count = now + max(1.0, spent / self.budget) - 0.05
                self._last_count = now
            for result in results:
                counts = self._counts.get(result["key"])
                if counts is not None and result.get("queued") is not None:
                    result["connections"], result["new"] = counts
                    result["reads"] = result["new"]
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.EACCES, errno.EPROTONOSUPPORT, errno.ENOENT,
                             errno.EOPNOTSUPP, errno.EINVAL):
                logger.warning("socket statistics unavailable: %s", exc)
                self._failed = True
                self.close()
            else:
                logger.exception("socket statistics failed")
        live = {result["key"] for result in results}
        for key in list(self._previous):
            if key not in live:
                del self._previous[key]
                self._counts.pop(key, None)
        return _finish(results)

    def _listeners(self, diag, sockets, kinds, results):
        """Find each socket's kernel entry; fill in queued, backlog, drops."""
        tables = {}
        found = {}
        for info, kind, result in zip(sockets, kinds, results):
            if kind in ("tcp4", "tcp6", "udp4", "udp6"):
                family = socket.AF_INET if kind.endswith("4") else socket.AF_INET6
                if kind.startswith("tcp"):
                    if kind not in tables:
                        tables[kind] = diag.inet(family, socket.IPPROTO_TCP, 1 << TCP_LISTEN,
                                                 meminfo=True)
                    candidates = tables[kind]
                else:
                    candidates = diag.inet(family, socket.IPPROTO_UDP, _ALL_STATES,
                                           sport=info.get("port") or 0, meminfo=True)
                sock = _find_inet(candidates, info, family, info.get("port") or 0)
                if sock is None:
                    continue
                if kind.startswith("tcp"):
                    result.update(queued=sock.rqueue, backlog=sock.wqueue, drops=sock.drops)
                else:
                    result.update(queued_bytes=sock.rqueue, drops=sock.drops)
                found[result["key"]] = sock
            elif kind == "unix":
                if "unix" not in tables:
                    tables["unix"] = diag.unix(1 << TCP_LISTEN, show_name=True)
                path = (info.get("path") or "").encode()
                inode = info.get("inode")
                for sock in tables["unix"]:
                    if (inode and sock.inode == inode) or (not inode and sock.name == path):
                        result.update(queued=sock.rqueue, backlog=sock.wqueue)
                        found[result["key"]] = sock
                        break
        return found

    def _count(self, diag, sockets, kinds, results, listeners, now):
        """Open connections of each listening socket, and how many are new."""
        elapsed = (now - self._last_count) if self._last_count is not None else None
        by_family = {}
        for kind, result in zip(kinds, results):
            if result["key"] in listeners and kind in ("tcp4", "tcp6", "unix"):
                by_family.setdefault(kind, []).append(result)
        for kind, members in by_family.items():
            if kind == "unix":
                table = diag.unix(_OPEN_STATES, show_name=True)
            else:
                family = socket.AF_INET if kind == "tcp4" else socket.AF_INET6
                ports = {listeners[r["key"]].sport for r in members}
                # one port: the kernel filters; several: one walk for them all
                table = diag.inet(family, socket.IPPROTO_TCP, _OPEN_STATES,
                                  sport=ports.pop() if len(ports) == 1 else 0)
            for result in members:
                listener = listeners[result["key"]]
                if kind == "unix":
                    cookies = {s.cookie for s in table if s.name == listener.name}
                    # unix connections not yet accepted are not in the table
                    connections = len(cookies) + (listener.rqueue or 0)
                else:
                    wildcard = not any(listener.src)
                    cookies = {s.cookie for s in table if s.sport == listener.sport
                               and (wildcard or s.src == listener.src)}
                    connections = len(cookies)
                previous = self._previous.get(result["key"])
                self._previous[result["key"]] = cookies
                new = None
                if previous is not None and elapsed:
                    new = round(len(cookies - previous) / elapsed, 1)
                elif previous is None:
                    new = 0
                self._counts[result["key"]] = (connections, new)


def _finish(results):
    for result in results:
        del result["key"]
    return results


def _kind(info):
    family = str(info.get("family", "")).upper()
    stype = str(info.get("type", "SOCK_STREAM")).upper()
    if info.get("path") or family == "AF_UNIX":
        return "unix" if stype in ("SOCK_STREAM", "SOCK_SEQPACKET") else None
    version = "6" if family == "AF_INET6" else "4"
    if stype == "SOCK_STREAM":
        return "tcp" + version
    if stype == "SOCK_DGRAM":
        return "udp" + version
    return None


def _describe(info):
    if info.get("path"):
        address = "unix:%s" % info["path"]
    elif str(info.get("family", "")).upper() == "AF_INET6":
        address = "[%s]:%s" % (info.get("host"), info.get("port"))
    else:
        address = "%s:%s" % (info.get("host"), info.get("port"))
    return {"key": (info.get("name"), info.get("fd"), info.get("inode")),
            "name": info.get("name"), "fd": info.get("fd"), "address": address,
            "family": info.get("family"), "type": info.get("type"),
            "connections": None, "new": None, "reads": None, "queued": None,
            "backlog": None, "drops": None}


def _find_inet(candidates, info, family, port):
    inode = info.get("inode")
    if inode:
        for sock in candidates:
            if sock.inode == inode:
                return sock
        return None
    # no inode (circusd-stats may not look into circusd's fds): match the address
    wanted = _packed_address(family, info.get("host") or "")
    for sock in candidates:
        if sock.sport == port and (wanted is None or sock.src == wanted or not any(sock.src)):
            return sock
    return None
