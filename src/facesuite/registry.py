"""One small registry for every pluggable family: embedders, gender kinds, restorers and
gallery backends (the ``register`` / ``create`` / ``list`` of timm's model registry).

    EMBEDDERS = Registry("embedder")

    @EMBEDDERS.register("dlib-torch")
    class DlibTorchEmbedder(Embedder): ...

    EMBEDDERS.create("dlib-torch")        # an instance; InputError naming the choices if unknown
    EMBEDDERS.list()                      # ["dlib", "dlib-onnx", "dlib-torch"]
    EMBEDDERS["dlib-torch"]               # the registered factory itself
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from facesuite.errors import InputError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Named factories (classes or functions) of one kind, in registration order.

    ``load`` is called once before the first lookup: it imports the modules that register
    themselves, so importing facesuite does not import every backend.
    """

    def __init__(self, kind: str, load: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._load = load

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
        self._ensure_loaded()
        if name not in self._entries:
            raise InputError(f"unknown {self.kind} {name!r}; choose from {', '.join(self._entries)}")
        return self._entries[name](*args, **kwargs)

    def list(self) -> list[str]:
        self._ensure_loaded()
        return list(self._entries)

    def __getitem__(self, name: str) -> T:
        self._ensure_loaded()
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        self._ensure_loaded()
        return iter(self._entries)

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)

    def _ensure_loaded(self) -> None:
        if self._load is not None:
            load, self._load = self._load, None
            load()
