"""Reach a remote circusd through the system's ssh client.

`circusctl --ssh user@host[:port]` runs

    ssh -N -o ExitOnForwardFailure=yes -L 127.0.0.1:<free port>:<host>:<port> user@host

and talks to tcp://127.0.0.1:<free port>: the endpoint is resolved on the
remote side, so `tcp://127.0.0.1:5555` is the remote host's loopback (the
safe default). An ipc:// endpoint is forwarded as a unix socket path
(OpenSSH 6.7 or later). Authentication is ssh's business: agent, keys
(--ssh-keyfile), known_hosts. No paramiko or pexpect needed.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time

from circus.errors import CallError, TunnelError
from circus.transport.endpoints import ssh_forward_target


def parse_server(server: str) -> tuple[str, int | None]:
    """'user@host:2222' -> ('user@host', 2222); the port is optional."""
    target, port = server, None
    if server.count(":") == 1 and not server.endswith("]"):
        target, _, text = server.rpartition(":")
        try:
            port = int(text)
        except ValueError:
            raise TunnelError("invalid ssh port in %r" % server) from None
    if not target:
        raise TunnelError("invalid ssh server %r" % server)
    return target, port


def forward_spec(endpoint: str, local_port: int) -> str:
    """The -L argument that forwards local_port to endpoint (seen remotely)."""
    try:
        return "127.0.0.1:%d:%s" % (local_port, ssh_forward_target(endpoint))
    except ValueError as exc:
        raise TunnelError(str(exc)) from None


def ssh_command(server: str, endpoint: str, local_port: int, keyfile: str | None = None,
                ssh: str = "ssh") -> list[str]:
    target, port = parse_server(server)
    cmd = [ssh, "-N", "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes",
           "-L", forward_spec(endpoint, local_port)]
    if port is not None:
        cmd += ["-p", str(port)]
    if keyfile:
        cmd += ["-i", os.path.expanduser(keyfile)]
    cmd.append(target)
    return cmd


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SSHTunnel:
    def __init__(self, server: str, endpoint: str, keyfile: str | None = None,
                 timeout: float = 10.0) -> None:
        self.server = server
        self.endpoint = endpoint
        self.keyfile = keyfile
        self.timeout = timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.local_port: int | None = None

    def open(self) -> str:
        """Start ssh; returns the local endpoint once the forward accepts."""
        self.local_port = free_port()
        cmd = ssh_command(self.server, self.endpoint, self.local_port, self.keyfile)
        try:
            process = self.process = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as exc:
            raise TunnelError("cannot run ssh: %s" % exc) from None
        assert process.stderr is not None  # stderr=PIPE
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                error = process.stderr.read().decode(errors="replace").strip()
                raise TunnelError("ssh to %s failed: %s" % (self.server, error or
                                                            "exit status %d"
                                                            % process.returncode))
            try:
                socket.create_connection(("127.0.0.1", self.local_port), 0.2).close()
                return "tcp://127.0.0.1:%d" % self.local_port
            except OSError:
                time.sleep(0.05)
        self.close()
        raise TunnelError("ssh to %s: no tunnel after %.0fs" % (self.server, self.timeout))

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def open_tunnel(server: str, endpoint: str, keyfile: str | None = None,
                timeout: float = 10.0) -> tuple[SSHTunnel, str]:
    """Start a tunnel to endpoint through server: (tunnel, local endpoint).
    A tunnel that cannot be set up raises CallError, as the clients report
    every other failure to reach circusd."""
    tunnel = SSHTunnel(server, endpoint, keyfile=keyfile, timeout=timeout)
    try:
        return tunnel, tunnel.open()
    except TunnelError as exc:
        raise CallError(str(exc)) from None
