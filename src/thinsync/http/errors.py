"""Every error leaves as `{"error", "message"}`: ours, FastAPI's validation, unknown routes, methods."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from thinsync.errors import ThinsyncError

log = logging.getLogger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
}


# The wording model.validate.describe_errors uses for the kinds' bodies.
_PLAIN = {"missing": "is required", "extra_forbidden": "is not a known field"}


def error_response(status: int, code: str, message: str, **extra: object) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(ThinsyncError)
    async def _ours(request: Request, exc: ThinsyncError) -> JSONResponse:
        if exc.status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc.message)
        body = exc.to_dict()
        return error_response(exc.status, body.pop("error"), body.pop("message"), **body)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(err.get("type") == "json_invalid" for err in errors):
            # Same answer as the routes that parse their own bodies (deps.json_body): 400, not 422.
            return error_response(400, "bad_request", "the body is not valid JSON; send a JSON object")
        fields = []
        for err in errors:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            fields.append(
                {"field": where, "message": _PLAIN.get(err.get("type", ""), str(err.get("msg", "is not valid")))}
            )
        sentence = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
        return error_response(422, "invalid", f"the request is not valid: {sentence}", fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"there is nothing at {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        response = error_response(exc.status_code, _STATUS_CODES.get(exc.status_code, "error"), message)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "the server hit an unexpected error; it has been logged")
