"""Every option of circus, one typed spec each, and where values came from.

A spec says what an option is called, how its value is converted (and so
checked), what circus uses when it is not given, what it does, and whether
it is only accepted for compatibility with the original Circus. The ini
loader, get_arbiter, Arbiter.add_watcher and the add, set, get, options and
globaloptions commands all read these specs, so a value one accepts the
others accept too, with the same words in the error.
"""
import logging
import signal
import socket
from collections import namedtuple

from circus.errors import ConfigError
from circus.options import converters as c
from circus.options.limits import DEFAULT_MAX_NUMPROCESSES, DEFAULT_MAX_PROCESSES
from circus.util import DEFAULT_ENDPOINT, DEFAULT_PUBSUB

logger = logging.getLogger("circus")

# the sections an option applies to
WATCHER, SOCKET, CIRCUS, PLUGIN = "watcher", "socket", "circus", "plugin"


class Where(namedtuple("Where", "filename section option")):
    """Where a value was written: the file (None when a program or a command
    gave it), the section ('watcher:web') and, for one value, the option."""
    __slots__ = ()

    def __new__(cls, filename, section, option=None):
        return super().__new__(cls, filename, section, option)

    def at(self, option):
        return self._replace(option=option)

    def error(self, reason, option=None):
        return ConfigError(reason, self.filename, self.section, option or self.option)

    def __str__(self):
        return " ".join(p for p in (self.filename, "[%s]" % self.section, self.option) if p)


class Section(dict):
    """The converted options of one section. A plain mapping to its users,
    which also knows where it was written (`where`) and where each option
    was (`where_of`: [circus] is merged from every file that has one)."""

    def __init__(self, where, items=(), origins=None):
        super().__init__(items)
        self.where = where
        self.origins = dict(origins or {})

    def where_of(self, option):
        return self.origins.get(option) or self.where.at(option)

    @property
    def from_file(self):
        return self.where.filename is not None

    def __repr__(self):
        return "Section(%r, %s)" % (str(self.where), dict.__repr__(self))


class Option:
    """One option. `default` is what circus uses when it is not given;
    `compat` says why it is accepted and ignored (None: it does something);
    `required` says what a missing one should have been; `spawn` marks the
    watcher options processes are spawned with (changing one needs new
    processes); `attribute` names the Arbiter attribute of a [circus] option."""
    __slots__ = ("scope", "name", "convert", "default", "doc", "compat", "required",
                 "spawn", "attribute")

    def __init__(self, scope, name, convert, default, doc, compat=None, required=None,
                 spawn=False, attribute=None):
        self.scope, self.name, self.convert, self.default = scope, name, convert, default
        self.doc, self.compat, self.required = doc, compat, required
        self.spawn, self.attribute = spawn, attribute

    def __repr__(self):
        return "<Option [%s] %s>" % (self.scope, self.name)


def missing(spec):
    return "missing option %r (%s)" % (spec.name, spec.required)


class Family:
    """Options named PREFIX + a key of the user's choice (rlimit_nofile,
    hooks.before_start, stdout_stream.filename). `keyword` is the Watcher
    argument taking them as one mapping, `attribute` the Watcher attribute
    holding it; `convert_key` checks the key, `convert` the value (or a
    {key: converter} of keys that need one); `live` is False when a running
    watcher cannot take a new value; `compat` maps keys accepted and ignored
    to why."""

    def __init__(self, scope, prefix, keyword, attribute, doc, convert_key, convert,
                 default=None, spawn=False, live=True, compat=None, lower_keys=True):
        self.scope, self.prefix, self.keyword, self.attribute = scope, prefix, keyword, attribute
        self.doc, self.convert_key, self.convert, self.default = doc, convert_key, convert, default
        self.spawn, self.live, self.compat = spawn, live, dict(compat or {})
        self.lower_keys = lower_keys
        self.name = prefix + "*"

    def matches(self, key):
        return key.strip().lower().startswith(self.prefix)

    def subkey(self, key):
        sub = key.strip()[len(self.prefix):]
        return sub.lower() if self.lower_keys or sub.lower() == "class" else sub

    def convert_item(self, key, value):
        """(normalised key, converted value); ValueError naming the problem."""
        sub = self.convert_key(self.subkey(key))
        convert = self.convert
        if isinstance(convert, dict):
            convert = convert.get(sub, c.anything)
        return self.prefix + sub, convert(value)

    def collect(self, options):
        """{key: value} of this family's options in a flat mapping."""
        return {self.subkey(k): v for k, v in options.items() if self.matches(k)}

    def __repr__(self):
        return "<Family [%s] %s>" % (self.scope, self.name)


