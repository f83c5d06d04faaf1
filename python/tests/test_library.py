"""Finding libnmdb, and calling it with the types nmdb.h declares."""

import ctypes
import ctypes.util
import os
import re
import subprocess
import sys

import pytest

from nmdb import _lib
from realserver import REPO

HEADER = REPO / "include" / "nmdb.h"

# The C types in nmdb.h and the ctypes types that carry them.
C_TYPES = {
    "nmdb_t *": _lib.HANDLE,
    "const unsigned char *": ctypes.c_char_p,
    "unsigned char *": ctypes.c_char_p,
    "const char *": ctypes.c_char_p,
    "size_t": ctypes.c_size_t,
    "ssize_t": ctypes.c_ssize_t,
    "int": ctypes.c_int,
    "unsigned int": ctypes.c_uint,
    "unsigned int *": ctypes.POINTER(ctypes.c_uint),
    "int64_t": ctypes.c_int64,
    "int64_t *": ctypes.POINTER(ctypes.c_int64),
}


def c_type(text):
    return C_TYPES[re.sub(r"\s*\*", " *", text).strip()]


def header_prototypes():
    """{name: (return type, [argument types])} from include/nmdb.h."""
    protos = {}
    prototype = re.compile(r"^([\w ]+?\*?) ?(nmdb_\w+)\((.*)\);$", re.MULTILINE)
    for ret, name, args in prototype.findall(HEADER.read_text()):
        params = [] if args.strip() in ("", "void") else args.split(",")
        # Each parameter is its type followed by its name.
        protos[name] = (c_type(ret), [c_type(re.sub(r"\w+$", "", p)) for p in params])
    return protos


def test_every_function_called_has_the_header_prototype():
    protos = header_prototypes()
    assert "nmdb_incr" in protos and "nmdb_last_error" in protos
    for name, (restype, argtypes) in {**_lib._REQUIRED, **_lib._OPTIONAL}.items():
        assert name in protos, f"{name} is not in nmdb.h"
        assert (restype, argtypes) == protos[name], name
        fn = getattr(_lib.lib, name)
        assert (fn.restype, fn.argtypes) == (restype, argtypes), name


def import_nmdb(env):
    """Runs `import nmdb` in a new interpreter; returns (status, stderr)."""
    env = {**os.environ, **env}
    env = {k: v for k, v in env.items() if v is not None}
    run = subprocess.run(
        [sys.executable, "-c", "import nmdb; print(nmdb.LIBRARY_PATH)"],
        cwd=REPO / "python",
        env=env,
        capture_output=True,
        text=True,
    )
    return run.returncode, run.stdout + run.stderr


def test_nmdb_library_naming_a_missing_file_fails_import_naming_it(tmp_path):
    status, out = import_nmdb({"NMDB_LIBRARY": str(tmp_path / "nope.so")})
    assert status != 0
    assert "ImportError" in out and "NMDB_LIBRARY" in out and "nope.so" in out


def test_nmdb_library_naming_another_library_fails_import():
    libc = ctypes.util.find_library("c")
    status, out = import_nmdb({"NMDB_LIBRARY": libc})
    assert status != 0
    assert "has no nmdb_init()" in out


def test_library_is_found_through_the_dynamic_linker_path(tmp_path):
    (tmp_path / "libnmdb.so.0").symlink_to(os.environ["NMDB_LIBRARY"])
    status, out = import_nmdb({"NMDB_LIBRARY": None, "LD_LIBRARY_PATH": str(tmp_path)})
    assert status == 0, out


def test_library_not_found_lists_every_place_tried(monkeypatch):
    def refuse(name, *args, **kwargs):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.delenv("NMDB_LIBRARY")
    monkeypatch.setattr(ctypes, "CDLL", refuse)
    with pytest.raises(ImportError) as e:
        _lib._open()
    message = str(e.value)
    assert "NMDB_LIBRARY" in message
    for place in ("libnmdb.so.0", "/usr/local/lib/libnmdb.so", "/usr/lib/libnmdb.so"):
        assert place in message
