"""Request-body schemas for every kind, derived from the models, added to the OpenAPI document."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from thinsync.model.registry import KINDS, KindSpec

REF = "#/components/schemas/{model}"


def input_schema_name(spec: KindSpec) -> str:
    return f"{spec.model.__name__}Input"


def _input_schemas() -> dict[str, Any]:
    public = [spec for spec in KINDS.values() if not spec.internal]
    _, top = models_json_schema([(spec.model, "validation") for spec in public], ref_template=REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    for spec in public:
        schema = copy.deepcopy(schemas[spec.model.__name__])
        properties = schema.setdefault("properties", {})
        required = [r for r in schema.get("required", []) if r != "name"]
        for secret in spec.secrets:
            properties.pop(secret.stored, None)
            properties[secret.input] = {"type": "string", "writeOnly": True, "title": secret.input.title()}
            required = [secret.input if r == secret.stored else r for r in required]
        if spec.singleton:
            properties.pop("name", None)
        properties["version"] = {"type": "string", "description": "ignored on input"}
        schema["required"] = required
        schema["title"] = input_schema_name(spec)
        schemas[input_schema_name(spec)] = schema
    return schemas


def install(app: FastAPI) -> None:
    def custom_openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(title=app.title, version=app.version, routes=app.routes, description=app.description)
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in _input_schemas().items():
            components.setdefault(name, schema)
        app.openapi_schema = document
        return document

    app.openapi = custom_openapi  # type: ignore[method-assign]


def body_spec(spec: KindSpec, patch: bool = False) -> dict[str, Any]:
    """`openapi_extra` for a route that reads the kind's JSON body itself."""
    if patch:
        schema: dict[str, Any] = {"type": "object", "description": f"JSON merge patch of a {spec.title}"}
        content = {"application/json": {"schema": schema}, "application/merge-patch+json": {"schema": schema}}
    else:
        content = {"application/json": {"schema": {"$ref": REF.format(model=input_schema_name(spec))}}}
    return {"requestBody": {"required": True, "content": content}}
