"""Generic forms over the kind registry: fields from each kind's pydantic model, posted forms back
to JSON bodies, and the service's validation errors placed next to the fields they are about."""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from pydantic import BaseModel

from thinsync.errors import ThinsyncError
from thinsync.model.registry import KindSpec
from thinsync.model.types import valid_name
from thinsync.model.validate import validate_body

# Unique-key labels of the registry (their errors name the label, not the field).
UNIQUE_FIELDS = {"MAC address": "hardware.mac", "card id": "card_id"}
LABELS = {
    "mac": "MAC address",
    "secondary_mac": "Secondary MAC address",
    "card_id": "Card id",
    "app_link": "Application link",
    "every_hours": "Every (hours)",
    "at": "At (HH:MM)",
    "weekdays": "Weekdays (0 = Monday)",
    "ping_timeout_s": "Ping timeout (s)",
    "interval_s": "Interval (s)",
    "pin": "PIN",
}


@dataclass
class Field:
    """One input of a generic form; `name` is the dotted path into the body (options.auto_logon)."""

    name: str
    label: str
    widget: str  # text, number, checkbox, select, checkboxes, list, json, password
    required: bool = False
    optional: bool = False  # may be left empty (nullable, or the model has a default)
    nullable: bool = False  # may be unset (`| None`): selects offer "(none)"
    choices: list[str] = field(default_factory=list)
    ref: str | None = None  # the kind a list or select names
    group: str | None = None  # an optional nested block: all empty means "not set"
    hint: str = ""


@dataclass
class Errors:
    """Field errors by dotted name, plus the ones that belong to no field."""

    fields: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.fields or self.general)

    def add(self, name: str, message: str) -> None:
        self.fields.setdefault(name, message)


def _strip(annotation: Any) -> tuple[Any, bool]:
    """(the bare type, optional?) with Annotated and `| None` removed."""
    optional = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(annotation))
            annotation = args[0] if len(args) == 1 else str
        else:
            return annotation, optional


def _label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " ").capitalize())


def fields_of(spec: KindSpec) -> list[Field]:
    """The form of a kind: every model field but the name and the stored secrets, which become
    their write-only inputs (a password field)."""
    refs = {ref.field: ref.target for ref in spec.refs}
    hidden = spec.hidden_fields()
    out: list[Field] = []
    for secret in spec.secrets:
        out.append(Field(secret.input, _label(secret.input), "password", hint="leave empty to keep the current one"))
    _walk(spec.model, "", None, refs, hidden, out)
    return out


def _walk(
    model: type[BaseModel], prefix: str, group: str | None, refs: dict[str, str], hidden: set[str], out: list[Field]
) -> None:
    for name, info in model.model_fields.items():
        if not prefix and (name == "name" or name in hidden):
            continue
        path = prefix + name
        bare, optional = _strip(info.annotation)
        required = info.is_required()
        origin = typing.get_origin(bare)
        if isinstance(bare, type) and issubclass(bare, BaseModel):
            _walk(bare, path + ".", path if optional else group, refs, hidden, out)
            continue
        f = Field(
            path,
            _label(name),
            "text",
            required=required,
            optional=optional or not required,
            nullable=optional,
            group=group,
        )
        if bare is bool:
            f.widget = "checkbox"
        elif bare is int:
            f.widget = "number"
        elif origin is Literal:
            f.widget = "select"
            f.choices = [str(v) for v in typing.get_args(bare)]
        elif origin is list:
            item, _ = _strip(typing.get_args(bare)[0])
            if typing.get_origin(item) is Literal:
                f.widget = "checkboxes"
                f.choices = [str(v) for v in typing.get_args(item)]
            elif item in (str, int):
                f.widget = "list"
                f.ref = refs.get(path)
                f.hint = "separate with commas; the order counts" if f.ref else "separate with commas"
            else:
                f.widget = "json"
                f.hint = "JSON"
        elif bare is str:
            f.ref = refs.get(path)
            if f.ref:
                f.widget = "select"
        else:
            f.widget = "json"
            f.hint = "JSON"
        out.append(f)


def defaults(model: type[BaseModel]) -> dict[str, Any]:
    """A new object's default values (what the model fills in when a field is left out)."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if info.is_required():
            continue
        value = info.get_default(call_default_factory=True)
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json")
        if value is not None:
            out[name] = value
    return out


def value_at(body: dict[str, Any], path: str) -> Any:
    value: Any = body
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def display(f: Field, body: dict[str, Any]) -> Any:
    """The value to show in a field's input."""
    value = value_at(body, f.name)
    if f.widget == "list":
        return ", ".join(str(v) for v in value or [])
    if f.widget == "json":
        return "" if value is None else json.dumps(value, indent=1)
    if f.widget == "checkboxes":
        return [str(v) for v in value or []]
    if f.widget == "password":
        return ""
    return "" if value is None else value


