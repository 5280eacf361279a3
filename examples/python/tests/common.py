"""Paths shared by the tests: the source tree's header, library, CLI and test models.

Override with SKIPLESS_LIBRARY (the shared library), SKIPLESS_CLI (bin/skipless),
SKL_TEST_MODELS (the directory `make check` fills from test/models.py) and
SKIPLESS_HEADER (include/skipless.h)."""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)                          # examples/python
REPO = os.path.dirname(os.path.dirname(PKG_ROOT))         # the libskipless checkout
HEADER = os.environ.get("SKIPLESS_HEADER", os.path.join(REPO, "include", "skipless.h"))
CLI = os.environ.get("SKIPLESS_CLI", os.path.join(REPO, "bin", "skipless"))
MODELS = os.environ.get("SKL_TEST_MODELS", os.path.join(REPO, "build", "testmodels"))

if PKG_ROOT not in sys.path:
    sys.path.insert(0, PKG_ROOT)  # import the package from the source tree

import skipless  # noqa: E402

LIBRARY = os.environ.get("SKIPLESS_LIBRARY",
                         os.path.join(REPO, "lib", skipless._ffi.LIBRARY_NAMES[0]))
skipless.load_library(LIBRARY)


def manifest():
    with open(os.path.join(MODELS, "manifest.json")) as f:
        return json.load(f)


def model_entry(name):
    for m in manifest()["models"]:
        if m["name"] == name:
            return dict(m, path=os.path.join(MODELS, m["path"]))
    raise KeyError(name)
