"""Data-only bridge between a student's kernel and the judge kernel that runs the tests.

The grader never runs a test cell in the student's interpreter: anything the student's
code did there (a redefined helper, a patched builtin or pandas method, an IPython
input or AST transformer, a custom exception handler, a hacked kernel) would decide
the result.  Instead a second, clean kernel -- the *judge* -- runs the assignment's
locked cells and its test cells.  Before each of them the judge fetches the names the
cell uses that only the student defines, through this bridge:

* **data** (``None``, ``bool``, numbers, ``str``, ``bytes``, lists, tuples, dicts,
  sets, ``range``, NumPy arrays and scalars, pandas ``Series``/``DataFrame``/``Index``,
  dates) crosses as a tagged JSON document and is rebuilt in the judge as a *genuine*
  object of the built-in type: a student ``int`` subclass whose ``__eq__`` always says
  yes arrives as a plain ``int``;
* **modules** arrive as the judge's own copy of the module;
* anything else (a student function, class, figure...) stays in the student's kernel
  and the judge gets a :class:`Remote` handle: calling it, reading an attribute,
  indexing, ``len`` or iterating sends a request to the student's kernel, which runs
  the student's code there and answers with data or another handle.

So student code runs only in the student's kernel, and the judge only ever receives
data.  The student's kernel can answer anything it likes -- exactly as an honest
function could return any value -- but it cannot change how the judge compares,
asserts or reports.

This file is sent as source text into both kernels (student notebooks never import
``coursekit``), so it must stay self-contained: standard library, NumPy and pandas only.
"""
from __future__ import annotations

import base64
import datetime as _dt
import importlib
import json
import sys
import time
import warnings

MAX_ITEMS = 2_000_000          # values in one document
MAX_DEPTH = 60                 # nesting of containers
MAX_TEXT = 32 * 1024 * 1024    # characters of one reply
MAX_MESSAGE = 64 * 1024 * 1024  # bytes of one ZeroMQ message the judge accepts
ALLOWED_MODULE_ROOTS = {
    "math", "cmath", "statistics", "re", "string", "json", "collections", "itertools",
    "functools", "operator", "datetime", "decimal", "fractions", "random", "textwrap",
    "numpy", "pandas", "matplotlib", "networkx", "scipy", "seaborn", "csv", "pathlib",
    "hashlib", "unicodedata", "difflib", "typing",
}


class BridgeError(Exception):
    """The other side sent something the bridge does not accept."""


class StudentCodeError(Exception):
    """The student's code raised an exception while the judge was using it."""


# --------------------------------------------------------------------------
# codec
# --------------------------------------------------------------------------
class _Budget:
    def __init__(self):
        self.items = 0

    def tick(self, n=1):
        self.items += n
        if self.items > MAX_ITEMS:
            raise BridgeError("value too large to pass between kernels")


def _pd():
    return sys.modules.get("pandas")


def _np():
    return sys.modules.get("numpy")


