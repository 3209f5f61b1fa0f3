"""`record`: the store's immutable records (states, change sets, items), cheap to build.

A frozen dataclass sets each field through `object.__setattr__` in `__init__`: 1.85 µs for a
nine-field change set against 0.23 µs for a plain slotted one (measured on the benchmark
machine), and replication builds several records per change. So a record is a slotted dataclass
that the type checker treats as frozen (`dataclass_transform(frozen_default=True)`: assigning a
field is a type error) while the runtime skips the per-field guard. Records are never mutated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[T]) -> type[T]:
    return dataclass(slots=True)(cls)
