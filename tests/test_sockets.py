"""CircusSocket: bound by circusd, inherited by the watchers that ask."""
import asyncio
import json
import os
import socket
import stat
import sys

import pytest

from support.aio import running, until
from support import free_port, wait_for
from circus.sockets import CircusSocket, CircusSockets, SocketError
from circus.watcher import Watcher

PY = sys.executable


def run(coro):
    async def bounded():
        async with asyncio.timeout(60):
            return await coro
    return asyncio.run(bounded())


def open_fds(pid):
    fds = {}
    for name in os.listdir("/proc/%d/fd" % pid):
        try:
            fds[int(name)] = os.readlink("/proc/%d/fd/%s" % (pid, name))
        except OSError:
            pass
    return fds


def test_tcp4_ephemeral_port_reports_the_real_port():
    sock = CircusSocket("web", host="127.0.0.1", port=0)
    sock.bind_and_listen()
    try:
        assert sock.port != 0
        assert sock.sock.getsockname() == ("127.0.0.1", sock.port)
        assert sock.info()["port"] == sock.port
        with socket.create_connection(("127.0.0.1", sock.port), timeout=2):
            pass
    finally:
        sock.close()


def test_tcp6():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    sock = CircusSocket("web6", host="::1", port=0, family="AF_INET6")
    try:
        sock.bind_and_listen()
    except SocketError as exc:
        pytest.skip("cannot bind ::1 here: %s" % exc)
    try:
        assert sock.sock.family == socket.AF_INET6
        with socket.create_connection(("::1", sock.port), timeout=2):
            pass
        assert sock.location == "[::1]:%d" % sock.port
    finally:
        sock.close()


def test_backlog_reuseport_and_blocking_options():
    sock = CircusSocket("opts", host="127.0.0.1", port=0, backlog=7, so_reuseport=True,
                        blocking=True)
    sock.bind_and_listen()
    try:
        assert sock.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert sock.sock.getblocking() is True
        assert sock.backlog == 7
    finally:
        sock.close()
    default = CircusSocket("default", host="127.0.0.1", port=0)
    assert default.backlog == 2048
    default.bind_and_listen()
    try:
        assert default.sock.getblocking() is False
    finally:
        default.close()


def test_unix_socket_umask_replace_and_removal(tmp_path):
    path = str(tmp_path / "web.sock")
    sock = CircusSocket("unix", path=path, umask=0o077)
    sock.bind_and_listen()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700  # 0777 less the umask
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(path)
    # a live socket at the path is not replaced without replace = true
    other = CircusSocket("other", path=path)
    with pytest.raises(SocketError, match="other"):
        other.bind_and_listen()
    sock.close()
    assert not os.path.exists(path)


def test_unix_stale_path_is_replaced(tmp_path):
    path = str(tmp_path / "stale.sock")
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.close()  # leaves the file behind, nobody listening
    sock = CircusSocket("unix", path=path)
    sock.bind_and_listen()
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
    finally:
        sock.close()
    # replace = true takes over even a live path
    live = CircusSocket("a", path=path)
    live.bind_and_listen()
    taker = CircusSocket("b", path=path, replace=True)
    taker.bind_and_listen()
    taker.close()
    live.sock.close()


def test_udp_socket():
    sock = CircusSocket("udp", host="127.0.0.1", port=0, type="SOCK_DGRAM")
    sock.bind_and_listen()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"ping", ("127.0.0.1", sock.port))
        sock.sock.settimeout(2)
        assert sock.sock.recv(10) == b"ping"
    finally:
        sock.close()


def test_port_in_use_is_an_error_naming_the_socket():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        first = CircusSocket("free", host="127.0.0.1", port=0)
        busy = CircusSocket("busy", host="127.0.0.1", port=port)
        group = CircusSockets([first, busy])
        with pytest.raises(SocketError) as info:
            group.bind_and_listen_all()
        assert "busy" in str(info.value) and str(port) in str(info.value)
        assert "address already in use" in str(info.value)
        assert not first.bound  # all or nothing
    finally:
        holder.close()


