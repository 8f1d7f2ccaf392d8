"""The sd_notify receiving end: one datagram socket for all children.

A child finds its address in NOTIFY_SOCKET and sends 'READY=1'. The kernel
attaches the sender's credentials (SO_PASSCRED), so the pid is known without
trusting the message.
"""
import logging
import os
import socket
import struct

logger = logging.getLogger("circus")

_CREDS = struct.Struct("3i")  # struct ucred: pid, uid, gid


class NotifyListener:
    def __init__(self, loop, callback):
        self.loop = loop
        self.callback = callback
        # abstract namespace: nothing on disk to clean up or to protect
        self.name = "circus-notify-%d-%d" % (os.getpid(), id(self))
        self.address = "@" + self.name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind("\0" + self.name)
        self.sock.setblocking(False)
        loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self):
        for _ in range(64):  # bounded per wake-up
            try:
                data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(_CREDS.size))
            except BlockingIOError:
                return
            pid = None
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = _CREDS.unpack(payload[:_CREDS.size])[0]
            if pid is None:
                continue
            message = {}
            for line in data.decode("utf-8", "replace").splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    message[key.strip()] = value.strip()
            try:
                self.callback(pid, message)
            except Exception:
                logger.exception("notify message from pid %d failed", pid)

    def close(self):
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
