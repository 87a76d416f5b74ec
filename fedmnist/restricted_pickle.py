"""Read the pickle subset that a dict or list of NumPy float arrays needs, without pickle's or NumPy's machinery.

A pickle is a program for a stack machine, and the standard unpickler hands the
state it builds to any class's `__setstate__`, NumPy's C-level ones included,
which do not validate what they are given. So client bytes never reach
`pickle.Unpickler` or NumPy's reconstruction functions here. `pickletools.genops`
(pure Python) decodes the opcodes one at a time, and `load` interprets the few
that an honest update uses:

- containers and scalars: dict (string keys only), list, tuple, None, bool, int,
  float, str, bytes, and the memo (PUT/GET);
- the NumPy globals a plain array needs, replaced by stand-ins that accept exactly
  the arguments and state NumPy writes for a float32 or float64 array (either
  byte order, C or Fortran order) and build the array with `np.frombuffer`;
- `_codecs.encode(str, "latin1")`, with which protocols 0-2 write bytes.

Everything else (any other global, sets, persistent ids, objects, POP, DUP,
out-of-band buffers, BUILD on anything but a stand-in) is refused by name.
Bounds keep every file cheap, whatever it holds: at most MAX_OPCODES opcodes and
MAX_MARK_DEPTH open MARKs, and the bytes the stand-ins create are limited by the
file's own size, so a file never costs more than about three times its size in
memory, nor more than MAX_OPCODES steps in time; the caller can bound the arrays by what the model needs.
"""

import io
import math
import pickletools

import numpy as np

MAX_OPCODES = 10_000  # an honest update uses at most about 420 (protocol 0)
MAX_MARK_DEPTH = 16  # an honest update nests at most 3
MAX_NDIM = 8
MAX_DIM = 2**31
FLOAT_CODES = {"f4": np.float32, "f8": np.float64}

GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"): "_reconstruct",
    ("numpy.core.multiarray", "_reconstruct"): "_reconstruct",  # NumPy 1.x
    ("numpy._core.numeric", "_frombuffer"): "_frombuffer",  # protocol 5, in-band buffers
    ("numpy.core.numeric", "_frombuffer"): "_frombuffer",
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    ("_codecs", "encode"): "encode",  # protocols 0-2 write bytes as encode(str, "latin1")
}

PUSH_ARGUMENT = frozenset(
    {
        "INT",
        "BININT",
        "BININT1",
        "BININT2",
        "LONG",
        "LONG1",
        "LONG4",
        "FLOAT",
        "BINFLOAT",
        "UNICODE",
        "BINUNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE8",
        "BINBYTES",
        "SHORT_BINBYTES",
        "BINBYTES8",
        "BYTEARRAY8",
    }
)
PUSH_CONSTANT = {
    "NONE": lambda: None,
    "NEWTRUE": lambda: True,
    "NEWFALSE": lambda: False,
    "EMPTY_LIST": list,
    "EMPTY_DICT": dict,
    "EMPTY_TUPLE": tuple,
}


class PickleRefused(ValueError):
    """The bytes are not a pickle of the accepted subset; the message is short and holds no client data."""


def printable(text, limit=60):
    """`text` cut to `limit` characters with every control and non-ASCII character escaped: safe in one log line."""
    text = str(text)
    cut = text[:limit]
    return ascii(cut)[1:-1] + ("…" if len(text) > limit else "")


def describe(value):
    """A short description of an untrusted value: its type and size, and the value itself only when it is small."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return str(value) if abs(value) < 10**12 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return f"'{printable(value, 40)}'" if len(value) <= 40 else f"a string of {len(value)} characters"
    if isinstance(value, (bytes, bytearray, list, tuple, dict)):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"a {type(value).__name__}"


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_flag(value, expected):
    """NumPy writes dtype's align and copy flags as bools; older writers used the ints 0 and 1."""
    return isinstance(value, int) and value == expected


# ---------------------------------------------------------------------------
# Stand-ins for the NumPy globals
# ---------------------------------------------------------------------------


class Global:
    """A reference to one allowed global; REDUCE on it calls the matching stand-in."""

    def __init__(self, name):
        self.name = name


class PendingDtype:
    """numpy.dtype('f4' or 'f8', False, True) before its BUILD sets the byte order."""

    def __init__(self, code):
        self.code, self.dtype = code, None


class PendingArray:
    """_reconstruct(ndarray, (0,), b'b') before its BUILD supplies shape, dtype, order and data; `array` once built."""

    def __init__(self, array=None):
        self.array = array


