"""Checks HTTP answers against the OpenAPI document the origin serves (/openapi.json).

Shared by the unit contract test (Flask test client) and the e2e one (through nginx)."""
from __future__ import annotations

import re
from typing import Any, Callable

from jsonschema import Draft202012Validator


class Contract:
    """Checks responses against a spec; records which (method, path template) it saw."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.seen: set[tuple[str, str, str]] = set()
        self._templates = [(re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(p)) + "$"), p)
                           for p in spec["paths"]]

    def template(self, path: str) -> str:
        path = path.split("?", 1)[0]
        matches = [t for rx, t in self._templates if rx.match(path)]
        assert matches, f"{path} is not in the OpenAPI document"
        return min(matches, key=lambda t: t.count("{"))  # /ocr/batch before /ocr/{x} style clashes

    def check(self, method: str, path: str, status: int, content_type: str | None,
              headers: dict[str, str], body: Callable[[], Any]) -> None:
        tpl = self.template(path)
        op = self.spec["paths"][tpl].get(method.lower())
        assert op is not None, f"{method} {tpl} is not documented"
        doc = op["responses"].get(str(status))
        assert doc is not None, f"{method} {path} answered {status}, not documented ({sorted(op['responses'])})"
        self.seen.add((method.upper(), tpl, str(status)))
        for name, h in doc.get("headers", {}).items():
            if name in headers and "enum" in h["schema"]:
                assert headers[name] in h["schema"]["enum"], f"{name}: {headers[name]}"
        content = doc.get("content")
        if not content:
            return
        mimetype = (content_type or "").split(";")[0].strip()
        assert mimetype in content or "*/*" in content or any(
            c.endswith("/*") and mimetype.startswith(c[:-1]) for c in content), \
            f"{method} {path} {status}: {mimetype} not in {sorted(content)}"
        if mimetype == "application/json":
            schema = {**content[mimetype]["schema"], "components": self.spec["components"]}
            errors = sorted(Draft202012Validator(schema).iter_errors(body()), key=str)
            assert not errors, f"{method} {path} {status}: " + "; ".join(
                f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])

    def operations(self) -> set[tuple[str, str]]:
        return {(m.upper(), p) for p, ops in self.spec["paths"].items() for m in ops}
