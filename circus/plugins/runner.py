"""circus-plugin: run one plugin in this process (how circusd runs plugins,
through `python -m circus.plugins`; by hand for development).

circusd starts it with the plugin's options in the environment (CONFIG_ENV)
and --circusd-pid, so that the plugin stops when that circusd is gone.
"""
import argparse
import base64
import json
import logging
import os
import sys

from circus.logs import LEVELS, configure_logging
from circus.pidfd import call_when_gone

logger = logging.getLogger("circus.plugins")

# the plugin's config mapping travels in the environment, base64'd JSON:
# nothing in it is then taken for a $(circus.X) variable, and it stays out
# of the process list
CONFIG_ENV = "CIRCUS_PLUGIN_CONFIG"
# circusd logs each line at the level it names (circus.system_watchers.ChildLog)
LOG_FORMAT = "[%(levelname)s] %(message)s"


def encode_config(config):
    return base64.urlsafe_b64encode(json.dumps(config).encode()).decode()


def decode_config(text):
    return json.loads(base64.urlsafe_b64decode(text.encode()))


def build_parser():
    parser = argparse.ArgumentParser(prog="circus-plugin",
                                     description="Run a circus plugin.")
    parser.add_argument("--endpoint", default=None,
                        help="circusd's command endpoint (default: tcp://127.0.0.1:5555)")
    parser.add_argument("--pubsub", default=None,
                        help="circusd's pub/sub endpoint (default: tcp://127.0.0.1:5556)")
    parser.add_argument("--check-delay", type=float, default=5.0, help="the check delay")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="an option for the plugin (repeat for several)")
    parser.add_argument("--ssh", default=None, metavar="USER@HOST[:PORT]",
                        help="reach circusd through an ssh tunnel to this host")
    parser.add_argument("--curve-key", default=None, metavar="FILE",
                        help="CURVE: this client's secret key file")
    parser.add_argument("--server-key", default=None, metavar="FILE",
                        help="CURVE: circusd's public key file")
    parser.add_argument("--log-level", default="info", choices=LEVELS, type=str.lower)
    parser.add_argument("--log-output", default="stderr",
                        help="log file, - for stdout, or stderr (default: %(default)s)")
    parser.add_argument("--name", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--circusd-pid", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("plugin", help="the plugin's fully qualified class name")
    return parser


def _stop_when_gone(plugin, circusd_pid):
    def gone():
        logger.info("circusd (pid %d) is gone, stopping", circusd_pid)
        plugin.stop()
    call_when_gone(plugin.loop, circusd_pid, gone)


def main(argv=None):
    from circus.util import DEFAULT_ENDPOINT, DEFAULT_PUBSUB, resolve_name
    args = build_parser().parse_args(argv)
    try:
        # every logger: the plugin's own code logs under names of its choice
        configure_logging(args.log_level, args.log_output, LOG_FORMAT, logger_name=None)
    except OSError as exc:
        print("circus-plugin: cannot open the log output: %s" % exc, file=sys.stderr)
        return 2
    config = {}
    if os.environ.get(CONFIG_ENV):
        try:
            config.update(decode_config(os.environ[CONFIG_ENV]))
        except ValueError as exc:
            logger.error("invalid %s: %s", CONFIG_ENV, exc)
            return 2
    for item in args.config:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            logger.error("--config %r is not KEY=VALUE", item)
            return 2
        config[key.strip()] = value.strip()
    # only when given: a plugin's own __init__ need not know about CURVE
    if args.curve_key:
        config["curve_key"] = args.curve_key
    if args.server_key:
        config["server_key"] = args.server_key
    endpoint = args.endpoint or DEFAULT_ENDPOINT
    pubsub = args.pubsub or DEFAULT_PUBSUB

    logger.info("Loading the plugin...")
    logger.info("Endpoint: %r", endpoint)
    logger.info("Pub/sub: %r", pubsub)
    try:
        factory = resolve_name(args.plugin)
    except (ImportError, ValueError) as exc:
        logger.error("cannot load the plugin %s: %s", args.plugin, exc)
        return 1
    try:
        plugin = factory(endpoint=endpoint, pubsub_endpoint=pubsub,
                         check_delay=args.check_delay, ssh_server=args.ssh, **config)
    except Exception as exc:
        logger.exception("cannot create the plugin %s with %s: %s", args.plugin,
                         sorted(config), exc)
        return 1
    if args.name:
        plugin.watcher_name = "plugin:" + args.name
    if args.circusd_pid:
        _stop_when_gone(plugin, args.circusd_pid)
    logger.info("Starting")
    try:
        plugin.start()
    except KeyboardInterrupt:
        pass
    except Exception:
        logger.exception("the plugin %s failed", args.plugin)
        return 1
    logger.info("Stopped")
    return 0