def encode(obj, ref=None, _depth=0, _budget=None):
    """A JSON-able document for ``obj``; non-data objects go through ``ref(obj)``."""
    budget = _budget or _Budget()
    budget.tick()
    if _depth > MAX_DEPTH:
        raise BridgeError("value nested too deeply")
    d = _depth + 1

    def enc(x):
        return encode(x, ref, d, budget)

    if obj is None:
        return ["none"]
    if isinstance(obj, bool):
        return ["bool", bool(obj)]
    np, pd = _np(), _pd()
    if np is not None and isinstance(obj, np.generic):
        return _encode_np_scalar(obj)
    if isinstance(obj, int):
        return ["int", str(int(obj))]
    if isinstance(obj, float):
        return ["float", float.__repr__(float(obj))]
    if isinstance(obj, complex):
        c = complex(obj)
        return ["complex", float.__repr__(c.real), float.__repr__(c.imag)]
    if isinstance(obj, str):
        budget.tick(len(obj) // 64)
        return ["str", str.__str__(obj)]
    if isinstance(obj, (bytes, bytearray)):
        budget.tick(len(obj) // 64)
        return ["bytes", base64.b64encode(bytes(obj)).decode("ascii")]
    if pd is not None:
        if obj is pd.NA:
            return ["NA"]
        if obj is pd.NaT:
            return ["NaT"]
        if isinstance(obj, pd.Timestamp):
            return ["timestamp", obj.isoformat()]
        if isinstance(obj, pd.Timedelta):
            return ["timedelta", str(obj.value)]
        if isinstance(obj, pd.DataFrame) and type(obj).__module__.startswith("pandas"):
            return _encode_frame(obj, enc, budget)
        if isinstance(obj, pd.Series) and type(obj).__module__.startswith("pandas"):
            return ["series", _encode_values(obj, enc, budget), _encode_index(obj.index, enc, budget),
                    enc(obj.name)]
        if isinstance(obj, pd.Index) and type(obj).__module__.startswith("pandas"):
            return _encode_index(obj, enc, budget)
    if isinstance(obj, _dt.datetime):
        return ["datetime", obj.isoformat()]
    if isinstance(obj, _dt.date):
        return ["date", obj.isoformat()]
    if isinstance(obj, _dt.timedelta):
        return ["pytimedelta", obj.days, obj.seconds, obj.microseconds]
    if np is not None and isinstance(obj, np.ndarray) and type(obj) is np.ndarray:
        return _encode_array(obj, enc, budget)
    if isinstance(obj, (list, tuple, set, frozenset)) and type(obj).__module__ in ("builtins", "collections"):
        kind = ("list" if isinstance(obj, list) else "tuple" if isinstance(obj, tuple)
                else "set" if isinstance(obj, set) else "frozenset")
        items = list(obj)
        budget.tick(len(items))
        return [kind, [enc(x) for x in items]]
    if isinstance(obj, dict) and type(obj).__module__ in ("builtins", "collections"):
        items = list(obj.items())
        budget.tick(len(items))
        return ["dict", [[enc(k), enc(v)] for k, v in items]]
    if isinstance(obj, range):
        return ["range", obj.start, obj.stop, obj.step]
    if type(obj).__name__ == "module" and isinstance(getattr(obj, "__name__", None), str):
        return ["module", obj.__name__]
    if ref is None:
        raise BridgeError(f"only data can be passed to the student's code, not {type(obj).__name__}")
    return ref(obj)


def _dtype_doc(dtype):
    pd = _pd()
    if pd is not None and isinstance(dtype, pd.CategoricalDtype):
        return ["category", encode(list(dtype.categories)), bool(dtype.ordered)]
    return ["dtype", str(dtype)]


def _encode_values(series, enc, budget):
    budget.tick(len(series))
    values = series.array if hasattr(series, "array") else series
    return [_dtype_doc(series.dtype), [enc(_plain(v)) for v in values]]


def _plain(v):
    """NumPy scalars inside pandas containers become Python scalars (dtype restores them)."""
    np = _np()
    if np is not None and isinstance(v, np.generic) and not isinstance(v, (np.datetime64, np.timedelta64)):
        return v.item()
    return v


def _encode_index(index, enc, budget):
    pd = _pd()
    budget.tick(len(index))
    if isinstance(index, pd.MultiIndex):
        return ["multiindex", [enc(n) for n in index.names], [enc(tuple(_plain(x) for x in t)) for t in index]]
    if isinstance(index, pd.RangeIndex):
        return ["rangeindex", int(index.start), int(index.stop), int(index.step), enc(index.name)]
    return ["index", _dtype_doc(index.dtype), [enc(_plain(v)) for v in index], enc(index.name)]


def _encode_frame(frame, enc, budget):
    columns = _encode_index(frame.columns, enc, budget)
    cols = [_encode_values(frame.iloc[:, i], enc, budget) for i in range(frame.shape[1])]
    return ["frame", columns, _encode_index(frame.index, enc, budget), cols]


def _encode_array(arr, enc, budget):
    budget.tick(arr.size)
    if arr.dtype.kind in "biufcUSMm":
        flat = arr.ravel().tolist()
        if arr.dtype.kind in "Mm":
            flat = arr.ravel().astype("int64").tolist()
        if arr.dtype.kind == "S":
            flat = [base64.b64encode(x).decode("ascii") for x in flat]
        if arr.dtype.kind in "fc":
            return ["ndarray", arr.dtype.str, list(arr.shape), [enc(x) for x in flat]]
        return ["ndarray", arr.dtype.str, list(arr.shape), flat]
    if arr.dtype.kind == "O":
        return ["ndarray", "O", list(arr.shape), [enc(x) for x in arr.ravel().tolist()]]
    raise BridgeError(f"arrays of dtype {arr.dtype} cannot be passed between kernels")


def _encode_np_scalar(x):
    np = _np()
    if isinstance(x, (np.datetime64, np.timedelta64)):
        return ["npscalar", x.dtype.str, int(x.astype("int64"))]
    if isinstance(x, np.bool_):
        return ["npscalar", "?", bool(x)]
    if isinstance(x, np.integer):
        return ["npscalar", x.dtype.str, str(int(x))]
    if isinstance(x, np.floating):
        return ["npscalar", x.dtype.str, float.__repr__(float(x))]
    if isinstance(x, np.complexfloating):
        return ["npscalar", x.dtype.str, [float.__repr__(float(x.real)), float.__repr__(float(x.imag))]]
    if isinstance(x, (np.str_, np.bytes_)):
        return encode(x.item())
    raise BridgeError(f"NumPy value of type {type(x).__name__} cannot be passed between kernels")


def _str(x, limit=10_000_000):
    if type(x) is not str or len(x) > limit:
        raise BridgeError("malformed document")
    return x


def _float(x):
    x = _str(x, 64)
    return float(x)


def _dtype_from(doc):
    pd = _pd()
    if not isinstance(doc, list) or not doc:
        raise BridgeError("malformed dtype")
    if doc[0] == "category":
        return pd.CategoricalDtype(categories=decode(doc[1]), ordered=bool(doc[2]))
    if doc[0] == "dtype":
        name = _str(doc[1], 100)
        try:
            return pd.api.types.pandas_dtype(name)
        except Exception:
            return "object"
    raise BridgeError("malformed dtype")


def decode(doc, make_ref=None, _depth=0, _budget=None):
    """Rebuild the value of a document made by :func:`encode` (data only)."""
    budget = _budget or _Budget()
    budget.tick()
    if _depth > MAX_DEPTH:
        raise BridgeError("value nested too deeply")
    if not isinstance(doc, list) or not doc or not isinstance(doc[0], str):
        raise BridgeError("malformed document")
    d = _depth + 1

    def dec(x):
        return decode(x, make_ref, d, budget)

    def seq(x):
        if not isinstance(x, list):
            raise BridgeError("malformed document")
        budget.tick(len(x))
        return x

    tag = doc[0]
    if tag == "none":
        return None
    if tag == "bool":
        return bool(doc[1] is True)
    if tag == "int":
        s = _str(doc[1], 5000)
        return int(s)
    if tag == "float":
        return _float(doc[1])
    if tag == "complex":
        return complex(_float(doc[1]), _float(doc[2]))
    if tag == "str":
        return _str(doc[1])
    if tag == "bytes":
        return base64.b64decode(_str(doc[1]), validate=True)
    if tag in ("list", "tuple", "set", "frozenset"):
        items = [dec(x) for x in seq(doc[1])]
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
    if tag == "dict":
        out = {}
        for pair in seq(doc[1]):
            if not isinstance(pair, list) or len(pair) != 2:
                raise BridgeError("malformed document")
            out[dec(pair[0])] = dec(pair[1])
        return out
    if tag == "range":
        return range(int(doc[1]), int(doc[2]), int(doc[3]))
    if tag == "datetime":
        return _dt.datetime.fromisoformat(_str(doc[1], 64))
    if tag == "date":
        return _dt.date.fromisoformat(_str(doc[1], 64))
    if tag == "pytimedelta":
        return _dt.timedelta(days=int(doc[1]), seconds=int(doc[2]), microseconds=int(doc[3]))
    if tag == "module":
        return _import_module(_str(doc[1], 200))
    if tag in ("ref", "fn"):
        if make_ref is None:
            raise BridgeError("malformed document")
        return make_ref(doc)
    np = importlib.import_module("numpy")
    if tag == "npscalar":
        dtype = np.dtype(_str(doc[1], 32))
        if dtype.kind in "Mm":
            return np.array([int(doc[2])], dtype="int64").view(dtype)[0]
        if dtype.kind == "b":
            return np.bool_(doc[2] is True)
        if dtype.kind in "iu":
            return dtype.type(int(_str(doc[2], 64)))
        if dtype.kind == "f":
            return dtype.type(_float(doc[2]))
        if dtype.kind == "c":
            return dtype.type(complex(_float(doc[2][0]), _float(doc[2][1])))
        raise BridgeError("malformed document")
    if tag == "ndarray":
        dtype = np.dtype(_str(doc[1], 32))
        shape = tuple(int(n) for n in seq(doc[2]))
        flat = seq(doc[3])
        if dtype.kind in "fcO":
            flat = [dec(x) for x in flat]
        elif dtype.kind == "S":
            flat = [base64.b64decode(_str(x)) for x in flat]
        elif dtype.kind in "biu":
            if not all(type(x) in (int, bool) for x in flat):
                raise BridgeError("malformed document")
        elif dtype.kind == "U":
            flat = [_str(x) for x in flat]
        elif dtype.kind in "Mm":
            arr = np.array([int(x) for x in flat], dtype="int64").view(dtype)
            return arr.reshape(shape)
        else:
            raise BridgeError("malformed document")
        if dtype.kind == "O":
            arr = np.empty(len(flat), dtype=object)
            arr[:] = flat
        else:
            arr = np.array(flat, dtype=dtype)
        return arr.reshape(shape)
    pd = importlib.import_module("pandas")
    if tag == "NA":
        return pd.NA
    if tag == "NaT":
        return pd.NaT
    if tag == "timestamp":
        return pd.Timestamp(_str(doc[1], 64))
    if tag == "timedelta":
        return pd.Timedelta(int(_str(doc[1], 64)))
    if tag in ("index", "rangeindex", "multiindex"):
        return _decode_index(doc, dec, seq)
    if tag == "series":
        index = _decode_index(doc[2], dec, seq)
        return _decode_values(doc[1], dec, seq, index=index, name=dec(doc[3]))
    if tag == "frame":
        columns = _decode_index(doc[1], dec, seq)
        index = _decode_index(doc[2], dec, seq)
        cols = [_decode_values(c, dec, seq, index=index) for c in seq(doc[3])]
        if len(cols) != len(columns):
            raise BridgeError("malformed document")
        frame = pd.concat(cols, axis=1, ignore_index=True) if cols else pd.DataFrame(index=index)
        frame.columns = columns
        return frame
    raise BridgeError(f"unknown value type {tag[:40]!r}")


def _decode_values(doc, dec, seq, index, name=None):
    pd = _pd()
    dtype = _dtype_from(doc[0])
    values = [dec(v) for v in seq(doc[1])]
    if len(values) != len(index):
        raise BridgeError("malformed document")
    try:
        return pd.Series(values, index=index, name=name, dtype=dtype)
    except Exception:
        return pd.Series(values, index=index, name=name, dtype="object")


def _decode_index(doc, dec, seq):
    pd = _pd() or importlib.import_module("pandas")
    if not isinstance(doc, list) or not doc:
        raise BridgeError("malformed document")
    if doc[0] == "rangeindex":
        return pd.RangeIndex(int(doc[1]), int(doc[2]), int(doc[3]), name=dec(doc[4]))
    if doc[0] == "multiindex":
        names = [dec(n) for n in seq(doc[1])]
        tuples = [dec(t) for t in seq(doc[2])]
        return pd.MultiIndex.from_tuples(tuples, names=names) if tuples else \
            pd.MultiIndex.from_arrays([[] for _ in names], names=names)
    if doc[0] == "index":
        dtype = _dtype_from(doc[1])
        values = [dec(v) for v in seq(doc[2])]
        try:
            return pd.Index(values, dtype=dtype, name=dec(doc[3]))
        except Exception:
            return pd.Index(values, dtype="object", name=dec(doc[3]))
    raise BridgeError("malformed document")


def _import_module(name):
    root = name.split(".")[0]
    if not name.replace(".", "_").isidentifier():
        raise BridgeError("malformed module name")
    if name in sys.modules or root in ALLOWED_MODULE_ROOTS:
        return importlib.import_module(name)
    raise BridgeError(f"module {name!r} is not available to the tests")


# --------------------------------------------------------------------------
# student side: answers the judge's requests
# --------------------------------------------------------------------------
class _Reply:
    """What a request evaluates to in the student's kernel: shown to the judge as JSON."""

    def __init__(self, doc):
        self.doc = doc

    def _repr_json_(self):
        return {"doc": self.doc}

    def __repr__(self):
        return "<coursekit reply>"


class Agent:
    """Runs in the student's kernel; performs one request of the judge at a time."""

    def __init__(self, namespace):
        self.ns = namespace
        self.objects = {}
        self.ids = {}

    def ref(self, obj):
        key = id(obj)
        if key not in self.ids:
            handle = len(self.objects) + 1
            self.objects[handle] = obj
            self.ids[key] = handle
        handle = self.ids[key]
        kind = "fn" if callable(obj) else "ref"
        try:
            label = f"{type(obj).__module__}.{type(obj).__qualname__}"
        except Exception:
            label = "object"
        name = getattr(obj, "__name__", None) if kind == "fn" else None
        return [kind, handle, label[:200], name if isinstance(name, str) else None]

    def _resolve(self, doc):
        if doc[0] in ("ref", "fn"):
            return self.objects[int(doc[1])]
        raise BridgeError("malformed document")

    def handle(self, request_text):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                request = json.loads(request_text)
                result = self._perform(request)
                return _Reply(["ok", encode(result, self.ref)])
        except BaseException as exc:  # the judge decides what a failure means
            try:
                message = str(exc)[:500]
            except Exception:
                message = ""
            return _Reply(["error", type(exc).__name__[:80], message])

    def _perform(self, request):
        op = request[0]
        dec = lambda doc: decode(doc, self._resolve)  # noqa: E731
        if op == "get":
            name = request[1]
            if name not in self.ns:
                raise NameError(f"name {name!r} is not defined")
            return self.ns[name]
        target = self.objects[int(request[1])]
        if op == "call":
            args = [dec(a) for a in request[2]]
            kwargs = {str(k): dec(v) for k, v in request[3]}
            return target(*args, **kwargs)
        if op == "attr":
            return getattr(target, str(request[2]))
        if op == "item":
            return target[dec(request[2])]
        if op == "len":
            return len(target)
        if op == "iter":
            out = []
            for item in target:
                out.append(item)
                if len(out) > MAX_ITEMS:
                    raise BridgeError("too many items")
            return out
        if op == "bool":
            return bool(target)
        if op == "str":
            return str(target)
        if op == "contains":
            return dec(request[2]) in target
        raise BridgeError("unknown request")


def install_agent(namespace):
    """Called once in the student's kernel, before any student code runs."""
    module = sys.modules[__name__]
    module.AGENT = Agent(namespace)
    return module.AGENT


# --------------------------------------------------------------------------
# judge side
# --------------------------------------------------------------------------
_REPR_BLOCK = ("_repr_", "_ipython_", "__")


class Remote:
    """A handle to an object that lives in the student's kernel."""

    __slots__ = ("_link", "_doc")

    def __init__(self, link, doc):
        object.__setattr__(self, "_link", link)
        object.__setattr__(self, "_doc", doc)

    def _op(self, *request):
        return self._link.request([request[0], self._doc[1], *request[1:]])

    def __getattr__(self, name):
        # never ask the student's kernel how to display or compare this object
        if name.startswith(_REPR_BLOCK):
            raise AttributeError(name)
        return self._op("attr", name)

    def __setattr__(self, name, value):
        raise TypeError("objects from the student's kernel are read-only in the tests")

    def __call__(self, *args, **kwargs):
        return self._op("call", [self._link.encode(a) for a in args],
                        [[k, self._link.encode(v)] for k, v in kwargs.items()])

    def __getitem__(self, key):
        return self._op("item", self._link.encode(key))

    def __len__(self):
        n = self._op("len")
        if type(n) is not int:
            raise TypeError("len() of a student object must be an int")
        return n

    def __iter__(self):
        items = self._op("iter")
        if type(items) is not list:
            raise TypeError("student object is not iterable")
        return iter(items)

    def __contains__(self, item):
        return self._op("contains", self._link.encode(item)) is True

    def __bool__(self):
        return self._op("bool") is True

    def __str__(self):
        s = self._op("str")
        return s if type(s) is str else "<student object>"

    def __repr__(self):
        name = f" {self._doc[3]}" if self._doc[0] == "fn" and self._doc[3] else ""
        return f"<student {'function' if self._doc[0] == 'fn' else 'object'}{name} ({self._doc[2]})>"


_BUILTIN_ERRORS = {e.__name__: e for e in (
    AttributeError, KeyError, IndexError, TypeError, ValueError, NameError, ZeroDivisionError,
    StopIteration, NotImplementedError, AssertionError, RecursionError, MemoryError, LookupError,
    ArithmeticError, OverflowError, FileNotFoundError, UnicodeError)}


class Link:
    """The judge's connection to the student's kernel."""

    def __init__(self, connection_info, timeout=30.0):
        self.timeout = float(timeout)
        self.deadline = None
        self.client = None
        self.info = None
        self.connect(connection_info)

    def connect(self, connection_info):
        self.close()
        self.info = connection_info
        if not connection_info:
            return
        import zmq
        from jupyter_client import BlockingKernelClient

        client = BlockingKernelClient()
        client.load_connection_info(connection_info)
        client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=True)
        for channel in (client.shell_channel, client.control_channel):
            with _suppress():
                channel.socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
        self.client = client

    def close(self):
        if self.client is not None:
            with _suppress():
                self.client.stop_channels()
        self.client = None

    def encode(self, value):
        return encode(value, self._local_ref)

    @staticmethod
    def _local_ref(obj):
        if isinstance(obj, Remote):
            return obj._doc
        raise BridgeError(f"only data can be passed to the student's code, not {type(obj).__name__}")

    def start_cell(self, seconds=None):
        self.deadline = time.monotonic() + (self.timeout if seconds is None else float(seconds))

    def request(self, request):
        if self.client is None:
            raise StudentCodeError("the student's kernel is not running")
        text = json.dumps(request)
        expression = f"__import__('sys').modules['_coursekit_bridge'].AGENT.handle({text!r})"
        client = self.client
        msg_id = client.execute("", silent=True, store_history=False, allow_stdin=False,
                                user_expressions={"r": expression})
        deadline = self.deadline or (time.monotonic() + self.timeout)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._interrupt(msg_id)
                raise TimeoutError(f"the student's code did not finish within the {self.timeout:g} s limit")
            try:
                reply = client.get_shell_msg(timeout=min(remaining, 5.0))
            except Exception:  # queue.Empty: keep waiting until the deadline
                continue
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                break
        return self._result(reply)

    def _interrupt(self, msg_id):
        with _suppress():
            msg = self.client.session.msg("interrupt_request", content={})
            self.client.control_channel.send(msg)
            end = time.monotonic() + 3
            while time.monotonic() < end:
                try:
                    reply = self.client.get_shell_msg(timeout=0.5)
                except Exception:
                    continue
                if reply.get("parent_header", {}).get("msg_id") == msg_id:
                    break

    def _result(self, reply):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                content = reply["content"]
                if content.get("status") != "ok":
                    raise StudentCodeError("the student's kernel could not answer")
                data = content["user_expressions"]["r"]
                if data.get("status") != "ok":
                    raise StudentCodeError("the student's kernel could not answer")
                doc = data["data"]["application/json"]["doc"]
            except (KeyError, TypeError, AttributeError):
                raise StudentCodeError("the student's kernel sent a malformed answer") from None
            if not isinstance(doc, list) or not doc:
                raise StudentCodeError("the student's kernel sent a malformed answer")
            if doc[0] == "error":
                name = doc[1] if isinstance(doc[1], str) else "Exception"
                message = doc[2][:500] if isinstance(doc[2], str) else ""
                cls = _BUILTIN_ERRORS.get(name)
                if cls is not None and cls not in (AssertionError,):
                    raise cls(message)
                raise StudentCodeError(f"{name[:80]}: {message}")
            if doc[0] != "ok" or len(doc) != 2:
                raise StudentCodeError("the student's kernel sent a malformed answer")
            try:
                return decode(doc[1], lambda d: Remote(self, d))
            except BridgeError as exc:
                raise StudentCodeError(str(exc)) from None
            except (ValueError, TypeError, OverflowError, RecursionError, MemoryError, KeyError, IndexError):
                raise StudentCodeError("the student's kernel sent a malformed answer") from None

    def fetch(self, namespace, names, imported):
        """Bind ``names`` from the student's kernel into the judge's ``namespace``.

        A name the student did not define is left unbound (the test then fails with
        NameError, as it would have in the student's own kernel).
        """
        for name in names:
            if name in imported and namespace.get(name, _MISSING) is imported[name]:
                del namespace[name]
            imported.pop(name, None)
            try:
                value = self.request(["get", name])
            except NameError:
                continue
            except TimeoutError:
                raise
            except Exception:
                continue
            namespace[name] = value
            imported[name] = value


_MISSING = object()


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], Exception)


def install_judge(namespace, connection_info, timeout):
    """Called once in the judge kernel: returns the object the grader talks to."""
    module = sys.modules[__name__]

    class Judge:
        def __init__(self):
            self.link = Link(connection_info, timeout)
            self.imported = {}

        def connect(self, info):
            self.link.connect(info)
            self.imported.clear()

        def before_cell(self, names, seconds=None):
            self.link.start_cell(seconds)
            self.link.fetch(namespace, names, self.imported)

    module.JUDGE = Judge()
    return module.JUDGE

