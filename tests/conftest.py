"""Fixtures; the helpers they use live in tests/support."""
import pytest

from support import Circusd

# @pytest.mark.needs(tool, ...), and the session's list of missing tools
pytest_plugins = ["support.tools"]


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
