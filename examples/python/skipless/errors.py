"""Status codes of libskipless as Python exceptions.

Every negative ``skl_status`` becomes a subclass of :class:`SkiplessError`, named
after the C name: ``SKL_ERR_INVALID_ARG`` -> ``InvalidArgError``.  The list is not
written here: it is the header's SKL_STATUS_LIST, read from the loaded library
(skl_status_name and skl_strerror of each code) the first time a class, STATUS_TABLE
or BY_CODE is used.  Not at import, so that load_library(path) can still choose the
library; a library newer than the binding brings its new codes along.
tests/test_header.py compares the table with the header's list.
"""

import threading

from . import _ffi


class SkiplessError(Exception):
    """A libskipless call failed: ``code`` is the skl_status, ``message`` the
    library's skl_last_error() text of that failure."""

    code = None  # set on each subclass; an unknown code keeps the instance's

    def __init__(self, code, message):
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self):
        return f"{self.message} ({type(self).__name__}, status {self.code})"


def class_name(c_name):
    """``SKL_ERR_INVALID_ARG`` -> ``InvalidArgError``."""
    words = c_name[len("SKL_ERR_"):].split("_")
    return "".join(w.capitalize() for w in words) + "Error"


_lock = threading.Lock()
_table = None  # (STATUS_TABLE, BY_CODE, {class name: class}) once built


def _build():
    """The codes 0, -1, -2, ... the library names (the header pins them consecutive)."""
    global _table
    with _lock:
        if _table is not None:
            return _table
        lib = _ffi.lib()
        status, by_code, classes = [], {}, {}
        code = -1
        while True:
            name = lib.skl_status_name(code)
            if name is None:
                break
            name = name.decode()
            cls = type(class_name(name), (SkiplessError,),
                       {"code": code, "c_name": name, "__module__": "skipless",
                        "__doc__": f"Status {name} ({code}): {lib.skl_strerror(code).decode()}."})
            status.append((code, name))
            by_code[code] = classes[cls.__name__] = cls
            code -= 1
        _table = (tuple(status), by_code, classes)
        globals().update(classes)  # later lookups are plain attributes
        return _table


def status_table():
    """((value, C name), ...) of every error status, in the header's order."""
    return _build()[0]


def by_code():
    return _build()[1]


def class_names():
    return sorted(_build()[2])


def __getattr__(name):  # PEP 562: STATUS_TABLE, BY_CODE and the classes, built on first use
    if name == "STATUS_TABLE":
        return status_table()
    if name == "BY_CODE":
        return by_code()
    if name.endswith("Error") and not name.startswith("_"):
        classes = _build()[2]
        if name in classes:
            return classes[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def error(name, message):
    """An instance of the class for C status ``name`` (e.g. "SKL_ERR_INVALID_ARG")."""
    for code, c_name in status_table():
        if c_name == name:
            return by_code()[code](code, message)
    raise KeyError(name)


def error_for(code, message):
    """The exception instance for a failed status (base class for unknown codes)."""
    return by_code().get(code, SkiplessError)(code, message)
