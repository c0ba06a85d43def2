"""Build of the Cython hot path: one extension module, `_core.core` (uvloop style: one C unit)."""

import os

from Cython.Build import cythonize
from setuptools import Extension, setup

CFLAGS = os.environ.get("PYAMBIENT_CFLAGS", "-O2").split()

setup(
    ext_modules=cythonize(
        [Extension("_core.core", ["_core/core.pyx"], extra_compile_args=CFLAGS)],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    ),
)
