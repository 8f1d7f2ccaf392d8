"""The console's settings: one mapping of strings in, one checked Settings out.

circushttpd builds the mapping from its command line; the importable WSGI
application (circus.web.app:application) from CIRCUSHTTPD_* environment
variables, which is also how circusd hands its [circus] httpd_* options to
the console it runs. Both go through Settings.from_mapping, so they accept
and refuse exactly the same things.
"""
import fnmatch
import ipaddress
import os
import secrets

from circus.util import to_bool
from circus.web.users import ROLES

ENV_PREFIX = "CIRCUSHTTPD_"
DEFAULT_MAX_STREAMS = 24
DEFAULT_THREADS = 32
# without a configured allow-list, an admin may add endpoints on this
# machine only: the form must not make the console a port scanner
DEFAULT_ALLOWED_ENDPOINTS = ("tcp://127.0.0.1:*", "tcp://localhost:*", "tcp://[::1]:*",
                             "ipc://*")
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")

# key -> (environment variable, kind); kind says how the text converts
FIELDS = {
    "endpoints": ("ENDPOINT", "list"),
    "pubsub": ("PUBSUB", "str"),
    "stats_endpoint": ("STATS_ENDPOINT", "str"),
    "url_prefix": ("URL_PREFIX", "str"),
    "auth_file": ("AUTH_FILE", "str"),
    "users": ("USERS", "lines"),
    "secret": ("SECRET", "str"),
    "secret_file": ("SECRET_FILE", "str"),
    "insecure": ("INSECURE", "bool"),
    "read_only": ("READ_ONLY", "bool"),
    "logs_role": ("LOGS_ROLE", "str"),
    "trust_forwarded": ("TRUST_FORWARDED", "list"),
    "allowed_endpoints": ("ALLOW_ENDPOINTS", "list"),
    "allowed_hosts": ("ALLOWED_HOSTS", "list"),
    "max_streams": ("MAX_STREAMS", "int"),
    "curve_key": ("CURVE_KEY", "str"),
    "server_key": ("SERVER_KEY", "str"),
    "session_hours": ("SESSION_HOURS", "float"),
    "timeout": ("TIMEOUT", "float"),
}


class SettingsError(ValueError):
    """A setting that cannot work; the message says which and why."""


class Settings:
    def __init__(self):
        self.endpoints = []
        self.pubsub = None
        self.stats_endpoint = None
        self.url_prefix = ""
        self.auth_file = None
        self.users = []  # htpasswd lines given inline (the ini's httpd_users)
        self.secret = None
        self.secret_file = None
        self.insecure = False
        self.read_only = False
        # the least role that sees what the processes write ("none": nobody)
        self.logs_role = "viewer"
        self.trust_forwarded = []  # proxy addresses whose X-Forwarded-* are believed
        self.allowed_endpoints = list(DEFAULT_ALLOWED_ENDPOINTS)
        self.allowed_hosts = []
        self.max_streams = DEFAULT_MAX_STREAMS
        self.curve_key = None
        self.server_key = None
        self.session_hours = 12.0
        self.timeout = 10.0

    @classmethod
    def from_mapping(cls, values):
        """values: key -> text (or already converted value); unknown keys refused."""
        settings = cls()
        for key, value in values.items():
            if key not in FIELDS:
                raise SettingsError("unknown setting %r" % key)
            if value is None:
                continue
            try:
                setattr(settings, key, _convert(FIELDS[key][1], value))
            except ValueError as exc:
                raise SettingsError("%s: %s" % (key, exc)) from None
        settings.check()
        return settings

    @classmethod
    def from_environ(cls, environ=None):
        environ = os.environ if environ is None else environ
        values = {}
        for key, (name, _) in FIELDS.items():
            if ENV_PREFIX + name in environ:
                values[key] = environ[ENV_PREFIX + name]
        return cls.from_mapping(values)

    def check(self):
        prefix = (self.url_prefix or "").strip()
        if prefix in ("", "/"):
            prefix = ""
        elif not prefix.startswith("/") or "//" in prefix or any(c in prefix for c in "?#%"):
            raise SettingsError("url_prefix must be a path such as /console, not %r" % prefix)
        self.url_prefix = prefix.rstrip("/")
        self.logs_role = str(self.logs_role).strip().lower()
        if self.logs_role not in ROLES + ("none",):
            raise SettingsError("logs_role must be one of %s or none, not %r"
                                % (", ".join(ROLES), self.logs_role))
        if self.max_streams < 1:
            raise SettingsError("max_streams must be at least 1")
        if bool(self.curve_key) != bool(self.server_key):
            raise SettingsError("CURVE needs both --curve-key and --server-key")
        for endpoint in self.endpoints:
            check_endpoint_syntax(endpoint)
        if not self.allowed_endpoints:
            self.allowed_endpoints = list(DEFAULT_ALLOWED_ENDPOINTS)

    def signing_secret(self):
        """The key of session cookies: from the settings, a file, or random
        for this start (sessions then end when the console restarts)."""
        if self.secret:
            return self.secret.encode()
        if self.secret_file:
            with open(self.secret_file, "rb") as handle:
                secret = handle.read().strip()
            if len(secret) < 16:
                raise SettingsError("%s: the secret must be at least 16 bytes" % self.secret_file)
            return secret
        return secrets.token_bytes(32)

    def endpoint_allowed(self, endpoint):
        return any(fnmatch.fnmatchcase(endpoint, pattern) for pattern in self.allowed_endpoints)


def _convert(kind, value):
    if kind == "str":
        return str(value)
    if kind == "bool":
        return to_bool(value)
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "list":
        if isinstance(value, (list, tuple)):
            return [str(v).strip() for v in value if str(v).strip()]
        return [v.strip() for v in str(value).replace("\n", ",").split(",") if v.strip()]
    if kind == "lines":
        if isinstance(value, (list, tuple)):
            return [str(v).strip() for v in value if str(v).strip()]
        return [v.strip() for v in str(value).splitlines() if v.strip()]
    raise AssertionError(kind)


def check_endpoint_syntax(endpoint):
    if not isinstance(endpoint, str) or not endpoint.startswith(("tcp://", "ipc://")):
        raise SettingsError("%r is not a tcp:// or ipc:// endpoint" % (endpoint,))
    if any(c.isspace() for c in endpoint) or len(endpoint) > 300:
        raise SettingsError("%r is not a valid endpoint" % (endpoint,))
    if endpoint.startswith("tcp://"):
        host, _, port = endpoint[len("tcp://"):].rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError("%r: expected tcp://HOST:PORT" % (endpoint,))


def is_loopback(host):
    """True for an address (or name) that only this machine can reach."""
    host = (host or "").strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False
