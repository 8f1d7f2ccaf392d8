"""The web stacks under test, each started on a free loopback port.

A stack is described by a Stack (what to run) and started as a Server (a
running instance: its port, its master's pid, how to stop it). Every stack
serves the WSGI application of benchmarks/apps.py with the same number of
worker processes.
"""
import os
import signal
import tempfile
import time

from suite import util
from suite.util import BENCH_DIR, LOOPBACK, PYTHON

PROJECT_BIN = os.path.dirname(PYTHON)


class Stack:
    """kind: circus | gunicorn | nginx; options depend on the kind."""

    def __init__(self, key, label, kind, **options):
        self.key = key
        self.label = label
        self.kind = kind
        self.options = options

    @property
    def is_circus(self):
        return self.kind == "circus"

    def __repr__(self):
        return "<Stack %s>" % self.key


def circus_stacks():
    return [
        Stack("circus-waitress", "circus + built-in worker (waitress)", "circus",
              worker="builtin", backend="waitress"),
        Stack("circus-meinheld", "circus + built-in worker (meinheld)", "circus",
              worker="builtin", backend="meinheld"),
        Stack("circus-chaussette", "circus + chaussette (meinheld)", "circus",
              worker="chaussette", backend="meinheld"),
    ]


def gunicorn_stacks():
    return [
        Stack("gunicorn-sync", "gunicorn sync", "gunicorn", worker_class="sync"),
        Stack("gunicorn-gthread", "gunicorn gthread (4 threads)", "gunicorn",
              worker_class="gthread", threads=4),
        Stack("gunicorn-meinheld", "gunicorn + meinheld worker", "gunicorn",
              worker_class="meinheld.gmeinheld.MeinheldWorker"),
    ]


def nginx_stack():
    return Stack("nginx", "nginx, fixed body (ceiling)", "nginx")


def app_spec(app, style):
    """apps:hello (module:callable) or apps.hello (chaussette's dotted form)."""
    return "apps%s%s" % (":" if style == "colon" else ".", app)


class Server:
    def __init__(self, stack, app, workers, workdir, gunicorn_bin=None, extra=None):
        self.stack = stack
        self.app = app
        self.workers = workers
        self.extra = dict(extra or {})
        self.port = util.free_port()
        self.dir = tempfile.mkdtemp(prefix="%s-%s-%d-" % (stack.key, app, workers),
                                    dir=os.path.abspath(workdir))
        self.gunicorn_bin = gunicorn_bin
        self.endpoint = None
        self.service = self._service()

    # --- building the command ------------------------------------------
    def _env(self):
        env = dict(os.environ)
        env["PYTHONPATH"] = BENCH_DIR
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def _service(self):
        build = getattr(self, "_%s" % self.stack.kind)
        argv, stop_signal = build()
        return util.Service("%s[%s,%d]" % (self.stack.key, self.app, self.workers), argv,
                            cwd=self.dir, env=self._env(),
                            log_path=os.path.join(self.dir, "server.log"),
                            stop_signal=stop_signal)

    def _circus(self):
        opts = self.stack.options
        self.endpoint = "tcp://%s:%d" % (LOOPBACK, util.free_port())
        pubsub = "tcp://%s:%d" % (LOOPBACK, util.free_port())
        if opts["worker"] == "builtin":
            cmd = ("%s -m circus.worker --fd $(circus.sockets.web) --backend %s "
                   "--graceful-timeout 10 %s" % (PYTHON, opts["backend"],
                                                 app_spec(self.app, "colon")))
            readiness = "ready = notify\nready_timeout = 30\n"
            stop = ""
        else:
            cmd = ("%s --fd $(circus.sockets.web) --backend %s %s" % (
                os.path.join(PROJECT_BIN, "chaussette"), opts["backend"],
                app_spec(self.app, "dot")))
            # chaussette cannot tell when it is ready; meinheld dies on SIGTERM
            readiness = "ready_delay = 0.5\n"
            stop = "stop_signal = INT\n"
        extra = "".join("%s = %s\n" % item for item in self.extra.items())
        config = ("[circus]\nendpoint = %s\npubsub_endpoint = %s\n\n"
                  "[watcher:web]\ncmd = %s\nuse_sockets = True\nnumprocesses = %d\n"
                  "copy_env = True\nworking_dir = %s\ngraceful_timeout = 10\n%s%s%s\n"
                  "[socket:web]\nhost = %s\nport = %d\n" % (
                      self.endpoint, pubsub, cmd, self.workers, BENCH_DIR, readiness, stop,
                      extra, LOOPBACK, self.port))
        path = os.path.join(self.dir, "circus.ini")
        with open(path, "w") as handle:
            handle.write(config)
        return [os.path.join(PROJECT_BIN, "circusd"), path], signal.SIGTERM

    def _gunicorn(self):
        opts = self.stack.options
        argv = [os.path.join(self.gunicorn_bin, "gunicorn"), "-w", str(self.workers),
                "-k", opts["worker_class"], "-b", "%s:%d" % (LOOPBACK, self.port),
                "--chdir", BENCH_DIR, "--log-level", "warning", "--graceful-timeout", "10"]
        if opts.get("threads"):
            argv += ["--threads", str(opts["threads"])]
        for key, value in self.extra.items():
            argv += ["--%s" % key, str(value)]
        argv.append(app_spec(self.app, "colon"))
        return argv, signal.SIGTERM

    def _nginx(self):
        import apps
        body = apps.HELLO if self.app == "hello" else apps.work_body_for_static()
        with open(os.path.join(self.dir, "body.txt"), "wb") as handle:
            handle.write(body)
        user = "user root;\n" if os.geteuid() == 0 else ""
        config = (
            "%sworker_processes %d;\ndaemon off;\npid %s/nginx.pid;\n"
            "error_log %s/error.log warn;\n"
            "events { worker_connections 4096; }\n"
            "http {\n  access_log off;\n  default_type text/plain;\n"
            "  client_body_temp_path %s;\n  proxy_temp_path %s;\n"
            "  fastcgi_temp_path %s;\n  uwsgi_temp_path %s;\n  scgi_temp_path %s;\n"
            "  server {\n    listen %s:%d;\n    root %s;\n"
            "    location / { try_files /body.txt =404; }\n  }\n}\n" % (
                (user, self.workers) + (self.dir,) * 7 + (LOOPBACK, self.port, self.dir)))
        path = os.path.join(self.dir, "nginx.conf")
        with open(path, "w") as handle:
            handle.write(config)
        from suite.envs import nginx_path
        argv = [nginx_path(), "-p", self.dir, "-c", path,
                "-e", os.path.join(self.dir, "error.log")]
        return argv, signal.SIGQUIT

    # --- running -------------------------------------------------------
    @property
    def pid(self):
        return self.service.pid

    def worker_pids(self):
        return util.workers(self.pid)

    def start(self, timeout=60):
        self.service.start()
        return self

    def wait_ready(self, timeout=60):
        """Serving, with every worker up."""
        def ready():
            self.service.check()
            return len(self.worker_pids()) >= self.workers and util.http_ok(self.port)
        util.wait_until(ready, timeout, interval=0.05, what="%s to serve" % self.service.name)
        # workers that accept before they are all importing the app: give the
        # last ones a moment, then the warm-up run takes care of the rest
        time.sleep(0.5)
        return self

    def stop(self):
        self.service.stop()
