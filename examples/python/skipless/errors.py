"""Status codes of include/skipless.h as Python exceptions.

Every negative ``skl_status`` becomes a subclass of :class:`SkiplessError`, named
after the C name: ``SKL_ERR_INVALID_ARG`` -> ``InvalidArgError``.  The table
mirrors the header's enum (values pinned forever); tests/test_header.py fails
when the two differ.
"""

# (value, C name) in header order.
STATUS_TABLE = (
    (-1, "SKL_ERR_INVALID_ARG"),
    (-2, "SKL_ERR_NOMEM"),
    (-3, "SKL_ERR_IO"),
    (-4, "SKL_ERR_TRUNCATED"),
    (-5, "SKL_ERR_HEADER_SIZE"),
    (-6, "SKL_ERR_JSON"),
    (-7, "SKL_ERR_DUPLICATE_KEY"),
    (-8, "SKL_ERR_HEADER"),
    (-9, "SKL_ERR_DTYPE"),
    (-10, "SKL_ERR_TENSOR_SIZE"),
    (-11, "SKL_ERR_OUT_OF_RANGE"),
    (-12, "SKL_ERR_OVERLAP"),
    (-13, "SKL_ERR_GAP"),
    (-14, "SKL_ERR_CONFIG"),
    (-15, "SKL_ERR_SHAPE"),
    (-16, "SKL_ERR_MISSING_TENSOR"),
    (-17, "SKL_ERR_UNEXPECTED_TENSOR"),
    (-18, "SKL_ERR_TOKEN"),
    (-19, "SKL_ERR_CONTEXT_FULL"),
    (-20, "SKL_ERR_CANCELLED"),
    (-21, "SKL_ERR_MERGE_NOT_APPLICABLE"),
    (-22, "SKL_ERR_SINGULAR"),
    (-23, "SKL_ERR_ILL_CONDITIONED"),
    (-24, "SKL_ERR_ALREADY_MERGED"),
    (-25, "SKL_ERR_UNSUPPORTED"),
    (-26, "SKL_ERR_TOKENIZER"),
    (-27, "SKL_ERR_NO_TOKENIZER"),
    (-28, "SKL_ERR_BUFFER_TOO_SMALL"),
)


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


BY_CODE = {}
for _value, _c_name in STATUS_TABLE:
    _cls = type(class_name(_c_name), (SkiplessError,),
                {"code": _value, "c_name": _c_name, "__module__": "skipless",
                 "__doc__": f"Status {_c_name} ({_value})."})
    globals()[_cls.__name__] = _cls
    BY_CODE[_value] = _cls
del _value, _c_name, _cls

__all__ = ["SkiplessError", "STATUS_TABLE", "BY_CODE"] + [c.__name__ for c in BY_CODE.values()]


def error_for(code, message):
    """The exception instance for a failed status (base class for unknown codes)."""
    return BY_CODE.get(code, SkiplessError)(code, message)
