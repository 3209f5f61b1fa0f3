"""Generic configuration routes: one set per kind, generated from the kind registry."""

# No `from __future__ import annotations`: FastAPI must see the per-kind dependency objects
# created in the closures below, not their names.

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from thinsync.auth.service import Principal
from thinsync.config.service import MAX_PAGE, Written
from thinsync.http.deps import PATCH_TYPES, authorize, etag, if_match, json_body, require, services
from thinsync.http.openapi import body_spec
from thinsync.http.routing import PrefixRoute
from thinsync.model.registry import ACCOUNT_KINDS, KINDS, KindSpec
from thinsync.model.validate import SINGLETON_NAME

Reader = Annotated[Principal, Depends(require("read"))]


def _a(title: str) -> str:
    return f"an {title}" if title[0] in "aeiou" else f"a {title}"


def _written(result: Written, created_status: int = 201) -> JSONResponse:
    obj = result.object or {}
    status = created_status if result.created else 200
    return JSONResponse(obj, status_code=status, headers=etag(str(obj.get("version", ""))))


def _add_collection(router: APIRouter, spec: KindSpec) -> None:
    base = f"/api/v1/{spec.name}"
    op = spec.name.replace("-", "_")
    write_perm = "admin" if spec.name in ACCOUNT_KINDS else "write"

    @router.get(base, operation_id=f"list_{op}", tags=[spec.name], summary=f"List {spec.title}s")
    async def list_objects(
        request: Request,
        _: Reader,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = MAX_PAGE,
        cursor: Annotated[str | None, Query(max_length=256)] = None,
    ) -> Any:
        return await services(request).config.list_page(spec.name, cursor, limit)

    @router.get(f"{base}/{{name}}", operation_id=f"get_{op}", tags=[spec.name], summary=f"Read {_a(spec.title)}")
    async def get_object(request: Request, name: str) -> Any:
        await authorize(request, "read")
        obj = await services(request).config.get(spec.name, name)
        return JSONResponse(obj, headers=etag(obj["version"]))

    @router.put(
        f"{base}/{{name}}",
        operation_id=f"put_{op}",
        tags=[spec.name],
        summary=f"Create or replace {_a(spec.title)}",
        openapi_extra=body_spec(spec),
        status_code=200,
    )
    async def put_object(request: Request, name: str) -> Any:
        who = await authorize(request, write_perm)
        body = await json_body(request)
        result = await services(request).config.put(who.name, spec.name, name, body, if_match(request))
        return _written(result)

    @router.patch(
        f"{base}/{{name}}",
        operation_id=f"patch_{op}",
        tags=[spec.name],
        summary=f"Change some fields of {_a(spec.title)} (JSON merge patch)",
        openapi_extra=body_spec(spec, patch=True),
    )
    async def patch_object(request: Request, name: str) -> Any:
        who = await authorize(request, write_perm)
        body = await json_body(request, PATCH_TYPES)
        result = await services(request).config.patch(who.name, spec.name, name, body, if_match(request))
        return _written(result, created_status=200)

    @router.delete(
        f"{base}/{{name}}",
        operation_id=f"delete_{op}",
        tags=[spec.name],
        summary=f"Delete {_a(spec.title)}",
        status_code=204,
    )
    async def delete_object(request: Request, name: str) -> Response:
        who = await authorize(request, write_perm)
        await services(request).config.delete(who.name, spec.name, name, if_match(request))
        return Response(status_code=204)


def _add_singleton(router: APIRouter, spec: KindSpec) -> None:
    path = f"/api/v1/{spec.name}"
    op = spec.name.replace("-", "_")
    Writer = Annotated[Principal, Depends(require("write"))]

    @router.get(path, operation_id=f"get_{op}", tags=[spec.name], summary=f"Read the {spec.title}")
    async def get_singleton(request: Request, _: Reader) -> Any:
        obj = await services(request).config.get(spec.name)
        return JSONResponse(obj, headers=etag(obj["version"]))

    @router.put(
        path,
        operation_id=f"put_{op}",
        tags=[spec.name],
        summary=f"Replace the {spec.title}",
        openapi_extra=body_spec(spec),
    )
    async def put_singleton(request: Request, who: Writer) -> Any:
        body = await json_body(request)
        result = await services(request).config.put(who.name, spec.name, SINGLETON_NAME, body, if_match(request))
        return _written(result, created_status=200)

    @router.patch(
        path,
        operation_id=f"patch_{op}",
        tags=[spec.name],
        summary=f"Change some of the {spec.title}",
        openapi_extra=body_spec(spec, patch=True),
    )
    async def patch_singleton(request: Request, who: Writer) -> Any:
        body = await json_body(request, PATCH_TYPES)
        result = await services(request).config.patch(who.name, spec.name, SINGLETON_NAME, body, if_match(request))
        return _written(result, created_status=200)


def router(skip: frozenset[str] = frozenset()) -> APIRouter:
    """Routes for every kind, except those another module serves itself (`skip`)."""
    r = APIRouter(route_class=PrefixRoute)
    for spec in KINDS.values():
        if spec.name in skip or spec.internal:
            continue
        if spec.singleton:
            _add_singleton(r, spec)
        else:
            _add_collection(r, spec)
    return r