class Schema:
    """The options of one kind of section. `extras` keeps any other key as
    written ([plugin:NAME] passes them to the plugin); `dotted_extras` keeps
    other keys with a dot ('myplugin.option' in a watcher, for plugins)."""

    def __init__(self, scope, options, families=(), extras=False, dotted_extras=False):
        self.scope = scope
        self.options = {spec.name: spec for spec in options}
        self.families = tuple(families)
        self.extras, self.dotted_extras = extras, dotted_extras

    def __iter__(self):
        return iter(self.options.values())

    def __contains__(self, name):
        return name in self.options

    def spec(self, key):
        """The Option or Family of key, or None for a free or unknown one."""
        lower = key.strip().lower()
        if lower in self.options:
            return self.options[lower]
        for family in self.families:
            if family.matches(lower):
                return family
        return None

    def family(self, keyword):
        for family in self.families:
            if family.keyword == keyword:
                return family
        return None

    def convert(self, key, value):
        """(normalised key, converted value); ValueError naming the problem."""
        spec = self.spec(key)
        if isinstance(spec, Option):
            if spec.required and not str(value or "").strip():
                # the same words whether it is left out or given blank, in a
                # file or by `set` (cmd "" would fail at the next spawn)
                raise ValueError(missing(spec))
            return spec.name, spec.convert(value)
        if isinstance(spec, Family):
            return spec.convert_item(key, value)
        key = key.strip()
        if self.extras or (self.dotted_extras and "." in key):
            return key, value
        raise ValueError("unknown option")

    def compat(self, keys):
        """{key: why} of the keys accepted only for compatibility."""
        found = {}
        for key in keys:
            spec = self.spec(key)
            if isinstance(spec, Option) and spec.compat:
                found[spec.name] = spec.compat
            elif isinstance(spec, Family) and spec.subkey(key) in spec.compat:
                found[key] = spec.compat[spec.subkey(key)]
        return found

    def default(self, key):
        spec = self.spec(key)
        return spec.default if spec is not None else None


_READERS = "circusd's event loop reads the pipes"

