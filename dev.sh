#!/bin/sh
# One entry point for a new machine:
#   ./dev.sh run    set up .venv and start circusd on the built-in config:
#                   it logs "serving http://127.0.0.1:8080 (socket web)"
#   ./dev.sh test   set up .venv (and the system tools the tests drive), lint, run the tests
#   ./dev.sh lint   the lint and the type check alone
set -eu
cd "$(dirname "$0")"
VENV=${CIRCUS_VENV:-.venv}
PY=${PYTHON:-python3}

setup_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv "$VENV"
    fi
    "$VENV/bin/pip" install -q --upgrade pip
    # meinheld, for the tests and benchmarks (the built-in config does not
    # need it): greenlet 3 first, then meinheld without its greenlet<0.5 pin
    # (see setup.py and README.rst, "Performance").
    "$VENV/bin/pip" install -q "greenlet>=3"
    "$VENV/bin/pip" install -q --no-deps "meinheld==1.0.2"
    "$VENV/bin/pip" install -q -e ".[test]"
}

system_tools() {
    # The tests drive real nginx, wrk, tmux...: tests/support/tools.py knows
    # them and prints the Debian packages of those missing; install them
    # when we can.
    missing=$("$VENV/bin/python" tests/support/tools.py --missing-packages)
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO=sudo; else
        echo "dev.sh: please install: $missing" >&2; return 0; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
}

compat_env() {
    # The original Circus 0.19 in a virtualenv of its own, which
    # tests/test_compat019.py drives circusd with: benchmarks/.work/circus019,
    # built once (the benchmark suite's own), then reused.
    "$VENV/bin/python" -c 'import sys; sys.path.insert(0, "benchmarks")
from suite.envs import circus019_env
circus019_env()'
}

lint() {
    # ruff.toml says what is checked; mypy.ini, which modules are type-checked
    "$VENV/bin/ruff" check .
    "$VENV/bin/mypy"
}

case "${1:-run}" in
    run)
        setup_venv
        shift 2>/dev/null || true
        exec "$VENV/bin/circusd" "$@"
        ;;
    lint)
        setup_venv
        lint
        ;;
    test)
        setup_venv
        system_tools
        compat_env
        lint
        shift
        exec "$VENV/bin/python" -m pytest "$@"
        ;;
    *)
        echo "usage: $0 run [circusd args] | test [pytest args] | lint" >&2
        exit 2
        ;;
esac
