"""The recipes under recipes/, run as their READMEs say: a real circusd on
the recipe's own server.ini (ports moved to free ones), real HTTP, and a
real nginx where the recipe has one."""
import inspect
import json
import os
import re
import shlex
import signal
import subprocess

import pytest

from support import BIN, ROOT, free_port, http_get, pid_alive, tools, wait_for
from support.nginx import recipe_config, recipe_nginx

RECIPES = os.path.join(ROOT, "recipes")


def wait_http(port, path, expect_status=200, timeout=20):
    def ok():
        try:
            status, body = http_get(port, path)
        except OSError:
            return None
        return (status, body) if status == expect_status else None
    return wait_for(ok, timeout=timeout, message="HTTP %d on %s" % (expect_status, path))


def serving_pids(port, path, count, parse):
    """Ask until count distinct workers have answered."""
    pids = set()

    def enough():
        pids.add(parse(http_get(port, path)[1]))
        return len(pids) >= count
    wait_for(enough, timeout=20, interval=0, message="%d workers answering" % count)
    return pids


@pytest.mark.slow
@pytest.mark.parametrize("config", [
    pytest.param("server.ini", marks=pytest.mark.needs("chaussette", "meinheld")),
    "server-builtin.ini"])
def test_pyramid_hello_world(circusd, config):
    pytest.importorskip("pyramid")
    port = free_port()
    daemon = circusd(recipe_config("pyramid", config, {8080: port}),
                     cwd=os.path.join(RECIPES, "pyramid"))
    status, body = wait_http(port, "/hello/tarek")
    assert body == b"Hello tarek!"
    assert http_get(port, "/nothing-here")[0] == 404
    assert len(daemon.children()) == 3


@pytest.mark.slow
@pytest.mark.parametrize("config", [
    "server.ini",
    pytest.param("server-chaussette.ini", marks=pytest.mark.needs("chaussette", "meinheld"))])
def test_django_project(circusd, config):
    pytest.importorskip("django")
    port = free_port()
    daemon = circusd(recipe_config("django", config, {8000: port}),
                     cwd=os.path.join(RECIPES, "django"))
    status, body = wait_http(port, "/hello/circus/")
    answer = json.loads(body)
    assert answer["hello"] == "circus"
    pids = serving_pids(port, "/hello/x/", 2, lambda b: json.loads(b)["pid"])
    assert pids == {c.pid for c in daemon.children()}
    assert b"Hello from Django" in http_get(port, "/")[1]


@pytest.mark.slow
@pytest.mark.needs("nginx", "meinheld")
def test_nginx_in_front_of_tcp_and_unix_sockets_and_the_console(circusd, tmp_path):
    with recipe_nginx(circusd, tmp_path) as recipe:
        listen_port = recipe.listen_port
        status, body = wait_http(listen_port, "/")
        web = json.loads(body)
        assert web["upstream"] == "tcp" and web["forwarded_for"] == "127.0.0.1"
        api = json.loads(wait_http(listen_port, "/api/items")[1])
        assert api["upstream"] == "unix" and api["path"] == "/api/items"
        status, css = http_get(listen_port, "/static/style.css")
        assert status == 200 and b"served by nginx itself" in css

        # the real console, under its prefix, with its own login
        from support.web import Browserish
        console = Browserish(listen_port, "/console")
        wait_for(lambda: console.get("/").status == 303, timeout=20, message="the console")
        assert console.get("/").header("Location") == "/console/login"
        assert console.login("admin", "wrong").status == 401
        response = console.login("admin", recipe.password)
        assert response.status == 303 and response.header("Location") == "/console/"
        overview = console.get("/").header("Location")[len("/console"):]

        def overview_with_watchers():
            # the console lists circusd's watchers once it has connected
            page = console.get(overview)
            return page if page.status == 200 and "web" in page.text else None
        page = wait_for(overview_with_watchers, timeout=20, message="the overview with web")
        assert 'data-stream="/console/e/' in page.text and "admin" in page.text
        # its event stream crosses nginx unbuffered: the snapshot arrives at once
        import http.client
        stream = re.search(r'data-stream="([^"]+)"', page.text).group(1).replace("&amp;", "&")
        conn = http.client.HTTPConnection("127.0.0.1", listen_port, timeout=5)
        conn.request("GET", stream, headers={"Cookie": "; ".join(
            "%s=%s" % kv for kv in console.cookies.items())})
        answer = conn.getresponse()
        assert answer.status == 200
        assert answer.readline() == b"retry: 2000\n"
        assert answer.readline() == b"\n" and answer.readline() == b"event: snapshot\n"
        answer.close()
        conn.close()
        # the console takes the client's address from nginx (the trusted
        # proxy): the last hop of X-Forwarded-For, nginx's own view of the
        # client, not what the client wrote there itself
        spoofing = Browserish(listen_port, "/console")
        spoofing.get("/login", headers={"X-Forwarded-For": "203.0.113.9"})
        token = re.search(r'name="login_token" value="([^"]+)"',
                          spoofing.get("/login").text).group(1)
        assert spoofing.post("/login", form={"user": "admin", "password": "nope",
                                             "login_token": token},
                             headers={"X-Forwarded-For": "203.0.113.9"}).status == 401
        log = wait_for(lambda: (lambda log: b"failed login for 'admin' from 127.0.0.1" in log
                                and log)(recipe.daemon.read_log()),
                       message="the console's log line in circusd's")
        assert b"203.0.113.9" not in log
        assert b"login: admin (admin) from 127.0.0.1" in log
        workers = {c.pid for c in recipe.daemon.children()}
        assert len(workers) == 5  # 2 web, 2 api, the console


