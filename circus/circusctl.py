"""circusctl: drive a running circusd.

    circusctl [options] COMMAND [ARGS]   run one command
    circusctl [options]                  interactive shell
    circusctl help COMMAND               a command's documentation

Exit status: 0 success, 1 error reply (the reason on stderr), 2 usage
error, 3 no answer (timeout or unreachable endpoint).

Startup time matters (scripts run it in loops): only the command that runs
is imported, and neither asyncio nor psutil is; nor pyzmq, unless CURVE
keys are given or `listen` runs (circus.transport.zmtp speaks to circusd instead).
"""
import json
import os
import sys

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3

HISTORY_FILE = "~/.circusctl_history"


def _default_endpoint():
    from circus.util import DEFAULT_ENDPOINT
    return os.environ.get("CIRCUSCTL_ENDPOINT") or DEFAULT_ENDPOINT


def add_global_options(parser, suppress=False):
    """The connection options; with suppress, they keep what the main parser
    found unless repeated after the command."""
    import argparse

    def default(value):
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--endpoint", default=default(_default_endpoint()),
                        help="circusd's command endpoint (default: $CIRCUSCTL_ENDPOINT or "
                             "tcp://127.0.0.1:5555)")
    parser.add_argument("--timeout", type=float, default=default(5.0),
                        help="seconds to wait for an answer (default: 5)")
    parser.add_argument("--json", action="store_true", default=default(False),
                        help="print the raw JSON reply")
    parser.add_argument("--ssh", default=default(None), metavar="USER@HOST[:PORT]",
                        help="reach the endpoint through an ssh tunnel to this host")
    parser.add_argument("--ssh-keyfile", default=default(None),
                        help="ssh identity file for --ssh")
    parser.add_argument("--curve-key", default=default(os.environ.get("CIRCUSCTL_CURVE_KEY")),
                        help="this client's CURVE secret key file "
                             "(default: $CIRCUSCTL_CURVE_KEY)")
    parser.add_argument("--server-key",
                        default=default(os.environ.get("CIRCUSCTL_SERVER_KEY")),
                        help="circusd's CURVE public key file (default: $CIRCUSCTL_SERVER_KEY)")


