"""Read the tensors pickled in a ``torch.package`` archive without running any of its code.

A ``.nequip.zip`` holds the reference model as a pickled module tree whose classes live in the
archive's own copies of nequip, allegro and e3nn. Unpickling it the usual way imports and runs
that code. :class:`RestrictedUnpickler` instead resolves each global the pickle names against
a whitelist:

* tensor rebuilding (``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter``), storage
  types and dtypes, which map to small functions of this module;
* ``collections.OrderedDict``, ``set``, ``frozenset`` and ``slice``;
* classes and functions of the model's namespaces (``nequip``, ``allegro``, ``e3nn``,
  ``torch.nn.modules``, ``torch.nn.functional``), which become inert :class:`Stub` records of
  the data pickled for them: no module is imported and no method of theirs is called.

Anything else (``os.system``, ``builtins.eval``, ``torch.package``'s ``reduce_package``
hooks, ...) is refused with :class:`UnsafePickleError`. Tensor bytes are read from the
archive's ``.data/<key>.storage`` records.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from typing import Any

import torch

STUB_NAMESPACES = ("nequip", "allegro", "e3nn", "torch.nn.modules", "torch.nn.functional")
_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "UntypedStorage": torch.uint8,
}  # fmt: skip


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that names a global outside the whitelist, or is otherwise not plain data."""


class Stub:
    """Inert record of an object whose class the archive defines: its name, arguments, state."""

    module = ""
    name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Stub:
        """Record the constructor arguments; nothing of the real class runs."""
        stub = object.__new__(cls)
        stub.args, stub.state = args, None
        return stub

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<stub {self.module}.{self.name}>"


class _StorageType:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, *_):
    if not isinstance(storage, torch.Tensor):
        raise UnsafePickleError(f"A tensor is rebuilt from {type(storage).__name__}, not storage.")
    return storage.as_strided(tuple(size), tuple(stride), int(offset)).clone()


def _rebuild_parameter(data, requires_grad=False, hooks=None, *_):
    return data


def _stub_class(module: str, name: str, cache: dict[tuple[str, str], type]) -> type:
    if (module, name) not in cache:
        cache[module, name] = type(name, (Stub,), {"module": module, "name": name})
    return cache[module, name]


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickle one record of a ``torch.package`` zip archive with whitelisted globals only.

    Parameters
    ----------
    archive : zipfile.ZipFile
        The open archive.
    root : str
        The archive's top-level folder (``<name>.nequip``).
    record : str
        The pickle's path inside ``root``, e.g. ``model/eager_model.pkl``.
    """

    _SAFE = {
        ("collections", "OrderedDict"): OrderedDict, ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset, ("builtins", "slice"): slice,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    }  # fmt: skip

    def __init__(self, archive: zipfile.ZipFile, root: str, record: str):
        self.archive, self.root, self.record = archive, root, record
        super().__init__(io.BytesIO(archive.read(f"{root}/{record}")))
        self._stubs: dict[tuple[str, str], type] = {}
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        """Resolve a global through the whitelist (never by importing ``module``)."""
        if (module, name) in self._SAFE:
            return self._SAFE[module, name]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if any(module == space or module.startswith(space + ".") for space in STUB_NAMESPACES):
            return _stub_class(module, name, self._stubs)
        raise UnsafePickleError(
            f"{self.record} refers to the global {module}.{name}, which is not model data "
            f"(allowed: tensors, dtypes, OrderedDict/set/slice and classes of "
            f"{', '.join(STUB_NAMESPACES)}). The archive was altered or holds more than a "
            "model; it is refused rather than run."
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        """Return the flat tensor of a ``("storage", type, key, location, numel)`` record."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            kind = pid[0] if isinstance(pid, tuple) and pid else type(pid).__name__
            raise UnsafePickleError(
                f"{self.record} asks for a {kind!r} object; only tensor storages are read "
                "(torch.package 'reduce_package' hooks would run archive code)."
            )
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickleError(f"{self.record} names an unknown storage type.")
        key = str(key)
        if key not in self._storages:
            raw = self.archive.read(f"{self.root}/.data/{key}.storage")
            itemsize = torch.empty((), dtype=storage_type.dtype).element_size()
            if storage_type.dtype is not torch.uint8 and len(raw) != int(numel) * itemsize:
                raise UnsafePickleError(
                    f"Storage {key} of {self.record} has {len(raw)} bytes; {numel} values of "
                    f"{storage_type.dtype} need {int(numel) * itemsize}. The archive is damaged."
                )
            self._storages[key] = (
                torch.frombuffer(bytearray(raw), dtype=storage_type.dtype)
                if raw
                else torch.empty(0, dtype=storage_type.dtype)
            )
        return self._storages[key]


def module_tensors(module: Stub, prefix: str = "") -> dict[str, torch.Tensor]:
    """Return the ``state_dict`` of a stubbed ``torch.nn.Module`` tree (persistent buffers only).

    Parameters
    ----------
    module : Stub
        The root, e.g. a packaged ``ModuleDict``.
    prefix : str
        Put before every name.
    """
    state = module.state if isinstance(module, Stub) else None
    if not isinstance(state, dict) or not isinstance(state.get("_modules"), dict):
        raise UnsafePickleError(f"{prefix or 'the root'} is not a pickled torch module.")
    tensors = {}
    skip = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if isinstance(value, torch.Tensor) and name not in skip:
                tensors[prefix + name] = value
    for name, child in state["_modules"].items():
        if child is not None:
            tensors.update(module_tensors(child, f"{prefix}{name}."))
    return tensors
