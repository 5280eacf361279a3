"""The ctypes declarations, the status table and the versions must match include/skipless.h.

A small parser reads the header (the SKL_STATUS_LIST X-macro, enums, structs,
callback typedefs, SKL_API functions, version macros) and each test compares one
kind of declaration; adding or changing anything in the header without updating
skipless/_ffi.py fails here.  The status table is not written in the binding at all
(skipless/errors.py reads it from the library): here it is compared with the
header's list, and pyproject.toml's version with the header's."""

import ctypes
import inspect
import os
import re
import unittest

from common import HEADER, PKG_ROOT, skipless
from skipless import _ffi, errors


def read_header():
    """The header without comments, line continuations joined."""
    with open(HEADER) as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return text.replace("\\\n", " ")


def split_decl(decl):
    """'const char *path' -> ('const char *', 'path'); 'char note[96]' -> ('char[96]', 'note')."""
    decl = " ".join(decl.split())
    m = re.fullmatch(r"(.*?)\s*\b(\w+)\s*(\[\s*(\d+)\s*\])?", decl)
    ctype, name, _, n = m.groups()
    if not ctype or ctype in ("const", "struct", "enum"):  # unnamed parameter
        return decl, None
    return ctype + (f"[{n}]" if n else ""), name


class Header:
    def __init__(self, text):
        self.text = text
        self.macros = dict(re.findall(r"#define\s+(SKL_\w+)\s+(\d+(?=u?\b)|\"[^\"]*\")", text))
        # The X-macro: #define SKL_STATUS_LIST(X) X(name, value, "text") ...
        body = re.search(r"#define\s+SKL_STATUS_LIST\(X\)(.*)", text).group(1)
        self.status = [(n, int(v), t) for n, v, t in
                       re.findall(r"X\(\s*(\w+)\s*,\s*(-?\d+)\s*,\s*\"([^\"]*)\"\s*\)", body)]
        text = re.sub(r"^\s*#[^\n]*", " ", text, flags=re.M)  # declarations only from here
        self.enums = {}      # typedef name -> {constant: value}
        for body, name in re.findall(r"typedef\s+enum\s+\w*\s*\{(.*?)\}\s*(\w+)\s*;", text, re.S):
            if re.fullmatch(r"\s*SKL_STATUS_LIST\(\s*\w+\s*\)\s*", body):  # made from the list
                self.enums[name] = {n: v for n, v, _ in self.status}
                continue
            consts, value = {}, -1
            for item in filter(None, (i.strip() for i in body.split(","))):
                k, _, v = item.partition("=")
                value = int(v) if v.strip() else value + 1
                consts[k.strip()] = value
            self.enums[name] = consts
        self.structs = {}    # name -> [(ctype, field)]
        for body, name in re.findall(r"typedef\s+struct\s+\w*\s*\{(.*?)\}\s*(\w+)\s*;", text, re.S):
            fields = []
            for stmt in filter(None, (s.strip() for s in body.split(";"))):
                first, *more = [p.strip() for p in stmt.split(",")]
                ctype, fname = split_decl(first)
                base = re.sub(r"\[\d+\]$", "", ctype).rstrip("* ")
                fields.append((ctype, fname))
                fields += [split_decl(base + " " + m)[::1] for m in more]
            self.structs[name] = fields
        self.opaque = set(re.findall(r"typedef\s+struct\s+(\w+)\s+\1\s*;", text))
        self.callbacks = {name: (ret, self.params(args)) for ret, name, args in
                          re.findall(r"typedef\s+([\w\s\*]+?)\s*\(\s*\*\s*(\w+)\s*\)\s*\(([^)]*)\)\s*;", text)}
        self.functions = {name: (ret, self.params(args)) for ret, name, args in
                          re.findall(r"SKL_API\s+([\w\s\*]+?)\s*\b(skl_\w+)\s*\(([^)]*)\)\s*;", text)}

    @staticmethod
    def params(args):
        args = " ".join(args.split())
        if args in ("", "void"):
            return []
        return [split_decl(a)[0] for a in args.split(",")]


SCALARS = {"int": ctypes.c_int, "unsigned": ctypes.c_uint, "int32_t": ctypes.c_int32, "uint32_t": ctypes.c_uint32,
           "uint64_t": ctypes.c_uint64, "size_t": ctypes.c_size_t, "float": ctypes.c_float,
           "double": ctypes.c_double, "bool": ctypes.c_bool, "char": ctypes.c_char}