# --- systemd -----------------------------------------------------------------

SYSTEMD_UNIT = os.path.join(RECIPES, "systemd", "circusd.service")


def read_unit(path):
    """{section: {key: [values]}}, as systemd reads a unit file."""
    sections, current = {}, None
    for line in open(path):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _unit_signal(name):
    name = name.upper()
    return getattr(signal, name if name.startswith("SIG") else "SIG" + name)


def _kill_signal(command):
    """The signal of `kill -HUP $MAINPID` (or -s HUP, -SIGHUP...)."""
    argv = shlex.split(command)
    assert os.path.basename(argv[0]) == "kill" and argv[-1] == "$MAINPID", command
    options = argv[1:-1]
    if options[:1] in (["-s"], ["--signal"]):
        options = options[1:]
    assert len(options) == 1, command
    return _unit_signal(options[0].lstrip("-"))


def test_systemd_unit_matches_circusd():
    """What can be checked without systemd: the unit runs circusd in the
    foreground on a config file, and its reload and stop signals are the
    ones circusd reloads and quits on."""
    from circus.circusd import build_parser
    from circus.watcher import Watcher
    service = read_unit(SYSTEMD_UNIT)["Service"]
    assert service["Type"] == ["simple"]
    [exec_start] = service["ExecStart"]
    argv = shlex.split(exec_start)
    assert os.path.isabs(argv[0]) and os.path.basename(argv[0]) == "circusd"
    args = build_parser().parse_args(argv[1:])
    assert args.config and os.path.isabs(args.config) and args.config.endswith(".ini")
    assert not args.daemon  # systemd does the daemonising: Type=simple
    [exec_reload] = service["ExecReload"]
    assert _kill_signal(exec_reload) == signal.SIGHUP
    # systemd's default KillSignal is SIGTERM too
    assert _unit_signal(service.get("KillSignal", ["SIGTERM"])[-1]) == signal.SIGTERM
    # circusd alone gets the signal; its workers get their own stop_signal
    assert service["KillMode"] == ["mixed"]
    timeout = int(service["TimeoutStopSec"][-1])
    default_graceful = inspect.signature(Watcher).parameters["graceful_timeout"].default
    assert timeout > default_graceful


