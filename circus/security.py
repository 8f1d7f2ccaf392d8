"""CURVE authentication and encryption of the command and event endpoints.

Off by default, as in the original Circus. To turn it on:

1. Generate a key pair for circusd and one per client::

       python -m circus.security keygen /etc/circus/keys circusd
       python -m circus.security keygen ~/.circus alice

   Each writes NAME.key (public) and NAME.key_secret (secret, mode 0600), in
   the certificate format of zmq.auth.create_certificates.

2. Put the public key files of the allowed clients (alice.key...) in a
   directory, and configure circusd::

       [circus]
       curve_secret_key = /etc/circus/keys/circusd.key_secret
       curve_authorized_keys = /etc/circus/keys/clients

   Keys added to or removed from that directory count from the next
   connection on; no restart needed. Without curve_authorized_keys, any
   client that knows the server's public key may connect (encryption
   without client authentication).

3. Give clients their secret key and the server's public key::

       circusctl --curve-key ~/.circus/alice.key_secret \\
                 --server-key /etc/circus/keys/circusd.key status

   (or CIRCUSCTL_CURVE_KEY and CIRCUSCTL_SERVER_KEY;
   CircusClient(curve_key=..., server_key=...), CircusConsumer likewise).

A client without an authorised key gets no answer at all (its connection
fails its handshake), and circusd logs the refusal. circusd-stats and the
plugins that circusd runs itself use circusd's own key pair, which circusd
always admits: they need no entry in curve_authorized_keys.

The authenticator runs on circusd's asyncio loop (no thread).
"""
import logging
import os
import sys

logger = logging.getLogger("circus")

# a stranger can reconnect in a loop: one refusal warning per attempt would
# let it fill the log
_refusals = None


def _refusal_log():
    global _refusals
    if _refusals is None:
        from circus.logs import Throttle
        _refusals = Throttle(logger)
    return _refusals


def load_keys(path):
    """(public, secret) of a certificate file; secret is None for a public one."""
    from zmq.auth import load_certificate
    path = os.path.expanduser(str(path))
    return load_certificate(path)


def server_keys(path):
    public, secret = load_keys(path)
    if not secret:
        raise ValueError("%s holds no secret key (use the .key_secret file)" % path)
    return public, secret


client_keys = server_keys


def public_key(path):
    return load_keys(path)[0]


class _KeyDirectory:
    """The public keys in a directory, read again when the directory changes."""

    def __init__(self, directory, own_key=None):
        self.directory = os.path.expanduser(directory)
        self.own_key = own_key
        self._stamp = None
        self._keys = set()

    def _refresh(self):
        from zmq.auth import load_certificates
        try:
            stamp = os.stat(self.directory).st_mtime_ns
        except OSError as exc:
            if self._stamp != "missing":
                logger.error("CURVE authorized keys: %s", exc)
            self._stamp, self._keys = "missing", set()
            return
        if stamp != self._stamp:
            try:
                self._keys = set(load_certificates(self.directory))
            except (OSError, ValueError) as exc:
                logger.error("CURVE authorized keys in %s: %s", self.directory, exc)
                self._keys = set()
            self._stamp = stamp

    def callback(self, domain, key):
        # called by the authenticator for every CURVE handshake
        if self.own_key is not None and key == self.own_key:
            return True  # circusd's own processes: circusd-stats, plugins
        self._refresh()
        if key in self._keys:
            return True
        _refusal_log().log("curve key", logging.WARNING,
                           "refused a client: its CURVE key %s is not in %s",
                           key.decode(errors="replace"), self.directory)
        return False


class _AllowAny:
    def callback(self, domain, key):
        return True


def start_authenticator(context, authorized_keys_dir=None, own_key=None):
    """Run a ZAP handler for context on the running asyncio loop; returns it
    (call .stop() to end it). Must start before the sockets are bound.
    own_key (circusd's public key) is always admitted: circusd hands its key
    pair to the processes it runs for itself (circusd-stats, plugins)."""
    from zmq.auth.asyncio import AsyncioAuthenticator
    auth = AsyncioAuthenticator(context, log=logging.getLogger("circus.zap"))
    auth.start()
    keys = _KeyDirectory(authorized_keys_dir, own_key) if authorized_keys_dir else _AllowAny()
    auth.configure_curve_callback(domain="*", credentials_provider=keys)
    return auth


def watch_refusals(sock, label):
    """Log the handshakes that fail on sock before the authenticator sees
    them (a client without CURVE, or with the wrong server key); returns
    the task reading the socket's monitor events."""
    import asyncio

    import zmq
    from zmq.utils.monitor import parse_monitor_message
    # which side notices a mechanism mismatch first is a race: circusd
    # (a protocol error) or the client, which then hangs up (no detail)
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                      | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)

    async def read():
        try:
            while True:
                event = parse_monitor_message(await monitor.recv_multipart())
                if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                    why = _protocol_error(event["value"])
                else:
                    why = "the client hung up during the handshake (%s)" % _errno_name(
                        event["value"])
                _refusal_log().log("handshake " + label, logging.WARNING,
                                   "refused a connection on the %s endpoint: %s (is the "
                                   "client using CURVE with this server's public key?)",
                                   label, why)
        except (asyncio.CancelledError, zmq.ZMQError):
            pass
        finally:
            try:
                sock.disable_monitor()
            except zmq.ZMQError:
                pass
            monitor.close(linger=0)

    return asyncio.get_running_loop().create_task(read())


def _protocol_error(code):
    import zmq
    for name in dir(zmq):
        if name.startswith("PROTOCOL_ERROR_") and getattr(zmq, name) == code:
            return name[len("PROTOCOL_ERROR_"):].lower().replace("_", " ")
    return "protocol error %s" % code


def _errno_name(code):
    import errno
    return errno.errorcode.get(int(code), str(int(code)))


def generate_keys(directory, name):
    """Write NAME.key and NAME.key_secret (0600) in directory."""
    from zmq.auth import create_certificates
    directory = os.path.expanduser(directory)
    os.makedirs(directory, exist_ok=True)
    old = os.umask(0o077)  # the secret file never exists with wider rights
    try:
        public, secret = create_certificates(directory, name)
    finally:
        os.umask(old)
    os.chmod(secret, 0o600)
    os.chmod(public, 0o644)
    return public, secret


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(
        prog="python -m circus.security",
        description="CURVE keys for circusd and its clients (see circus/security.py).")
    sub = parser.add_subparsers(dest="action", required=True)
    keygen = sub.add_parser("keygen", help="generate a key pair: DIR/NAME.key and "
                                           "DIR/NAME.key_secret")
    keygen.add_argument("directory")
    keygen.add_argument("name")
    args = parser.parse_args(argv)
    public, secret = generate_keys(args.directory, args.name)
    print("public key: %s\nsecret key: %s" % (public, secret))
    return 0


if __name__ == "__main__":
    sys.exit(main())
