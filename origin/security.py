"""Response headers every answer carries, and the strict policy of the web page.

Set by the origin rather than by nginx so that cached results keep them (nginx stores the
origin's headers with the body) and `ocr-origin serve` without nginx is just as strict.
"""
from __future__ import annotations

import secrets

from flask import Flask, Response, g

# JSON, images and errors: nothing in them may run, frame or be sniffed into HTML.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"


def page_csp(nonce: str) -> str:
    """The web page: its own scripts and styles (inline ones only with this request's nonce),
    images from results and local previews (blob:/data:), requests to this origin only."""
    return ("default-src 'self'; "
            f"script-src 'self' 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'; "
            "img-src 'self' blob: data:; connect-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def csp_nonce() -> str:
    """A fresh nonce per request, for templates: `<script nonce="{{ csp_nonce() }}">`."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return str(g.csp_nonce)


def init_app(app: Flask) -> None:
    app.jinja_env.globals["csp_nonce"] = csp_nonce

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        if resp.mimetype == "text/html":
            resp.headers.setdefault("Content-Security-Policy", page_csp(csp_nonce()))
        else:
            resp.headers.setdefault("Content-Security-Policy", API_CSP)
        return resp