WATCHER_SCHEMA = Schema(WATCHER, [
    Option(WATCHER, "cmd", c.command, None, "the command to run (with its arguments)",
           required="the command to run", spawn=True),
    Option(WATCHER, "args", c.arguments, None, "more arguments: a string or a list",
           spawn=True),
    Option(WATCHER, "shell", c.boolean, False, "run the command through /bin/sh", spawn=True),
    Option(WATCHER, "working_dir", c.existing_directory, None, "the processes' working "
           "directory (it must exist)",
           spawn=True),
    Option(WATCHER, "uid", c.user, None, "user name or id to run as", spawn=True),
    Option(WATCHER, "gid", c.group, None, "group name or id to run as", spawn=True),
    Option(WATCHER, "env", c.environment, None, "environment: K=V, K2=V2", spawn=True),
    Option(WATCHER, "copy_env", c.boolean, False, "children get circusd's environment too",
           spawn=True),
    Option(WATCHER, "copy_path", c.boolean, False, "children get circusd's sys.path as "
           "PYTHONPATH", spawn=True),
    Option(WATCHER, "warmup_delay", c.number(), 0.0, "seconds between two spawns"),
    Option(WATCHER, "numprocesses", c.integer(0), 1, "how many processes to run"),
    Option(WATCHER, "max_numprocesses", c.integer(0), None, "the highest numprocesses "
           "this watcher may be given (default: [circus] max_numprocesses)"),
    Option(WATCHER, "send_hup", c.boolean, False, "reload by sending SIGHUP"),
    Option(WATCHER, "max_retry", c.integer(-1), 5, "failed starts before giving up "
           "(-1: never)"),
    Option(WATCHER, "priority", c.integer(), 0, "higher starts first and stops last"),
    Option(WATCHER, "singleton", c.boolean, False, "at most one process"),
    Option(WATCHER, "use_sockets", c.boolean, False, "children inherit the circus sockets",
           spawn=True),
    Option(WATCHER, "max_age", c.number(), 0, "recycle a process after so many seconds "
           "(0: never)"),
    Option(WATCHER, "max_age_variance", c.number(), 30, "up to so many seconds more, "
           "at random"),
    # 0: SIGKILL right after the stop signal (no grace), never "wait forever"
    Option(WATCHER, "graceful_timeout", c.number(), 30.0, "seconds between stop_signal "
           "and SIGKILL"),
    Option(WATCHER, "executable", c.optional_string, None, "the program run, cmd's first "
           "word then only names it", spawn=True),
    Option(WATCHER, "stop_signal", c.signal_number, signal.SIGTERM, "signal asking a "
           "process to stop"),
    Option(WATCHER, "stop_children", c.boolean, False, "signal the children of a "
           "process too"),
    Option(WATCHER, "autostart", c.boolean, True, "start with circusd"),
    Option(WATCHER, "respawn", c.boolean, True, "replace a process that exits"),
    Option(WATCHER, "die_with_circusd", c.boolean, True, "the processes are killed "
           "when circusd dies, even by kill -9 (false: they outlive a crash of circusd; "
           "circus.guardian)", spawn=True),
    Option(WATCHER, "ready", c.choice("spawn", "notify"), "spawn", "when a process is "
           "ready: once spawned, or on its READY=1"),
    Option(WATCHER, "ready_delay", c.number(), 0.0, "seconds after a spawn before "
           "it counts as ready"),
    Option(WATCHER, "ready_timeout", c.number(), 30.0, "seconds a notify process has "
           "to send READY=1"),
    Option(WATCHER, "stream_backend", c.choice("thread", "gevent", "asyncio"), "thread",
           "how the original Circus read the pipes", compat=_READERS),
], families=[
    Family(WATCHER, "rlimit_", "rlimits", "rlimits", "a resource limit (rlimit_nofile = 500)",
           c.rlimit_name, c.integer(-1), spawn=True),
    Family(WATCHER, "hooks.", "hooks", "hooks", "a hook: dotted name of a callable",
           c.hook_name, c.dotted()),
    Family(WATCHER, "stdout_stream.", "stdout_stream", "stdout_stream_conf",
           "where stdout goes: class and its options", c.anything,
           {"class": c.dotted("circus.stream")}, live=False, lower_keys=False,
           compat={"refresh_time": _READERS, "stream_backend": _READERS}),
    Family(WATCHER, "stderr_stream.", "stderr_stream", "stderr_stream_conf",
           "where stderr goes: class and its options", c.anything,
           {"class": c.dotted("circus.stream")}, live=False, lower_keys=False,
           compat={"refresh_time": _READERS, "stream_backend": _READERS}),
], dotted_extras=True)

SOCKET_SCHEMA = Schema(SOCKET, [
    Option(SOCKET, "host", c.string, "localhost", "the address to bind"),
    Option(SOCKET, "port", c.integer(0, 65535), 8080, "the port (0: one the kernel picks)"),
    Option(SOCKET, "family", c.socket_family, socket.AF_INET, "AF_INET, AF_INET6 or AF_UNIX"),
    Option(SOCKET, "type", c.socket_type, socket.SOCK_STREAM, "SOCK_STREAM, SOCK_DGRAM..."),
    Option(SOCKET, "backlog", c.integer(0), 2048, "the listen() backlog"),
    Option(SOCKET, "path", c.optional_string, None, "a unix socket's path"),
    Option(SOCKET, "umask", c.octal, None, "umask while a unix socket is bound (022)"),
    Option(SOCKET, "replace", c.boolean, False, "remove a unix socket left by another "
           "process"),
    Option(SOCKET, "so_reuseport", c.boolean, False, "set SO_REUSEPORT"),
    Option(SOCKET, "blocking", c.boolean, False, "leave the socket blocking"),
    Option(SOCKET, "interface", c.optional_string, None, "bind to this network interface"),
])

