"""Loading the application and the hooks named on the command line."""
import os
import sys

from circus.errors import WorkerStartError
from circus.util import resolve_name


def setup_sys_path(python_path=None):
    """Like ``python -m``: ./app.py must be importable as ``app``, whatever
    script started us; then --python-path's directories, first."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    if python_path:
        for entry in reversed(python_path.split(os.pathsep)):
            if entry:
                sys.path.insert(0, os.path.abspath(entry))


def load_callable(path, what):
    """Resolve 'module:callable' or 'module.callable' (attributes may
    follow: 'module:obj.method'); `what` names it in the error."""
    try:
        obj = resolve_name(path)
    except Exception as exc:
        raise WorkerStartError("cannot load %s %r: %s: %s"
                               % (what, path, type(exc).__name__, exc)) from exc
    if not callable(obj):
        raise WorkerStartError("%s %r is not callable" % (what, path))
    return obj
