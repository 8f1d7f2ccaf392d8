"""recipes/nginx as its README runs it: circusd on the recipe's server.ini
and a real nginx from its template, on free ports (for test_recipes and the
console's browser tests)."""
import base64
import contextlib
import hashlib
import os
import re
import shutil
import signal
import string
import subprocess
import tempfile

from support import ROOT, free_port, http_get, tools, wait_for

RECIPES = os.path.join(ROOT, "recipes")
RECIPE = os.path.join(RECIPES, "nginx")


def recipe_config(name, filename, ports, paths=None):
    """The recipe's config text with its ports (httpd_port too) and paths
    replaced; the [circus] endpoints are left to the fixture."""
    text = open(os.path.join(RECIPES, name, filename)).read()
    text = re.sub(r"^(endpoint|pubsub_endpoint|stats_endpoint) = .*\n", "", text, flags=re.M)
    for old, new in ports.items():
        text = re.sub(r"^(httpd_)?port = %d$" % old, r"\g<1>port = %d" % new, text,
                      flags=re.M)
    for old, new in (paths or {}).items():
        text = text.replace(old, new)
    return text


class Recipe:
    password = "s3cret"


@contextlib.contextmanager
def recipe_nginx(circusd, tmp_path):
    """Yields a Recipe: listen_port, web_port, console_port, api_socket,
    daemon, htpasswd (user admin, role admin, {SHA} like htpasswd -s)."""
    recipe = Recipe()
    recipe.web_port, recipe.console_port, recipe.listen_port = (free_port(), free_port(),
                                                                free_port())
    # nginx's workers run as an unprivileged user, which cannot enter
    # pytest's private tmp_path: the socket goes where they can reach it
    run_dir = tempfile.mkdtemp(prefix="circus-nginx-")
    os.chmod(run_dir, 0o755)
    recipe.api_socket = os.path.join(run_dir, "api.sock")
    digest = base64.b64encode(hashlib.sha1(recipe.password.encode()).digest()).decode()
    recipe.htpasswd = os.path.join(run_dir, "htpasswd")
    with open(recipe.htpasswd, "w") as handle:
        handle.write("admin:{SHA}%s:admin\n" % digest)
    nginx = log = None
    try:
        recipe.daemon = circusd(recipe_config(
            "nginx", "server.ini", {8000: recipe.web_port, 8080: recipe.console_port},
            {"/tmp/circus-api.sock": recipe.api_socket,
             "/etc/nginx/circus.htpasswd": recipe.htpasswd}), cwd=RECIPE)
        wait_for(lambda: _answers(recipe.web_port), timeout=20, message="the web workers")
        wait_for(lambda: os.path.exists(recipe.api_socket), message="the unix socket")
        prefix = tmp_path / "nginx"
        (prefix / "logs").mkdir(parents=True)
        template = open(os.path.join(RECIPE, "nginx.conf.template")).read()
        conf = string.Template(template).safe_substitute(
            LISTEN_PORT=recipe.listen_port, RECIPE_DIR=RECIPE, API_SOCKET=recipe.api_socket,
            WEB_PORT=recipe.web_port, CONSOLE_PORT=recipe.console_port)
        (prefix / "nginx.conf").write_text(conf)
        log = open(tmp_path / "nginx.log", "wb")
        nginx = subprocess.Popen([tools.path("nginx"), "-p", str(prefix), "-c",
                                  str(prefix / "nginx.conf"), "-e",
                                  str(prefix / "logs" / "error.log")],
                                 stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: _answers(recipe.listen_port), timeout=20, message="nginx")
        yield recipe
    finally:
        if nginx is not None:
            nginx.send_signal(signal.SIGQUIT)
            try:
                nginx.wait(10)
            except subprocess.TimeoutExpired:
                nginx.kill()
                nginx.wait()
        if log is not None:
            log.close()
        if getattr(recipe, "daemon", None) is not None:
            recipe.daemon.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


def _answers(port):
    try:
        return http_get(port, "/")[0] == 200
    except OSError:
        return False
