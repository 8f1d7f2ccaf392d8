"""Whether the chunk cache extension is built, and whether it could be.

The extension is optional (pip install works without a compiler), so its
tests skip, saying why, where it is not built; test_framestack's build check
fails instead when a compiler is here and the extension is still missing."""
import os
import shutil
import sysconfig

import pytest

from circus.worker import framestack


def c_compiler():
    """The C compiler this Python builds extensions with, when it is here
    along with Python's headers; else None."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    headers = os.path.join(sysconfig.get_paths()["include"], "Python.h")
    if not cc or not os.path.exists(headers):
        return None
    return shutil.which(cc[0])


NOT_BUILT = ("%s is not built (pip found no C compiler, or the build failed): the "
             "worker runs without the chunk cache" % framestack.EXTENSION)

needs_chunk_cache = pytest.mark.skipif(
    not framestack.built() or framestack.free_threaded(),
    reason=NOT_BUILT if not framestack.built()
    else "free-threaded build: the chunk cache refuses to load")
