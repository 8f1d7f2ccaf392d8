"""Fixtures; the helpers they use live in tests/support."""
import pytest

from support import Circusd

# @pytest.mark.needs(tool, ...), and the session's list of missing tools
pytest_plugins = ["support.tools"]


@pytest.fixture(autouse=True)
def _no_spawner_left():
    """A test that spawns with circus.process in this process starts the
    spawner (circus.spawner): it leaves with the test."""
    yield
    from circus.spawner import spawner
    spawner().close()


@pytest.fixture
def circusd(tmp_path):
    """Factory: circusd(config_text) starts a real circusd; stopped at teardown."""
    started = []

    def factory(config, start=True, **kw):
        daemon = Circusd(tmp_path, config, **kw)
        started.append(daemon)
        if start:
            daemon.start()
        return daemon

    yield factory
    for daemon in started:
        daemon.stop()


@pytest.fixture
def web_console(tmp_path):
    """Factory: web_console(daemon, args=[...]) starts circushttpd; stopped at teardown."""
    from support.web import Console
    started = []

    def factory(daemon=None, start=True, **kw):
        console = Console(tmp_path, daemon, name="httpd%d" % len(started), **kw)
        started.append(console)
        if start:
            console.start()
        return console

    yield factory
    for console in started:
        console.stop()