def test_systemd_unit_signals_reload_and_stop_a_real_circusd(circusd):
    """circusd started as ExecStart says, sent ExecReload's signal then
    KillSignal, the way systemctl reload and stop would."""
    service = read_unit(SYSTEMD_UNIT)["Service"]
    reload_signal = _kill_signal(service["ExecReload"][0])
    kill_signal = _unit_signal(service.get("KillSignal", ["SIGTERM"])[-1])
    extra = [a for a in shlex.split(service["ExecStart"][0])[1:] if a.startswith("-")]
    # a daemonising circusd would escape the fixture (and systemd's Type=simple)
    assert "--daemon" not in extra
    daemon = circusd("""
        [watcher:one]
        cmd = sleep 300
    """, extra_args=extra)
    children = daemon.call("list", name="one")["pids"]
    try:
        [one] = children
        with open(daemon.config_path, "a") as handle:
            handle.write("\n[watcher:two]\ncmd = sleep 301\n")
        os.kill(daemon.proc.pid, reload_signal)
        children += wait_for(lambda: daemon.call("list", name="two").get("pids"),
                             message="the reload to start watcher two")
        assert daemon.call("list", name="one")["pids"] == [one]  # unchanged, kept
        os.kill(daemon.proc.pid, kill_signal)
        assert daemon.proc.wait(int(service["TimeoutStopSec"][-1])) == 0
        # KillMode=mixed leaves the children to circusd: it stopped them itself
        assert not [pid for pid in children if pid_alive(pid)]
    finally:
        # a signal that killed circusd outright would leave them to init
        for pid in children:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.needs("systemd-analyze")
def test_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    circusd_bin = os.path.join(BIN, "circusd")
    assert os.access(circusd_bin, os.X_OK)
    text = open(SYSTEMD_UNIT).read()
    [exec_start] = read_unit(SYSTEMD_UNIT)["Service"]["ExecStart"]
    # verify checks that the program exists: point it at this venv's circusd
    text = text.replace(exec_start.split()[0], circusd_bin)
    unit = tmp_path / "circusd.service"
    unit.write_text(text)
    result = subprocess.run([tools.path("systemd-analyze"), "verify", "--man=no", str(unit)],
                            capture_output=True, text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if "circusd.service" in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


KUBERNETES = os.path.join(RECIPES, "kubernetes", "circus.yaml")
CONTAINER = os.path.join(RECIPES, "container")


def test_kubernetes_recipe_fits_the_container_recipe():
    import configparser

    import yaml
    documents = {d["kind"]: d for d in yaml.safe_load_all(open(KUBERNETES))}
    assert set(documents) == {"Deployment", "Service"}
    config = configparser.ConfigParser(interpolation=None)
    config.read(os.path.join(CONTAINER, "circus.ini"))
    metrics_port = int(config["circus"]["prometheus"].rpartition(":")[2])
    web_port = int(config["socket:web"]["port"])
    graceful = max(float(config[s].get("graceful_timeout", 30)) for s in config.sections()
                   if s.startswith("watcher:"))

    deployment = documents["Deployment"]
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"][
        "labels"].items()
    [container] = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": web_port, "metrics": metrics_port}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"),
                        ("startupProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert (get["path"], ports[get["port"]]) == (path, metrics_port), probe
    # circusd-metrics waits 2 s for circusd: the probe must wait longer
    assert container["livenessProbe"]["timeoutSeconds"] > 2
    # the kubelet's SIGKILL comes after the grace period: the preStop pause
    # and the longest graceful_timeout must fit in it, with room to exit
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["spec"]["terminationGracePeriodSeconds"] > float(pre_stop[1]) + graceful + 5
    annotations = pod["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true",
                           "prometheus.io/port": str(metrics_port),
                           "prometheus.io/path": "/metrics"}
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    service = documents["Service"]
    assert service["spec"]["selector"] == pod["metadata"]["labels"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_container_recipe_runs_circusd_as_pid1_on_its_config():
    text = open(os.path.join(CONTAINER, "Dockerfile")).read()
    instructions = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.setdefault(word, []).append(rest)
    # the exec form: circusd itself is PID 1 and gets the SIGTERM
    [cmd] = instructions["CMD"]
    argv = json.loads(cmd)
    assert argv[0] == "circusd" and argv[-1] == "/app/circus.ini"
    assert instructions["STOPSIGNAL"] == ["SIGTERM"]
    assert instructions["WORKDIR"] == ["/app"]
    assert "recipes/container/circus.ini" in instructions["COPY"][-1]
    assert set(instructions["EXPOSE"][0].split()) == {"8080", "9102"}
