"""PEP 517 backend: setuptools.build_meta, plus a standard-library wheel writer
used only when the `wheel` package is missing.

setuptools before 70.1 needs the separate `wheel` package for bdist_wheel, and
some interpreters (e.g. a pyenv 3.11 with only pip and setuptools) lack it, so
`pip install --no-build-isolation` would fail there.  The package is pure
Python, so its wheel is a zip of skipless/ plus core metadata written from
pyproject.toml (setuptools' own metadata step needs bdist_wheel too)."""

import base64
import hashlib
import os
import zipfile

try:
    import tomllib
except ImportError:  # Python < 3.11: only the setuptools path
    tomllib = None

from setuptools import build_meta as _st
from setuptools.build_meta import *  # noqa: F401,F403  (get_requires_*, build_sdist, ...)

try:
    import wheel  # noqa: F401
    HAVE_WHEEL = True
except ImportError:
    HAVE_WHEEL = False

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAG = "py3-none-any"


def _record_line(arcname, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def _metadata():
    """Core metadata 2.1 (PKG-INFO format) from pyproject.toml's [project]."""
    if tomllib is None:
        raise RuntimeError("building skipless without the `wheel` package needs Python >= 3.11")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        p = tomllib.load(f)["project"]
    lines = ["Metadata-Version: 2.1", f"Name: {p['name']}", f"Version: {p['version']}",
             f"Summary: {p['description']}", f"Requires-Python: {p['requires-python']}"]
    for extra, reqs in p.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {r}; extra == "{extra}"' for r in reqs]
    with open(os.path.join(ROOT, p["readme"]), encoding="utf-8") as f:
        readme = f.read()
    lines.append("Description-Content-Type: text/markdown")
    return p["name"], p["version"], ("\n".join(lines) + "\n\n" + readme).encode()


def _build_pure_wheel(wheel_directory):
    name, version, metadata = _metadata()
    name_version = f"{name}-{version}"
    dist_info = name_version + ".dist-info"
    filename = f"{name_version}-{TAG}.whl"
    files = []
    pkg = os.path.join(ROOT, "skipless")
    for entry in sorted(os.listdir(pkg)):
        full = os.path.join(pkg, entry)
        if os.path.isfile(full) and (entry.endswith(".py") or entry.startswith("libskipless.so")):
            with open(full, "rb") as f:
                files.append((f"skipless/{entry}", f.read()))
    files.append((f"{dist_info}/METADATA", metadata))
    files.append((f"{dist_info}/top_level.txt", b"skipless\n"))
    files.append((f"{dist_info}/WHEEL", (f"Wheel-Version: 1.0\nGenerator: skipless_build\n"
                                          f"Root-Is-Purelib: true\nTag: {TAG}\n").encode()))
    record = [_record_line(a, d) for a, d in files] + [f"{dist_info}/RECORD,,"]
    files.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w", zipfile.ZIP_DEFLATED) as z:
        for arcname, data in files:
            z.writestr(arcname, data)
    return filename


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    if HAVE_WHEEL:
        return _st.build_wheel(wheel_directory, config_settings, metadata_directory)
    return _build_pure_wheel(wheel_directory)


if not HAVE_WHEEL:  # optional hooks; setuptools' versions would need bdist_wheel
    del prepare_metadata_for_build_wheel  # noqa: F821
    del build_editable, prepare_metadata_for_build_editable  # noqa: F821