class Machine:
    """The stack machine for one pickle; `run` returns the top-level object."""

    def __init__(self, data, max_array_bytes=None):
        self.data = data
        # Honest protocol 0-2 files materialise each array's bytes twice (the encoded bytes, then the array),
        # never more.
        self.byte_budget = 2 * len(data) if max_array_bytes is None else min(2 * len(data), max_array_bytes)
        self.stack, self.marks, self.memo = [], [], {}

    # -- bookkeeping --------------------------------------------------------

    def spend(self, nbytes):
        if nbytes > self.byte_budget:
            raise PickleRefused("the arrays it describes are larger than the file or the model could hold")
        self.byte_budget -= nbytes

    def pop(self):
        if not self.stack:
            raise PickleRefused("stack underflow")
        return self.stack.pop()

    def top(self):
        if not self.stack:
            raise PickleRefused("stack underflow")
        return self.stack[-1]

    def pop_mark(self):
        if not self.marks:
            raise PickleRefused("a container opcode without its MARK")
        items, self.stack = self.stack, self.marks.pop()
        return items

    # -- the interpreter ----------------------------------------------------

    def run(self):
        stream = io.BytesIO(self.data)
        for count, (opcode, arg, position) in enumerate(pickletools.genops(stream), start=1):
            if count > MAX_OPCODES:
                raise PickleRefused(f"more than {MAX_OPCODES} opcodes; an update needs far fewer")
            name = opcode.name
            if name == "STOP":
                if stream.tell() != len(self.data):
                    raise PickleRefused(f"{len(self.data) - stream.tell()} trailing bytes after the end of the pickle")
                result = self.pop()
                if self.stack or self.marks:
                    raise PickleRefused("unbalanced pickle: objects left on the stack at STOP")
                return result
            self.step(name, arg)
        raise PickleRefused("truncated pickle (no STOP)")

    def step(self, name, arg):
        if name in PUSH_ARGUMENT:
            self.stack.append(arg)
        elif name in PUSH_CONSTANT:
            self.stack.append(PUSH_CONSTANT[name]())
        elif name == "PROTO":
            if not 0 <= arg <= 5:
                raise PickleRefused(f"unknown pickle protocol {arg}")
        elif name == "FRAME":
            pass
        elif name == "MARK":
            if len(self.marks) >= MAX_MARK_DEPTH:
                raise PickleRefused(f"more than {MAX_MARK_DEPTH} nested MARKs")
            self.marks.append(self.stack)
            self.stack = []
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            self.memo[arg] = self.top()
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = self.top()
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in self.memo:
                raise PickleRefused("GET of a memo entry that was never PUT")
            self.stack.append(self.memo[arg])
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            size = int(name[-1])
            if len(self.stack) < size:
                raise PickleRefused("stack underflow")
            items = tuple(self.stack[-size:])
            del self.stack[-size:]
            self.stack.append(items)
        elif name in ("TUPLE", "LIST", "DICT"):
            items = self.pop_mark()  # first: it replaces self.stack
            self.stack.append(
                tuple(items) if name == "TUPLE" else items if name == "LIST" else self.fill_dict({}, items)
            )
        elif name == "APPEND":
            value = self.pop()
            self.list_on_top().append(value)
        elif name == "APPENDS":
            items = self.pop_mark()
            self.list_on_top().extend(items)
        elif name == "SETITEM":
            value, key = self.pop(), self.pop()
            self.fill_dict(self.dict_on_top(), [key, value])
        elif name == "SETITEMS":
            items = self.pop_mark()
            self.fill_dict(self.dict_on_top(), items)
        elif name == "GLOBAL":
            module, _, attribute = arg.partition(" ")
            self.stack.append(self.resolve_global(module, attribute))
        elif name == "STACK_GLOBAL":
            attribute, module = self.pop(), self.pop()
            if not (isinstance(module, str) and isinstance(attribute, str)):
                raise PickleRefused("STACK_GLOBAL needs two strings")
            self.stack.append(self.resolve_global(module, attribute))
        elif name == "REDUCE":
            args, function = self.pop(), self.pop()
            if not isinstance(function, Global) or not isinstance(args, tuple):
                raise PickleRefused(f"REDUCE on {describe(function)}: only the allowed NumPy functions may be called")
            self.stack.append(self.call(function.name, args))
        elif name == "BUILD":
            state = self.pop()
            self.build(self.top(), state)
        else:
            raise PickleRefused(f"refused opcode {name}: an update may contain only plain values and float arrays")

    def list_on_top(self):
        target = self.top()
        if type(target) is not list:
            raise PickleRefused(f"APPEND to {describe(target)}, not a list")
        return target

    def dict_on_top(self):
        target = self.top()
        if type(target) is not dict:
            raise PickleRefused(f"SETITEM on {describe(target)}, not a dict")
        return target

    @staticmethod
    def fill_dict(target, items):
        if len(items) % 2:
            raise PickleRefused("a dict with an odd number of keys and values")
        for key, value in zip(items[::2], items[1::2]):
            if type(key) is not str:  # string hashes are randomised: no crafted collisions
                raise PickleRefused(f"a dict key that is {describe(key)}; only string keys are accepted")
            target[key] = value
        return target

    @staticmethod
    def resolve_global(module, attribute):
        if (module, attribute) not in GLOBALS:
            raise PickleRefused(
                f"refused global {printable(module)}.{printable(attribute)}: an update may contain only NumPy arrays"
            )
        return Global(GLOBALS[(module, attribute)])

    # -- the stand-ins ------------------------------------------------------

    def call(self, function, args):
        if function == "_reconstruct":
            if (
                len(args) == 3
                and isinstance(args[0], Global)
                and args[0].name == "ndarray"
                and args[1] == (0,)
                and is_int(args[1][0])
                and args[2] == b"b"
            ):
                return PendingArray()
            raise PickleRefused("_reconstruct called with other arguments than NumPy's for an array")
        if function == "dtype":
            if (
                len(args) == 3
                and isinstance(args[0], str)
                and args[0] in FLOAT_CODES
                and is_flag(args[1], 0)
                and is_flag(args[2], 1)
            ):
                return PendingDtype(args[0])
            raise PickleRefused("numpy.dtype is accepted only as float32 or float64")
        if function == "_frombuffer":
            if len(args) != 4 or not isinstance(args[0], (bytes, bytearray)):
                raise PickleRefused("_frombuffer called with other arguments than NumPy's for an array")
            buffer, dtype, shape, order = args
            return PendingArray(self.make_array(buffer, dtype, shape, fortran=self.order_is_fortran(order)))
        if function == "encode":
            if (
                len(args) == 2
                and isinstance(args[0], str)
                and isinstance(args[1], str)
                and args[1] in ("latin1", "latin-1")
            ):
                self.spend(len(args[0]))
                return args[0].encode("latin1")
            raise PickleRefused("_codecs.encode is accepted only as encode(str, 'latin1')")
        raise PickleRefused(f"{function} cannot be called")

    def build(self, target, state):
        if isinstance(target, PendingDtype) and target.dtype is None:
            if (
                type(state) is tuple
                and len(state) == 8
                and state[0] == 3
                and is_int(state[0])
                and isinstance(state[1], str)
                and state[1] in ("<", ">")
                and state[2] is None
                and state[3] is None
                and state[4] is None
                and all(is_int(v) for v in state[5:])
                and state[5:] == (-1, -1, 0)
            ):
                target.dtype = np.dtype(FLOAT_CODES[target.code]).newbyteorder(state[1])
                return
            raise PickleRefused("a dtype state other than NumPy's for a float32 or float64 dtype")
        if isinstance(target, PendingArray) and target.array is None:
            if (
                type(state) is tuple
                and len(state) == 5
                and state[0] == 1
                and is_int(state[0])
                and isinstance(state[3], bool)
            ):
                _, shape, dtype, fortran, raw = state
                if isinstance(raw, (bytes, bytearray)):
                    target.array = self.make_array(raw, dtype, shape, fortran)
                    return
            raise PickleRefused("an array state other than NumPy's (1, shape, dtype, fortran, bytes)")
        raise PickleRefused(f"BUILD on {describe(target)}: only a NumPy array or dtype being rebuilt accepts a state")

    @staticmethod
    def order_is_fortran(order):
        if isinstance(order, str) and order in ("C", "F"):
            return order == "F"
        raise PickleRefused("an array order other than 'C' or 'F'")

    def make_array(self, raw, dtype, shape, fortran):
        if not isinstance(dtype, PendingDtype) or dtype.dtype is None:
            raise PickleRefused("an array whose dtype is not a float32 or float64 dtype")
        if type(shape) is not tuple or len(shape) > MAX_NDIM or not all(is_int(d) and 0 <= d <= MAX_DIM for d in shape):
            raise PickleRefused(f"an array shape that is not a tuple of at most {MAX_NDIM} non-negative integers")
        count = math.prod(shape)
        if count * dtype.dtype.itemsize != len(raw):
            raise PickleRefused("an array whose data does not match its shape and dtype")
        self.spend(len(raw))
        flat = np.frombuffer(raw, dtype=dtype.dtype, count=count)
        return flat.reshape(shape, order="F" if fortran else "C").copy()


def load(data, max_array_bytes=None):
    """Interpret `data` as a pickle of the accepted subset and return its object; raise PickleRefused otherwise.

    The arrays it rebuilds (and the bytes `_codecs.encode` creates) may total at
    most twice the file's size, and at most `max_array_bytes` when given.

    Arrays come back as PendingArray objects whose `array` is an owned, C-ordered
    float32 or float64 ndarray (None if its BUILD never came); nothing else in
    the result is anything but None, bool, int, float, str, bytes, list, tuple or dict.
    """
    return Machine(data if isinstance(data, bytes) else bytes(data), max_array_bytes).run()
