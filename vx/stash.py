"""Typed per-run storage for plugins (like pytest's ``Stash``): ``config.stash[KEY]``."""

from __future__ import annotations

from typing import Generic, TypeVar, cast, final, overload

__all__ = ["Stash", "StashKey"]

T = TypeVar("T")
D = TypeVar("D")


@final
class StashKey(Generic[T]):
    """A key of :class:`Stash` whose values have type ``T``; create one per piece of state at
    module level: ``STORE = vx.StashKey[LocalCache]()``. Keys compare by identity, so two
    plugins never collide."""

    __slots__ = ()


@final
class Stash:
    """Per-run state of plugins (``config.stash``), typed by its keys."""

    __slots__ = ("_data",)

    def __init__(self) -> None:
        self._data: dict[StashKey[object], object] = {}

    def __setitem__(self, key: StashKey[T], value: T) -> None:
        self._data[cast("StashKey[object]", key)] = value

    def __getitem__(self, key: StashKey[T]) -> T:
        return cast(T, self._data[cast("StashKey[object]", key)])

    @overload
    def get(self, key: StashKey[T]) -> T | None: ...
    @overload
    def get(self, key: StashKey[T], default: D) -> T | D: ...
    def get(self, key: StashKey[T], default: object = None) -> object:
        """The value of ``key``, or ``default`` when it is not set."""
        return self._data.get(cast("StashKey[object]", key), default)

    def setdefault(self, key: StashKey[T], default: T) -> T:
        """The value of ``key``, set to ``default`` first when it is not set."""
        return cast(T, self._data.setdefault(cast("StashKey[object]", key), default))

    @overload
    def pop(self, key: StashKey[T]) -> T | None: ...
    @overload
    def pop(self, key: StashKey[T], default: D) -> T | D: ...
    def pop(self, key: StashKey[T], default: object = None) -> object:
        """Remove ``key`` and return its value, or ``default`` when it is not set."""
        return self._data.pop(cast("StashKey[object]", key), default)

    def __delitem__(self, key: StashKey[T]) -> None:
        del self._data[cast("StashKey[object]", key)]

    def __contains__(self, key: StashKey[T]) -> bool:
        return cast("StashKey[object]", key) in self._data

    def __len__(self) -> int:
        return len(self._data)