def _set(body: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        body = body.setdefault(part, {})
    body[parts[-1]] = value


def _literal_value(f: Field, text: str, model_choices: list[Any]) -> Any:
    for choice in model_choices:
        if str(choice) == text:
            return choice
    return text


def parse(spec: KindSpec, form: Any, errors: Errors, *, patch: bool) -> dict[str, Any]:
    """The JSON body a posted form describes. For a patch, empty optional fields become null
    (removed); for a create they are left out so the model's defaults apply."""
    body: dict[str, Any] = {}
    empty_groups: dict[str, bool] = {}
    for f in fields_of(spec):
        raw = form.getlist(f.name) if f.widget == "checkboxes" else form.get(f.name)
        text = raw.strip() if isinstance(raw, str) else raw
        value: Any
        if f.widget == "password":
            if text:
                body[f.name] = text
            continue
        if f.widget == "checkbox":
            value = raw is not None
        elif f.widget == "checkboxes":
            value = list(raw)
        elif not text:
            value = None
        elif f.widget == "number":
            try:
                value = int(text)
            except ValueError:
                errors.add(f.name, "must be a whole number")
                continue
        elif f.widget == "list":
            parts = [p.strip() for p in text.split(",") if p.strip()]
            if _is_int_list(spec, f.name):
                try:
                    value = [int(p) for p in parts]
                except ValueError:
                    errors.add(f.name, "must be whole numbers separated by commas")
                    continue
            else:
                value = parts
        elif f.widget == "json":
            try:
                value = json.loads(text)
            except ValueError:
                errors.add(f.name, "is not valid JSON")
                continue
        elif f.widget == "select":
            value = _literal_value(f, text, _choices_of(spec, f.name))
        else:
            value = text
        if f.group is not None:
            empty = value in (None, False, [])
            empty_groups[f.group] = empty_groups.get(f.group, True) and empty
        if value is None:
            if patch and f.optional and f.group is None:
                _set(body, f.name, None)
            continue
        _set(body, f.name, value)
    for group, empty in empty_groups.items():
        if empty:
            parts = group.split(".")
            holder = body
            for part in parts[:-1]:
                holder = holder.get(part, {})
            if patch:
                holder[parts[-1]] = None
            else:
                holder.pop(parts[-1], None)
    return body


def _model_field(spec: KindSpec, path: str) -> Any:
    model: Any = spec.model
    annotation: Any = None
    for part in path.split("."):
        info = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if info is None:
            return None
        annotation, _ = _strip(info.annotation)
        model = annotation
    return annotation


def _choices_of(spec: KindSpec, path: str) -> list[Any]:
    annotation = _model_field(spec, path)
    return list(typing.get_args(annotation)) if typing.get_origin(annotation) is Literal else []


def _is_int_list(spec: KindSpec, path: str) -> bool:
    annotation = _model_field(spec, path)
    return typing.get_origin(annotation) is list and _strip(typing.get_args(annotation)[0])[0] is int


def check(spec: KindSpec, name: str, body: dict[str, Any], errors: Errors) -> None:
    """The model's own complaints about a form that already has input errors, so that every field's
    error shows at once (fields that failed to parse keep their first message)."""
    data = dict(body)
    for secret in spec.secrets:
        if data.pop(secret.input, None) is not None or secret.stored in required_fields(spec):
            data[secret.stored] = "0" * 40  # a placeholder: hashes are the service's business
    try:
        validate_body(spec, name if valid_name(name) else "x", data)
    except ThinsyncError as exc:
        place(exc, [f.name for f in fields_of(spec)], errors)


def required_fields(spec: KindSpec) -> set[str]:
    return {n for n, info in spec.model.model_fields.items() if info.is_required()}


def place(exc: ThinsyncError, names: list[str], errors: Errors) -> None:
    """Put a service error next to the field it names (the longest matching field path), else on
    the form as a whole."""
    items = exc.details.get("fields") if isinstance(exc.details.get("fields"), list) else None
    unique = exc.details.get("field")
    if items is None and isinstance(unique, str) and unique in UNIQUE_FIELDS and UNIQUE_FIELDS[unique] in names:
        items = [{"field": UNIQUE_FIELDS[unique], "message": exc.message}]
    if not items:
        errors.general.append(exc.message)
        return
    for item in items:
        where = str(item.get("field", ""))
        message = str(item.get("message", "is not valid"))
        target = where if where in names else _named_in(message, where, names) or match_field(where, names)
        if target is None:
            errors.general.append(f"{where}: {message}" if where and where != "body" else message)
        else:
            errors.add(target, message)


def _named_in(message: str, where: str, names: list[str]) -> str | None:
    """A whole-object or whole-block error whose sentence starts with a field's name ("at '25:99' is
    not a time of day", "secondary_mac must differ from mac") belongs to that field."""
    word = message.split(" ", 1)[0].strip("'\"`:,")
    scope = "" if where in ("", "body") else where + "."
    for name in names:
        if (name == scope + word) or (not scope and name.split(".")[-1] == word and name == word):
            return name
    return None


def match_field(where: str, names: list[str]) -> str | None:
    """The form field an error path like `display_servers.1` or `hardware` belongs to."""
    parts = [p for p in where.split(".") if p]
    while parts:
        candidate = ".".join(parts)
        if candidate in names:
            return candidate
        inside = [n for n in names if n.startswith(candidate + ".")]
        if inside:
            return inside[0]
        parts.pop()
    return None
