"""A real Prometheus server for tests: loopback only, its own storage in a
temporary directory, scraping the given targets every second."""
import json
import signal
import subprocess
import urllib.parse
import urllib.request

from support import free_port, tools, wait_for


class Prometheus:
    def __init__(self, tmp_path, targets, interval="1s"):
        self.dir = tmp_path / "prometheus"
        self.dir.mkdir()
        self.port = free_port()
        self.config = self.dir / "prometheus.yml"
        self.config.write_text(
            "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n"
            "scrape_configs:\n  - job_name: circus\n    static_configs:\n"
            "      - targets: [%s]\n" % (interval, interval, ", ".join(
                "'%s'" % t for t in targets)))
        self.log_path = self.dir / "log"
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [tools.path("prometheus"), "--config.file", str(self.config),
             "--storage.tsdb.path", str(self.dir / "data"),
             "--web.listen-address", "127.0.0.1:%d" % self.port],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=str(self.dir))
        wait_for(lambda: self._ready() or self.proc.poll() is not None, timeout=60,
                 interval=0.2, message="prometheus ready")
        assert self.proc.poll() is None, self.log_path.read_text()
        return self

    def _ready(self):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % self.port,
                                        timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def query(self, expr):
        """The instant vector of expr: [(labels, float value)]."""
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (
            self.port, urllib.parse.urlencode({"query": expr}))
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]

    def value(self, expr):
        """The one value of expr, or None when it has no sample (yet)."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return result[0][1] if result else None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