def test_only_use_sockets_watchers_inherit_the_fds(tmp_path):
    out = tmp_path / "fd"

    async def main():
        web = CircusSocket("web", host="127.0.0.1", port=0)
        reader = Watcher("reader", "sh -c 'echo $(circus.sockets.web) > %s; exec sleep 120'" % out,
                         use_sockets=True, numprocesses=2)
        other = Watcher("other", "sleep 120")
        async with running([reader, other], sockets=[web]):
            fd = web.fileno()
            await until(lambda: out.exists() and out.read_text().strip())
            assert out.read_text().strip() == str(fd)
            inode = os.readlink("/proc/self/fd/%d" % fd)
            for pid in reader.pids:
                assert open_fds(pid).get(fd) == inode
            # right after exec the dynamic loader briefly holds a library
            # open (fd 3): wait for it to settle; an inherited fd never goes
            await until(lambda: sorted(open_fds(other.pids[0])) == [0, 1, 2],
                        message="only stdio open in 'other'")
            assert inode not in open_fds(other.pids[0]).values()
    run(main())


def test_workers_accept_on_the_shared_socket_and_socket_outlives_them(tmp_path):
    server = tmp_path / "echo.py"
    server.write_text(
        "import os, socket, sys\n"
        "sock = socket.socket(fileno=int(sys.argv[1]))\n"
        "sock.setblocking(True)\n"
        "while True:\n"
        "    conn, _ = sock.accept()\n"
        "    conn.sendall(b'%d' % os.getpid())\n"
        "    conn.close()\n")

    def ask(port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            return int(conn.recv(32))

    async def main():
        web = CircusSocket("web", host="127.0.0.1", port=0)
        watcher = Watcher("echo", "%s %s $(circus.sockets.web)" % (PY, server),
                          use_sockets=True, numprocesses=2)
        async with running([watcher], sockets=[web]):
            port = web.port
            loop = asyncio.get_running_loop()
            answer = await loop.run_in_executor(None, ask, port)
            assert answer in watcher.pids
            old = set(watcher.pids)
            await watcher.reload()
            assert not set(watcher.pids) & old
            fd_before = web.fileno()
            answer = await loop.run_in_executor(None, ask, port)
            assert answer in watcher.pids
            assert web.fileno() == fd_before  # never closed by a reload
        assert not web.bound
        with socket.socket() as probe:
            # SO_REUSEADDR passes over TIME_WAIT leftovers, never a listener
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))  # released at quit
    run(main())


# reads its socket's fd number from its environment, says what that fd is,
# then answers each connection on it with its pid
FD_REPORTER = """\
import json, os, socket, sys
fd = int(os.environ["WEB_FD"])
sock = socket.socket(fileno=fd)
info = {"env": os.environ["WEB_FD"], "upper": os.environ["UPPER_FD"],
        "name": list(sock.getsockname()), "type": int(sock.type),
        "listening": sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN),
        "pid": os.getpid()}
with open(sys.argv[1] + ".tmp", "w") as handle:
    json.dump(info, handle)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
sock.setblocking(True)
while True:
    conn, _ = sock.accept()
    conn.sendall(b"%d" % os.getpid())
    conn.close()
"""


def test_socket_fd_in_a_watchers_env_reaches_the_process(circusd, tmp_path):
    script = tmp_path / "reporter.py"
    script.write_text(FD_REPORTER)
    report = tmp_path / "report.json"
    port = free_port()
    daemon = circusd("""
        [socket:web]
        host = 127.0.0.1
        port = %d

        [watcher:reporter]
        cmd = %s %s %s
        use_sockets = true

        [env:reporter]
        WEB_FD = $(circus.sockets.web)
        UPPER_FD = $(CIRCUS.SOCKETS.WEB)
    """ % (port, PY, script, report))
    [sock] = daemon.call("listsockets")["sockets"]
    info = json.loads(wait_for(lambda: report.exists() and report.read_text(),
                               message="the reporter's report"))
    [pid] = daemon.call("list", name="reporter")["pids"]
    assert info["pid"] == pid
    # the fd number circusd holds the socket at, in both spellings
    assert info["env"] == info["upper"] == str(sock["fd"])
    # and that fd, in the child, is the listening socket itself
    assert info["name"] == ["127.0.0.1", port]
    assert info["type"] == socket.SOCK_STREAM and info["listening"] == 1
    assert open_fds(pid)[sock["fd"]] == os.readlink(
        "/proc/%d/fd/%d" % (daemon.proc.pid, sock["fd"]))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.settimeout(5)
        assert int(conn.recv(32)) == pid
