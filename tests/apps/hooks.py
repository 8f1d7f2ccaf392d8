"""--pre-hook / --post-hook targets: each appends a line to the file named by
HOOK_LOG, so a test can check that and when they ran."""
import os


def _log(line):
    with open(os.environ["HOOK_LOG"], "a") as f:
        f.write(line + "\n")


def pre(args):
    _log("pre backend=%s app=%s" % (args.backend, args.application))


def post(args):
    _log("post backend=%s" % args.backend)