def build_parser():
    import argparse
    parser = argparse.ArgumentParser(
        prog="circusctl", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Control a running circusd. Without a command: an interactive shell.",
        epilog="Run 'circusctl help' for the list of commands, 'circusctl help COMMAND' "
               "or 'circusctl COMMAND --help' for one. Exit status: 0 ok, 1 error reply, "
               "2 usage error, 3 no answer. CURVE keys: "
               "'python -m circus.security keygen DIR NAME' (see circus/security.py).")
    add_global_options(parser)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("command", nargs="?", help="the command to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    return parser


def command_parser(command):
    import argparse
    usage = "circusctl %s %s" % (command.name, command.usage)
    for option in command.cli_options():
        usage += " [--%s%s]" % (option[0].replace("_", "-"),
                                "" if option[1] is False else " " + option[0].upper())
    parser = argparse.ArgumentParser(prog="circusctl %s" % command.name, usage=usage,
                                     description=command.help,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for option in command.cli_options():
        dest, default, text = option[:3]
        flag = "--" + dest.replace("_", "-")
        if default is False:
            parser.add_argument(flag, dest=dest, action="store_true", help=text)
        else:
            parser.add_argument(flag, dest=dest, default=default, help=text,
                                choices=option[3] if len(option) > 3 else None)
    add_global_options(parser, suppress=True)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    return parser


def command_list():
    from circus.commands import available, get_command
    lines = ["Commands:"]
    for name in available():
        lines.append("  %-14s %s" % (name, get_command(name).short))
    lines.append("  %-14s %s" % ("help", "Show a command's documentation"))
    return "\n".join(lines)


class Runner:
    """Runs commands against one endpoint; the shell keeps it (and its
    connection) across commands."""

    def __init__(self, options, out=None, err=None):
        self.options = options
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._client = None

    def client(self, options=None):
        options = options or self.options
        if options is not self.options:
            return self._new_client(options)
        if self._client is None:
            self._client = self._new_client(options)
        return self._client

    def _new_client(self, options):
        from circus.client import CircusClient
        return CircusClient(endpoint=options.endpoint, timeout=options.timeout,
                            ssh_server=options.ssh, ssh_keyfile=options.ssh_keyfile,
                            curve_key=options.curve_key, server_key=options.server_key)

    def close(self):
        if self._client is not None:
            self._client.stop()
            self._client = None

    def print(self, text):
        print(text, file=self.out)
        self.out.flush()

    def fail(self, text, status):
        print("circusctl: %s" % text, file=self.err)
        self.err.flush()
        return status

    def run(self, name, args):
        """Run one command line; returns the exit status."""
        from circus.commands import get_command
        from circus.commands.base import ArgumentError, CommandError
        if name == "help":
            return self.help(args)
        try:
            command = get_command(name)
        except CommandError:
            return self.fail("unknown command %r (try 'circusctl help')" % name, EXIT_USAGE)
        parser = command_parser(command)
        try:
            parsed = parser.parse_intermixed_args(args)
        except SystemExit as exc:  # --help, or a usage error already printed
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        options = self.options
        overrides = {k: v for k, v in vars(parsed).items()
                     if k in ("endpoint", "timeout", "json", "ssh", "ssh_keyfile",
                              "curve_key", "server_key")}
        if overrides:
            import argparse
            options = argparse.Namespace(**dict(vars(self.options), **overrides))
        opts = {k: v for k, v in vars(parsed).items() if k != "args" and k not in overrides}
        if getattr(command, "client_side", False):
            return self.listen(command, parsed.args, opts, options)
        try:
            msg = command.build_message(parsed.args, opts)
        except ArgumentError as exc:
            return self.fail("%s\nusage: %s" % (exc, parser.usage), EXIT_USAGE)
        if opts.get("follow") and getattr(command, "follows", False):
            return self.follow(command, msg, options)
        reply = self.call(msg, options)
        if isinstance(reply, int):
            return reply
        if options.json:
            self.print(json.dumps(reply, indent=2, sort_keys=True))
            return EXIT_ERROR if reply.get("status") == "error" else EXIT_OK
        if reply.get("status") == "error":
            print(command.console_error(reply), file=self.err)
            return EXIT_ERROR
        text = command.console_msg(reply)
        if text:
            self.print(text)
        return EXIT_OK

    def call(self, msg, options):
        """The reply, or the exit status when there is none."""
        from circus.client import CallError, CallTimeout
        client = None
        try:
            client = self.client(options)
            return client.call(msg)
        except CallTimeout:
            return self.fail("no answer from %s within %ss (is circusd running?)"
                             % (options.endpoint, options.timeout), EXIT_TIMEOUT)
        except CallError as exc:
            return self.fail(str(exc), EXIT_TIMEOUT)
        finally:
            if client is not None and client is not self._client:
                client.stop()

    def follow(self, command, msg, options):
        """Ask again and again, each time from the last reply (tail -f),
        until interrupted or an error."""
        import time
        try:
            while True:
                reply = self.call(msg, options)
                if isinstance(reply, int):
                    return reply
                if reply.get("status") == "error":
                    print(command.console_error(reply), file=self.err)
                    return EXIT_ERROR
                text = json.dumps(reply, sort_keys=True) if options.json \
                    else command.console_msg(reply)
                if text:
                    self.print(text)
                msg = command.follow_message(msg, reply)
                time.sleep(command.follow_interval)
        except KeyboardInterrupt:
            return EXIT_OK

    def help(self, args):
        from circus.commands import get_command
        from circus.commands.base import CommandError
        if not args:
            self.print(command_list())
            return EXIT_OK
        try:
            command = get_command(args[0])
        except CommandError:
            return self.fail("unknown command %r" % args[0], EXIT_USAGE)
        self.print(command_parser(command).format_help().rstrip("\n"))
        return EXIT_OK

    def listen(self, command, args, opts, options):
        from circus.client import CallError
        from circus.consumer import CircusConsumer
        args = list(args)
        if args and "://" in args[0]:
            endpoint = args.pop(0)
        else:
            reply = self.call(command.make_message(), options)
            if isinstance(reply, int):
                return self.fail("cannot ask circusd for its pubsub endpoint; give it: "
                                 "circusctl listen tcp://HOST:PORT", reply)
            endpoint = reply.get("pubsub_endpoint")
            if not endpoint:
                return self.fail("circusd publishes no events", EXIT_ERROR)
            endpoint = reachable_pubsub(options.endpoint, endpoint, bool(options.ssh))
        count = opts.get("count")
        try:
            count = int(count) if count is not None else None
        except ValueError:
            return self.fail("--count must be an integer", EXIT_USAGE)
        seen = 0
        try:
            with CircusConsumer(args or [""], endpoint=endpoint, timeout=0.5,
                                ssh_server=options.ssh, ssh_keyfile=options.ssh_keyfile,
                                curve_key=options.curve_key,
                                server_key=options.server_key) as consumer:
                for topic, message in consumer:
                    if options.json:
                        self.print(json.dumps({"topic": topic, "message": message}))
                    else:
                        self.print("%s: %s" % (topic, json.dumps(message, sort_keys=True)))
                    seen += 1
                    if count is not None and seen >= count:
                        break
        except KeyboardInterrupt:
            pass
        except CallError as exc:
            return self.fail(str(exc), EXIT_TIMEOUT)
        return EXIT_OK


def reachable_pubsub(command_endpoint, pubsub_endpoint, tunneled):
    """circusd reports its pubsub endpoint as it bound it; a wildcard or
    loopback host means "the host circusd runs on", which is the command
    endpoint's host for a remote circusd (not through ssh, where the
    endpoint is resolved on the remote side anyway)."""
    if tunneled or not pubsub_endpoint.startswith("tcp://") \
            or not command_endpoint.startswith("tcp://"):
        return pubsub_endpoint
    host, _, port = pubsub_endpoint[len("tcp://"):].rpartition(":")
    remote = command_endpoint[len("tcp://"):].rpartition(":")[0]
    if host in ("*", "0.0.0.0", "127.0.0.1", "localhost", "[::]", "[::1]"):
        if host == "*" or remote not in ("127.0.0.1", "localhost"):
            return "tcp://%s:%s" % (remote, port)
    return pubsub_endpoint


class Shell:
    """The interactive shell: one command per line, history in
    ~/.circusctl_history, completion of command and watcher names."""

    def __init__(self, runner):
        import cmd
        self.runner = runner
        self._watchers = (0.0, [])
        shell = self

        class _Cmd(cmd.Cmd):
            prompt = "(circusctl) "
            intro = ("circusctl shell, talking to %s. 'help' lists the commands, "
                     "'exit' or Ctrl-D leaves." % runner.options.endpoint)

            def onecmd(self, line):
                return shell.onecmd(line)

            def completenames(self, text, *ignored):
                return [n for n in shell.names() if n.startswith(text)]

            def completedefault(self, text, line, begidx, endidx):
                return [n for n in shell.watchers() if n.startswith(text)]

            def emptyline(self):
                return False

        self.cmd = _Cmd()

    def names(self):
        from circus.commands import NAMES
        return list(NAMES) + ["help", "exit"]

    def watchers(self):
        import time
        stamp, names = self._watchers
        if time.monotonic() - stamp > 2.0:
            try:
                reply = self.runner.client().call({"command": "list"})
                names = reply.get("watchers", [])
            except Exception:
                names = []
            self._watchers = (time.monotonic(), names)
        return names

    def onecmd(self, line):
        import shlex
        line = line.strip()
        if line == "EOF":
            print()
            return True
        if not line:
            return False
        try:
            words = shlex.split(line)
        except ValueError as exc:
            self.runner.fail(str(exc), EXIT_USAGE)
            return False
        name, args = words[0], words[1:]
        if name in ("exit", "bye"):
            return True
        if name == "?":
            name = "help"
        try:
            self.runner.run(name, args)
        except KeyboardInterrupt:
            print()
        return False

    def loop(self):
        history = os.path.expanduser(HISTORY_FILE)
        try:
            import readline
        except ImportError:
            readline = None
        if readline is not None:
            try:
                readline.read_history_file(history)
            except OSError:
                pass
            readline.set_history_length(1000)
            # watcher names may hold dashes and dots
            readline.set_completer_delims(" \t\n")
        try:
            while True:
                try:
                    self.cmd.cmdloop()
                    break
                except KeyboardInterrupt:
                    print("^C")
                    self.cmd.intro = None
        finally:
            if readline is not None:
                try:
                    readline.write_history_file(history)
                except OSError:
                    pass
        return EXIT_OK


def main(argv=None):
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.version:
        from circus import __version__
        print(__version__)
        return EXIT_OK
    runner = Runner(args)
    try:
        if args.command is None:
            return Shell(runner).loop()
        return runner.run(args.command, args.args)
    finally:
        runner.close()


if __name__ == "__main__":
    sys.exit(main())
