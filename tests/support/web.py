"""The web console in tests: a real circushttpd subprocess, and a small HTTP
client that keeps cookies the way a browser does (enough for the tests)."""
import base64
import http.client
import json
import os
import re
import signal
import subprocess
import urllib.parse

from support import PYTHON, ROOT, free_port, wait_for

# bcrypt at the lowest cost keeps the tests fast; the scheme is the same
USERS = {"alice": ("alice-pw", "admin"), "olga": ("olga-pw", "operator"),
         "victor": ("victor-pw", "viewer")}


def users_file(path, users=USERS):
    from circus.web.users import hash_password
    with open(path, "w") as handle:
        for name, (password, role) in users.items():
            handle.write("%s:%s:%s\n" % (name, hash_password(password, rounds=4), role))
    return str(path)


class Console:
    """circushttpd on a free port, following `daemon` (a support.Circusd)."""

    def __init__(self, tmp_path, daemon=None, args=(), env=None, port=None, name="httpd"):
        self.port = port or free_port()
        self.log_path = tmp_path / ("%s.log" % name)
        argv = [PYTHON, "-m", "circus.web", "--port", str(self.port), "--log-level", "debug"]
        if daemon is not None:
            argv += ["--endpoint", daemon.endpoint]
        self.argv = argv + list(args)
        self.env = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
        self.proc = None

    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=self.env)
        if wait:
            wait_for(lambda: b"listening on" in self.read_log() or self.proc.poll() is not None,
                     timeout=20, message="circushttpd to listen")
            assert self.proc.poll() is None, self.read_log().decode()
        return self

    def read_log(self):
        return self.log_path.read_bytes() if self.log_path.exists() else b""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.log.close()

    def base_url(self, prefix=""):
        return "http://127.0.0.1:%d%s" % (self.port, prefix)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # list of (name, value)
        self.body = body

    def header(self, name):
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


class Browserish:
    """HTTP/1.1 with a cookie jar (name -> value), no redirects followed."""

    def __init__(self, port, prefix="", host="127.0.0.1"):
        self.port = port
        self.prefix = prefix
        self.host = host
        self.cookies = {}

    def request(self, method, path, body=None, headers=None, form=None, json_body=None,
                auth=None, timeout=10):
        headers = dict(headers or {})
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers.setdefault("Content-Type", "application/json")
        if auth is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(
                ("%s:%s" % auth).encode()).decode()
        if self.cookies:
            headers.setdefault("Cookie", "; ".join("%s=%s" % kv for kv in self.cookies.items()))
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, self.prefix + path, body=body, headers=headers)
            raw = conn.getresponse()
            response = Response(raw.status, raw.getheaders(), raw.read())
        finally:
            conn.close()
        for value in response.all("Set-Cookie"):
            name, _, rest = value.partition("=")
            content = rest.split(";")[0]
            if "Max-Age=0" in value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = content
        return response

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def login(self, user, password):
        page = self.get("/login")
        token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)
        return self.post("/login", form={"user": user, "password": password,
                                         "login_token": token})


def csrf_of(page):
    return re.search(r'data-csrf="([^"]+)"', page.text).group(1)
