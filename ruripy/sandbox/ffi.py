"""The few ctypes pieces the sandbox needs, made from `_ctypes` directly.

Importing the `ctypes` package costs about 2.5 ms (it builds some forty C types and
imports struct, types and ctypes._endian), an eighth of what `ruripy exec` spends in
Python. Everything here is what `ctypes` itself is made of: the same C types, the same
function pointers into the libc already mapped, errno kept per call. Only the names the
sandbox uses exist; anything else (libseccomp for compiling a filter, doctor) uses ctypes.
Standard library only.
"""

import _ctypes

Structure = _ctypes.Structure
byref = _ctypes.byref
sizeof = _ctypes.sizeof
get_errno = _ctypes.get_errno


class c_char(_ctypes._SimpleCData):
    _type_ = "c"


class c_short(_ctypes._SimpleCData):
    _type_ = "h"


class c_int(_ctypes._SimpleCData):
    _type_ = "i"


class c_uint(_ctypes._SimpleCData):
    _type_ = "I"


class c_long(_ctypes._SimpleCData):
    _type_ = "l"


class c_ulong(_ctypes._SimpleCData):
    _type_ = "L"


class c_uint64(_ctypes._SimpleCData):
    _type_ = "Q"


class c_char_p(_ctypes._SimpleCData):
    _type_ = "z"


class c_void_p(_ctypes._SimpleCData):
    _type_ = "P"


c_uint32 = c_uint
c_size_t = c_ulong  # Linux: size_t is as wide as unsigned long on every ABI


class _Function(_ctypes.CFuncPtr):
    """A C function returning int, with errno saved for get_errno()."""

    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class _Library:
    """The C library already in the process (dlopen(NULL)); functions by attribute."""

    def __init__(self) -> None:
        self._handle = _ctypes.dlopen(None, 0)

    def __getattr__(self, name: str) -> _Function:
        if name.startswith("_"):
            raise AttributeError(name)
        func = _Function((name, self))
        setattr(self, name, func)
        return func


libc = _Library()


def create_string_buffer(init: bytes | int, size: int | None = None):
    """A writable char array: `init` bytes (its exact length unless `size`), or zeroed."""
    if isinstance(init, int):
        return (c_char * init)()
    buf = (c_char * (len(init) if size is None else size))()
    buf.raw = init.ljust(len(buf), b"\0")
    return buf