CIRCUS_SCHEMA = Schema(CIRCUS, [
    Option(CIRCUS, "endpoint", c.endpoint, DEFAULT_ENDPOINT, "the command endpoint "
           "(empty: none)", attribute="endpoint"),
    Option(CIRCUS, "pubsub_endpoint", c.endpoint, DEFAULT_PUBSUB, "the event "
           "endpoint (empty: none)", attribute="pubsub_endpoint"),
    Option(CIRCUS, "stats_endpoint", c.endpoint, None, "where circusd-stats "
           "publishes (unset: it does not run)", attribute="stats_endpoint"),
    Option(CIRCUS, "check_delay", c.number(), 1.0, "seconds between the plugins' checks",
           attribute="check_delay"),
    Option(CIRCUS, "include", c.string, None, "more files: globs relative to this one"),
    Option(CIRCUS, "include_dir", c.string, None, "directories whose *.ini are read"),
    Option(CIRCUS, "stream_backend", c.choice("thread", "gevent", "asyncio"), "thread",
           "how the original Circus read the pipes", compat=_READERS,
           attribute="stream_backend"),
    Option(CIRCUS, "warmup_delay", c.number(), 0, "seconds between two watchers' starts",
           attribute="warmup_delay"),
    Option(CIRCUS, "httpd", c.boolean, False, "run the web console (circushttpd)",
           attribute="httpd"),
    Option(CIRCUS, "httpd_host", c.string, "localhost", "the web console's address",
           attribute="httpd_host"),
    Option(CIRCUS, "httpd_port", c.integer(0, 65535), 8080, "the web console's port",
           attribute="httpd_port"),
    # the console's own settings (circus.web.settings); none is an attribute,
    # so globaloptions never hands out users or the secret
    Option(CIRCUS, "httpd_auth_file", c.optional_string, None, "the console's users: "
           "htpasswd file, user:hash[:role] (relative to the config file)"),
    Option(CIRCUS, "httpd_users", c.optional_string, None, "the console's users, one "
           "user:hash[:role] line each"),
    Option(CIRCUS, "httpd_secret", c.optional_string, None, "the key of the console's "
           "session cookies (default: random at each start)"),
    Option(CIRCUS, "httpd_insecure", c.boolean, False, "serve the console without "
           "authentication on a non-loopback address"),
    Option(CIRCUS, "httpd_read_only", c.boolean, False, "nobody changes anything through "
           "the console"),
    Option(CIRCUS, "httpd_url_prefix", c.optional_string, None, "the console's path "
           "prefix behind a proxy, e.g. /console"),
    Option(CIRCUS, "httpd_trust_forwarded", c.optional_string, None, "proxy addresses "
           "whose X-Forwarded-* the console believes"),
    Option(CIRCUS, "httpd_logs_role", c.choice("viewer", "operator", "admin", "none"), None,
           "the least role that sees the processes' output in the console (default: "
           "viewer; none: nobody)"),
    Option(CIRCUS, "debug", c.boolean, False, "children's output to circusd's",
           attribute="debug"),
    Option(CIRCUS, "pidfile", c.optional_string, None, "write circusd's pid there"),
    Option(CIRCUS, "loglevel", c.choice("debug", "info", "warning", "error", "critical"), None,
           "circusd's log level (default: info)"),
    Option(CIRCUS, "logoutput", c.string, None, "circusd's log: a file, - or stdout"),
    Option(CIRCUS, "umask", c.string, None, "the original Circus' umask for circusd",
           compat="circusd keeps the umask it was started with"),
    Option(CIRCUS, "curve_secret_key", c.optional_string, None, "circusd's CURVE key file"),
    Option(CIRCUS, "curve_authorized_keys", c.optional_string, None, "clients' public keys"),
    Option(CIRCUS, "statsd", c.boolean, False, "run circusd-stats on the default endpoint"),
    Option(CIRCUS, "prometheus", c.listen_address, None, "HOST:PORT where circusd-metrics "
           "serves /metrics, /healthz and /readyz (unset: it does not run)",
           attribute="prometheus"),
    Option(CIRCUS, "prometheus_per_process", c.boolean, False, "also CPU and memory per "
           "process (a series per pid)", attribute="prometheus_per_process"),
    Option(CIRCUS, "max_processes", c.integer(0), DEFAULT_MAX_PROCESSES, "the most "
           "processes all the watchers together may be set to run (circus.options.limits)",
           attribute="max_processes"),
    Option(CIRCUS, "max_numprocesses", c.integer(0), DEFAULT_MAX_NUMPROCESSES, "the "
           "highest numprocesses of a watcher without a max_numprocesses of its own",
           attribute="max_numprocesses"),
])

PLUGIN_SCHEMA = Schema(PLUGIN, [
    Option(PLUGIN, "use", c.findable_class, None, "the plugin's dotted class name",
           required="the plugin's dotted class name"),
], extras=True)

SCHEMAS = {WATCHER: WATCHER_SCHEMA, SOCKET: SOCKET_SCHEMA, CIRCUS: CIRCUS_SCHEMA,
           PLUGIN: PLUGIN_SCHEMA}
