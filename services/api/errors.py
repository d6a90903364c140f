"""Every error leaves as the contract's JSON: no HTML page, no traceback, no SQL."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from shared.adapters.db import is_momentary
from shared.domain.errors import DomainError, ErrorCode

log = logging.getLogger("inkflow.api")

# Seconds a client should wait before retrying a SERVICE_UNAVAILABLE (a lock timeout is
# 5 s; most waits are over well before).
RETRY_AFTER_SECONDS = 2

_HTTP_CODES = {
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    429: ErrorCode.RATE_LIMITED,
}


def error_response(error: DomainError) -> tuple[Response, int]:
    response = jsonify(error.to_json())
    if error.code == ErrorCode.UNAUTHORIZED:
        response.headers["WWW-Authenticate"] = "Bearer"
    if error.code == ErrorCode.SERVICE_UNAVAILABLE:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response, error.http_status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(error: DomainError) -> tuple[Response, int]:
        return error_response(error)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> tuple[Response, int]:
        status = error.code or 500
        code = _HTTP_CODES.get(status)
        if code is None:
            # 405, 413, 415 ...: the request itself is wrong; keep werkzeug's status.
            code = ErrorCode.VALIDATION_ERROR if status < 500 else ErrorCode.INTERNAL_ERROR
        body = DomainError(code, error.description if status < 500 else None).to_json()
        return jsonify(body), status

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return error_response(DomainError(ErrorCode.INTERNAL_ERROR))

    @app.errorhandler(DBAPIError)
    def _database(error: DBAPIError) -> tuple[Response, int]:
        # A lock or statement timeout, or a database that does not answer just now, is
        # not a bug: the client may retry (nothing half-written stays, the transaction
        # was rolled back).
        if not is_momentary(error):
            return _unexpected(error)
        log.warning("database momentarily unavailable: %s", type(error.orig).__name__)
        return error_response(DomainError(ErrorCode.SERVICE_UNAVAILABLE))

    @app.errorhandler(PoolTimeout)
    def _pool_exhausted(error: PoolTimeout) -> tuple[Response, int]:
        log.warning("no database connection free in time")
        return error_response(DomainError(ErrorCode.SERVICE_UNAVAILABLE))
