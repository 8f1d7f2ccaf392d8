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
    follow: 'module:obj.method'); `what` names it in the error, which is one
    line saying what to do when the reason is a common one."""
    try:
        obj = resolve_name(path)
    except Exception as exc:
        raise WorkerStartError("cannot load %s %r: %s" % (what, path, _why(path, exc))) from exc
    if not callable(obj):
        raise WorkerStartError("%s %r is not callable" % (what, path))
    return obj


def _why(path, exc):
    module = path.partition(":")[0]
    if isinstance(exc, ModuleNotFoundError) and exc.name and (
            module == exc.name or module.startswith(exc.name + ".")):
        # the application's own module is not where Python looks
        return ("no module named %r in %s nor elsewhere on sys.path; run the worker in the "
                "directory that holds it (the watcher's working_dir) or name that directory "
                "with --python-path" % (exc.name, os.getcwd()))
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        # a module the application imports
        return ("%s: No module named %r (imported%s); install it for %s"
                % (type(exc).__name__, exc.name, _where(exc), sys.executable))
    return "%s: %s%s" % (type(exc).__name__, exc, _where(exc))


def _where(exc):
    """' at FILE:LINE', the last frame of exc outside the import machinery."""
    import traceback
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "importlib" not in f.filename and f.filename != __file__
              and not f.filename.endswith(os.path.join("circus", "util.py"))]
    if isinstance(exc, SyntaxError):
        return ""  # its message names the file and line
    return " at %s:%s" % (frames[-1].filename, frames[-1].lineno) if frames else ""