class Mapper:
    """The ctypes type(s) a C type must be declared as."""

    def __init__(self, header):
        self.h = header
        self.structs = {s._c_name_: s for s in _ffi.STRUCTS}

    def expected(self, ctype):
        t = " ".join(ctype.replace("const", " ").split()).replace(" *", "*")
        m = re.fullmatch(r"(.*)\[(\d+)\]", t)
        if m:
            return ("array", self.expected(m.group(1)), int(m.group(2)))
        if t == "void":
            return None
        if t.endswith("*"):
            inner = t[:-1].strip()
            if inner in self.h.opaque or inner == "void":
                return ctypes.c_void_p
            if inner == "char":
                return ctypes.c_char_p
            if inner.endswith("*") and inner[:-1].strip() == "char":
                return ctypes.POINTER(ctypes.c_char_p)
            return ctypes.POINTER(self.expected(inner))
        if t in SCALARS:
            return SCALARS[t]
        if t in self.h.enums:
            return ctypes.c_int
        if t in self.structs:
            return self.structs[t]
        if t in _ffi.CALLBACKS:
            return _ffi.CALLBACKS[t]
        raise AssertionError(f"no ctypes mapping for C type {ctype!r}")

    def check(self, test, ctype, declared, where):
        exp = self.expected(ctype)
        if isinstance(exp, tuple):
            test.assertTrue(issubclass(declared, ctypes.Array), where)
            test.assertEqual(declared._length_, exp[2], where)
            test.assertIs(declared._type_, exp[1], where)
        elif exp is ctypes.c_char_p:  # text may also be passed as raw bytes
            test.assertIn(declared, (ctypes.c_char_p, ctypes.c_void_p), where)
        elif exp is ctypes.POINTER(ctypes.c_char_p):  # text returned with its length
            test.assertIn(declared, (exp, ctypes.POINTER(ctypes.c_void_p)), where)
        else:
            test.assertIs(declared, exp, f"{where}: C {ctype!r} needs {exp}, declared {declared}")


class HeaderTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.h = Header(read_header())
        cls.map = Mapper(cls.h)

    def test_parser_sees_the_header(self):
        # Guards the parser itself: these must be found, or every comparison is vacuous.
        self.assertIn("skl_model_load", self.h.functions)
        self.assertIn("skl_hparams", self.h.structs)
        self.assertIn("skl_status", self.h.enums)
        self.assertIn("skl_token_fn", self.h.callbacks)
        self.assertIn("skl_model", self.h.opaque)
        self.assertGreater(len(self.h.status), 20)
        self.assertIn("SKL_VERSION_STRING", self.h.macros)

    def test_status_list(self):
        # The library's table (what errors.py builds from) is the header's X-macro list:
        # names, values, order and texts; 0, -1, -2, ... without gaps (errors.py stops at
        # the first code the library does not name).
        self.assertEqual([v for _, v, _ in self.h.status], list(range(0, -len(self.h.status), -1)))
        self.assertEqual(self.h.status[0][:2], ("SKL_OK", 0))
        self.assertEqual(list(errors.STATUS_TABLE), [(v, n) for n, v, _ in self.h.status[1:]])
        for name, value, text in self.h.status:
            self.assertEqual(skipless.status_name(value), name)
            self.assertEqual(skipless.strerror(value), text)
        self.assertIsNone(skipless.status_name(-len(self.h.status)))
        for value, name in errors.STATUS_TABLE:
            cls = errors.BY_CODE[value]
            self.assertTrue(issubclass(cls, skipless.SkiplessError))
            self.assertIs(getattr(skipless, errors.class_name(name)), cls)
            self.assertEqual((cls.code, cls.c_name), (value, name))

    def test_enum_names_in_python(self):
        e = self.h.enums
        self.assertEqual([k[len("SKL_ACT_"):].lower() for k in e["skl_activation"]],
                         list(skipless.ACTIVATIONS))
        self.assertEqual([k[len("SKL_BLOCK_"):].lower() for k in e["skl_block_type"]],
                         list(skipless.BLOCK_TYPES))
        self.assertEqual({k[len("SKL_SAVE_"):].lower(): v for k, v in e["skl_save_format"].items()},
                         skipless.SAVE_FORMATS)
        self.assertEqual([k[len("SKL_STOP_"):].lower() for k in e["skl_stop_reason"]],
                         list(skipless.STOP_REASONS))
        self.assertEqual([k[len("SKL_DTYPE_"):].lower() for k in e["skl_dtype"]],
                         list(skipless.DTYPES))
        for enum in e.values():  # ctypes reads every enum as int: values must be dense from 0
            if "SKL_OK" not in enum:
                self.assertEqual(sorted(enum.values()), list(range(len(enum))))

    def test_structs(self):
        self.assertEqual(set(self.h.structs), set(self.map.structs))
        for name, fields in self.h.structs.items():
            cls = self.map.structs[name]
            self.assertEqual([f for _, f in fields], [f for f, _ in cls._fields_], name)
            for (ctype, fname), (_, declared) in zip(fields, cls._fields_):
                self.map.check(self, ctype, declared, f"{name}.{fname}")

    def test_callbacks(self):
        self.assertEqual(set(self.h.callbacks), set(_ffi.CALLBACKS))
        for name, (ret, params) in self.h.callbacks.items():
            cb = _ffi.CALLBACKS[name]
            self.assertIs(cb._restype_, self.map.expected(ret), name)
            self.assertEqual(len(cb._argtypes_), len(params), name)
            for i, (ctype, declared) in enumerate(zip(params, cb._argtypes_)):
                self.map.check(self, ctype, declared, f"{name} argument {i}")

    def test_functions(self):
        declared = {name: (res, args) for name, res, args in _ffi.FUNCTIONS}
        self.assertEqual(set(self.h.functions), set(declared))
        for name, (ret, params) in self.h.functions.items():
            res, args = declared[name]
            self.map.check(self, ret, res, f"{name} return") if ret.strip() != "void" \
                else self.assertIsNone(res, name)
            self.assertEqual(len(args), len(params), name)
            for i, (ctype, d) in enumerate(zip(params, args)):
                self.map.check(self, ctype, d, f"{name} argument {i}")

    def test_version(self):
        # The header is the one place the version is written; the binding's declarations
        # name the version they mirror, and pyproject.toml needs a literal: both must be it.
        m = self.h.macros
        want = tuple(int(m["SKL_VERSION_" + k]) for k in ("MAJOR", "MINOR", "PATCH"))
        self.assertEqual((_ffi.VERSION_MAJOR, _ffi.VERSION_MINOR, _ffi.VERSION_PATCH), want)
        self.assertEqual(m["SKL_VERSION_STRING"], '"%d.%d.%d"' % want)
        self.assertEqual(skipless.__version__, "%d.%d.%d" % want)
        with open(os.path.join(PKG_ROOT, "pyproject.toml")) as f:
            project = re.search(r"^\[project\](.*?)^\[", f.read(), re.S | re.M).group(1)
        self.assertEqual(re.search(r'^version\s*=\s*"([^"]*)"', project, re.M).group(1),
                         skipless.__version__, "pyproject.toml's version")
        self.assertEqual(_ffi.LIBRARY_NAMES[0], "libskipless.so.%d" % want[0])
        self.assertEqual(skipless.version(), skipless.__version__)  # the tree's own library

    def test_params_struct_size(self):
        # Every skl_*_params begins with struct_size, and init sets it to our sizeof.
        params = [s for s in _ffi.STRUCTS if s._c_name_.endswith("_params")]
        self.assertEqual(len(params), 7)  # model, context, sampler, generate, merge, save, quantize
        for cls in params:
            self.assertEqual(cls._fields_[0], ("struct_size", ctypes.c_uint32), cls._c_name_)
            self.assertEqual(_ffi.init(cls).struct_size, ctypes.sizeof(cls), cls._c_name_)

    def test_python_defaults_are_the_librarys(self):
        # Model.merge spells out dtype="f32"; it must be what skl_merge_params_init sets.
        mp = _ffi.init(_ffi.MergeParams)
        default = inspect.signature(skipless.Model.merge).parameters["dtype"].default
        self.assertEqual(skipless.DTYPES[mp.dtype], default)

    def test_flags(self):
        self.assertEqual(int(self.h.macros["SKL_TOKENIZE_PLAIN"]), _ffi.TOKENIZE_PLAIN)

    def test_library_knows_every_code(self):
        for value, _ in errors.STATUS_TABLE:
            self.assertNotEqual(skipless.strerror(value), "unknown status", value)
        self.assertEqual(skipless.strerror(-1000), "unknown status")


if __name__ == "__main__":
    unittest.main()
