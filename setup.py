import re

from setuptools import Extension, find_packages, setup

# the one version number is circus.__version__; read, not imported (the
# package's dependencies may not be installed yet)
with open("circus/__init__.py") as handle:
    VERSION = re.search(r'^__version__ = "([^"]+)"', handle.read(), re.M).group(1)

# meinheld, the fastest worker backend, cannot be listed here: its release
# pins greenlet<0.5, which does not build on Python 3.11, so pip would fail
# resolving it. Nothing needs it by default (the built-in config runs
# circus-worker with waitress); README.rst ("Performance") gives the commands
# that install it, and dev.sh runs them for the tests.
install_requires = [
    "pyzmq>=25",
    "psutil>=5.9",
    "waitress>=2.1",
    "greenlet>=3",
    "chaussette>=1.3",
    # the web console: autoescaping templates, and bcrypt password hashes
    "jinja2>=3.1",
    "bcrypt>=4",
    # circusd-metrics (circus/metrics); circusd itself never imports it
    "prometheus-client>=0.17",
]

setup(
    name="circus",
    version=VERSION,
    description="A process and socket manager for Python web stacks",
    long_description=open("README.rst").read(),
    long_description_content_type="text/x-rst",
    license="Apache-2.0",
    packages=find_packages(exclude=["tests", "tests.*"]),
    include_package_data=True,
    # py.typed: library users' type checkers read circus's annotations
    package_data={"circus": ["*.ini", "py.typed"],
                  "circus.web": ["templates/*.html", "static/*"]},
    python_requires=">=3.11",
    # optional: pip install works without a compiler, and then the meinheld
    # worker runs without the chunk cache (circus/worker/framestack) and
    # circusd spawns with subprocess.Popen (circus/spawner.py); the test
    # suite fails when a compiler is there but an extension was not built
    ext_modules=[Extension("circus.worker.framestack._chunkcache",
                           ["circus/worker/framestack/_chunkcache.c"], optional=True),
                 Extension("circus._spawn", ["circus/_spawn.c"], optional=True)],
    install_requires=install_requires,
    extras_require={
        # the recipes' tests run real Pyramid and Django projects; playwright
        # drives Debian's chromium in the console's browser tests; mypy and the
        # stubs of what the public API imports (mypy.ini); the Kubernetes
        # recipe's manifests are read by its test (pyyaml); hypothesis
        # generates the hostile-input suite (tests/test_fuzz.py)
        "test": ["pytest>=7", "pytest-timeout>=2", "pyramid>=2", "django>=4.2",
                 "playwright>=1.40", "ruff>=0.6", "mypy>=1.11", "types-psutil", "pyyaml>=6",
                 "hypothesis>=6"],
    },
    entry_points={
        "console_scripts": [
            "circusd = circus.circusd:main",
            "circusctl = circus.circusctl:main",
            "circus-worker = circus.worker.cli:main",
            "circus-plugin = circus.plugins:main",
            "circusd-stats = circus.stats:main",
            "circus-top = circus.stats.top:main",
            "circushttpd = circus.web.circushttpd:main",
            "circus-metrics = circus.metrics:main",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX :: Linux",
    ],
)
