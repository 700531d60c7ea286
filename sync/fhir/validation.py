"""FHIR R4 model validation (fhir.resources R4B) with a memo of validated top-level elements.

Validating a resource costs one pydantic model per nested complex element, and an import repeats
most of them verbatim (the same ``class`` coding, the same ``subject`` reference thousands of
times). Inside :func:`memoized`, a top-level element whose exact value was validated before, for
the same element of the same resource type, is passed to the model as the validated instance
pydantic accepts as is; everything else, and every resource-level rule (required elements, choice
types, unknown elements), is validated in full every time. Only values that validated are
remembered, so a failure reports the same errors as without the memo.

The memo lives as long as the ``with`` block (one import) and is bounded; it holds resource
content in memory only, like the import itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel

# Keys remembered; a value is kept only when it is seen a second time (most one-off values, such
# as a period, never are). Both maps are dropped when full.
MEMO_KEYS = 20_000
# Longer values are validated every time: keys stay small.
MEMO_KEY_CHARS = 1024

_ModelClass = type[FHIRAbstractModel]
_Key = tuple[str, str, str]
_Learn = list[tuple[str, int | None, _Key]]  # (element, list index or None, key) to remember
_classes: dict[str, _ModelClass] = {}
_field_names: dict[_ModelClass, dict[str, str]] = {}


def model_class(resource_type: str) -> _ModelClass:
    """The R4B model class (looked up once per type; the library's lookup imports each time)."""
    cls = _classes.get(resource_type)
    if cls is None:
        cls = _classes[resource_type] = get_fhir_model_class(resource_type)
    return cls


def _fields(cls: _ModelClass) -> dict[str, str]:
    """JSON element name -> model attribute name (``class`` -> ``class_fhir``)."""
    names = _field_names.get(cls)
    if names is None:
        names = _field_names[cls] = {(f.alias or n): n for n, f in cls.model_fields.items()}
    return names


class ElementMemo:
    """Validated top-level elements (each item of a list on its own) by (resource type, element
    name or ``name[]`` for an item, exact value)."""

    def __init__(self, limit: int = MEMO_KEYS) -> None:
        self.limit = limit
        self._seen: set[_Key] = set()
        self._models: dict[_Key, FHIRAbstractModel] = {}

    def validate(self, resource_type: str, resource: dict[str, Any]) -> None:
        cls = model_class(resource_type)
        data = resource
        learn: _Learn = []
        for name, value in resource.items():
            if isinstance(value, dict):
                known = self._known(resource_type, name, value, learn, None)
                if known is not None:
                    if data is resource:
                        data = dict(resource)
                    data[name] = known
            elif isinstance(value, list):
                items = None
                for i, item in enumerate(value):
                    if not isinstance(item, dict):
                        continue  # primitives (and null placeholders) are cheap to validate
                    known = self._known(resource_type, name, item, learn, i)
                    if known is not None:
                        if items is None:
                            items = list(value)
                        items[i] = known
                if items is not None:
                    if data is resource:
                        data = dict(resource)
                    data[name] = items
        model = cls.model_validate(data)
        if learn:
            self._learn(model, learn)

    def _known(
        self, resource_type: str, name: str, value: dict[str, Any], learn: _Learn, index: int | None
    ) -> FHIRAbstractModel | None:
        """The validated instance of ``value``, or None (then noted in ``learn`` when seen before)."""
        text = repr(value)  # exact for JSON values: 1, 1.0, True and "1" differ
        if len(text) > MEMO_KEY_CHARS:
            return None
        # An item of a list is not the same as the element's whole value: a dict where a list is
        # due must still fail as it would without the memo.
        key = (resource_type, name if index is None else f"{name}[]", text)
        known = self._models.get(key)
        if known is None:
            if key in self._seen:
                learn.append((name, index, key))
            else:
                if len(self._seen) >= self.limit:
                    self._seen.clear()
                self._seen.add(key)
        return known

    def _learn(self, model: FHIRAbstractModel, learn: _Learn) -> None:
        names = _fields(type(model))
        for name, index, key in learn:
            attribute = names.get(name)
            validated = getattr(model, attribute, None) if attribute else None
            if index is not None:
                ok = isinstance(validated, list) and index < len(validated)
                validated = validated[index] if ok else None
            if isinstance(validated, FHIRAbstractModel):
                self._models[key] = validated
        if len(self._models) > self.limit:
            self._models.clear()


_memo: ContextVar[ElementMemo | None] = ContextVar("fhir_element_memo", default=None)


@contextlib.contextmanager
def memoized(memo: ElementMemo) -> Iterator[None]:
    """Validate with ``memo`` inside the block (this thread / task only)."""
    token = _memo.set(memo)
    try:
        yield
    finally:
        _memo.reset(token)


def model_validate(resource_type: str, resource: dict[str, Any]) -> None:
    """Validate ``resource`` against the R4B model of ``resource_type``.

    Raises what pydantic / fhir.resources raise (``ValidationError`` and others); the caller turns
    them into quarantine reasons.
    """
    memo = _memo.get()
    if memo is None:
        model_class(resource_type).model_validate(resource)
    else:
        memo.validate(resource_type, resource)


__all__ = ["ElementMemo", "memoized", "model_class", "model_validate"]
