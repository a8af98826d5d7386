"""Reading pickled data files without running code from them.

Data files come from the internet, so a pickle is untrusted input: `pickle.load` calls whatever
callable the file names (`os.system` included). `load_data_pickle` admits only what array data
sets need -- containers and scalars, which pickle builds without any callable, plus NumPy's own
array and dtype reconstructors -- and refuses every other global before it is called. Arrays of
Python objects are refused too: their elements would be more pickles.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

# (module, name) pairs a NumPy array needs to unpickle, across NumPy 1.x / 2.x and protocols 2-5
_ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # bytes in a protocol-2 pickle from Python 3 (latin-1 text -> bytes)
})


class UnsafePickle(ValueError):
    """A data file asked for code that a data set never needs; nothing from it was run."""


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickle(f"refers to {module}.{name}, which a data file never needs")


def _check_arrays(obj: Any) -> None:
    """Reject object arrays anywhere in the loaded structure (only numbers and bytes are data)."""
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        raise UnsafePickle("holds an array of Python objects")
    if isinstance(obj, dict):
        for key, value in obj.items():
            _check_arrays(key)
            _check_arrays(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _check_arrays(value)


def load_data_pickle(path: Path, *, name: str, encoding: str = "bytes") -> Any:
    """Unpickle the data file at `path` with only data types admitted. `name` is how errors refer
    to the file (relative to the data set folder, so no server path reaches a user)."""
    data = Path(path).read_bytes()
    try:
        obj = _DataUnpickler(io.BytesIO(data), encoding=encoding).load()
        _check_arrays(obj)
    except UnsafePickle as exc:
        raise UnsafePickle(f"data file {name} is not plain data and was not loaded: it {exc}") from None
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ValueError(f"data file {name} is not a readable pickle: {type(exc).__name__}: {exc}") from None
    return obj
