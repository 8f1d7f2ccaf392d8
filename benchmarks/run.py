#!/usr/bin/env python3
"""Run the circus benchmark suite; see benchmarks/README.

    .venv/bin/python benchmarks/run.py [--quick | --smoke] [--only web,reload,control]
                                       [--out benchmarks/results]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from suite.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
