"""One small registry for every pluggable family: embedders, gender kinds, restorers and
gallery backends (the ``register`` / ``create`` / ``list`` of timm's model registry).

    EMBEDDERS = Registry("embedder")

    @EMBEDDERS.register("dlib-torch")
    class DlibTorchEmbedder(Embedder): ...

    EMBEDDERS.create("dlib-torch")        # an instance; InputError naming the choices if unknown
    EMBEDDERS.list()                      # ["dlib", "dlib-onnx", "dlib-torch"]
    EMBEDDERS["dlib-torch"]               # the registered factory itself

Where a family's entries live in other modules (timm's ``_registry.py`` and ``models/__init__.py``),
the registry sits in a module that imports none of them (``embed/base.py``, ``gallery/base.py``),
each backend imports it and registers, and one loader module imports every backend
(``facesuite.embed``, ``facesuite.gallery.backends``): callers list and create through the loader,
so the registry they see is complete, and no import runs in a circle. A loader whose import fails
(a backend's dependency missing) is not left half-done: importing it again tries again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from facesuite.errors import InputError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Named factories (classes or functions) of one kind, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator (or call on a value): make ``entry`` known as ``name``."""

        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = entry
            return entry

        return add

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the factory registered as ``name``; :class:`InputError` naming the choices if none is."""
        if name not in self._entries:
            raise InputError(f"unknown {self.kind} {name!r}; choose from {', '.join(self._entries)}")
        return self._entries[name](*args, **kwargs)

    def list(self) -> list[str]:
        return list(self._entries)

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
