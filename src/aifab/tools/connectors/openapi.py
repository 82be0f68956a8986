"""``kind = "openapi"``: selected operations of an OpenAPI 3 document, each a tool named ``NAME-operationId``.

A tool's arguments are the operation's path, query and header parameters by name, plus ``body`` for a JSON
request body; its schema is built from the document with local ``$ref``s inlined (OpenAPI 3.0's
``nullable`` and boolean ``exclusiveMinimum``/``exclusiveMaximum`` turned into JSON Schema). What a model
cannot be given faithfully is a :class:`ConfigError` naming the operation at start-up, rather than a tool
that sends something else: cookie parameters, ``content``-typed or object parameters, non-default
serialisation styles, non-JSON bodies, external or recursive ``$ref``s.

Calls go through the SSRF guard (:mod:`aifab.tools.ssrf`) to ``base_url`` only (its host is the guard's
``allow_hosts``, so a redirect elsewhere is refused), with the API key from ``api_key_env`` in
``auth_header``. Path parameters are percent-encoded whole (``/`` too), and ``.``, ``..`` and empty values
are refused, so an argument cannot climb out of its path segment.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jsonschema
import yaml

from aifab.config import OpenApiToolSettings
from aifab.errors import ConfigError
from aifab.tools.box import NAME, connector
from aifab.tools.protocol import Tool, ToolRefused, ToolResult, ToolSpec
from aifab.tools.ssrf import AddressRefused, GuardedHttp

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def load_document(path: str) -> dict[str, Any]:
    """An OpenAPI 3 document from a JSON or YAML file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"OpenAPI document {path} cannot be read: {exc.strerror}") from None
    try:
        doc = json.loads(text) if path.lower().endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"OpenAPI document {path} is not valid JSON or YAML: {exc}") from None
    if not isinstance(doc, dict) or not str(doc.get("openapi", "")).startswith("3."):
        raise ConfigError(f"{path} is not an OpenAPI 3 document (no 'openapi: 3.x' at its top)")
    return doc


@dataclass
class Parameter:
    name: str
    location: str  # "path", "query" or "header"
    required: bool
    schema: dict[str, Any]
    explode: bool = True


@dataclass
class Operation:
    operation_id: str
    method: str
    path: str
    description: str
    parameters: list[Parameter] = field(default_factory=list)
    body: dict[str, Any] | None = None  # the JSON request body's schema
    body_required: bool = False

    def arguments_schema(self) -> dict[str, Any]:
        properties = {p.name: p.schema for p in self.parameters}
        required = [p.name for p in self.parameters if p.required]
        if self.body is not None:
            properties["body"] = self.body
            if self.body_required:
                required.append("body")
        return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


class _Reader:
    """Reads operations out of one document; every error names the operation it is about."""

    def __init__(self, doc: dict[str, Any], source: str) -> None:
        self.doc, self.source = doc, source
        self.where = ""

    def unsupported(self, what: str) -> ConfigError:
        return ConfigError(f"{self.source}: operation '{self.where}': {what} is not supported")

    def lookup(self, ref: str) -> Any:
        node: Any = self.doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"{self.source}: operation '{self.where}': $ref {ref} points nowhere")
            node = node[part]
        return node

    def inline(self, node: Any, seen: tuple[str, ...] = ()) -> Any:
        """``node`` with every local ``$ref`` replaced by what it points to, as JSON Schema."""
        if isinstance(node, list):
            return [self.inline(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        if isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise self.unsupported(f"the external $ref {ref}")
            if ref in seen:
                raise self.unsupported(f"the recursive $ref {ref}")
            return self.inline(self.lookup(ref), (*seen, ref))
        out = {key: self.inline(value, seen) for key, value in node.items()}
        if isinstance(out.get("nullable"), bool):  # OpenAPI 3.0; 3.1 writes type: [x, "null"]
            if out.pop("nullable") and isinstance(out.get("type"), str):
                out["type"] = [out["type"], "null"]
        for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if isinstance(out.get(bound), bool):  # 3.0's boolean form; JSON Schema takes the number
                if out.pop(bound) and limit in out:
                    out[bound] = out.pop(limit)
        return out

    def find(self, operation_id: str) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
        for path, item in (self.doc.get("paths") or {}).items():
            for method in METHODS:
                op = (item or {}).get(method)
                if isinstance(op, dict) and op.get("operationId") == operation_id:
                    return path, method, item, op
        known = sorted(op.get("operationId", "") for item in (self.doc.get("paths") or {}).values()
                       for m, op in (item or {}).items() if m in METHODS and isinstance(op, dict))
        raise ConfigError(f"{self.source} has no operation '{operation_id}' "
                          f"(operationIds: {', '.join(k for k in known if k) or 'none'})")

    def operation(self, operation_id: str) -> Operation:
        self.where = operation_id
        path, method, item, op = self.find(operation_id)
        text = op.get("summary") or op.get("description") or f"{method.upper()} {path}"
        operation = Operation(operation_id, method.upper(), path, " ".join(str(text).split())[:500])
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for raw in [*(item.get("parameters") or []), *(op.get("parameters") or [])]:  # the operation's win
            param = self.inline(raw)
            merged[(param.get("name"), param.get("in"))] = param
        for param in merged.values():
            operation.parameters.append(self.parameter(param))
        self.request_body(op, operation)
        names = [p.name for p in operation.parameters] + (["body"] if operation.body is not None else [])
        if len(set(names)) != len(names):
            raise self.unsupported("two arguments with the same name (" + ", ".join(names) + ")")
        declared = {p.name for p in operation.parameters if p.location == "path"}
        for segment in path.split("{")[1:]:
            if segment.split("}")[0] not in declared:
                raise ConfigError(f"{self.source}: operation '{operation_id}': path parameter "
                                  f"'{segment.split('}')[0]}' of {path} is not declared")
        schema = operation.arguments_schema()
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ConfigError(f"{self.source}: operation '{operation_id}': its schema is not valid: "
                              f"{exc.message}") from None
        return operation

    def parameter(self, param: dict[str, Any]) -> Parameter:
        name, location = param.get("name"), param.get("in")
        if location not in ("path", "query", "header") or not isinstance(name, str):
            raise self.unsupported(f"the {location} parameter '{name}'")
        if "schema" not in param:
            raise self.unsupported(f"the parameter '{name}' without a schema ('content')")
        schema = dict(param["schema"])
        kind = schema.get("type")
        default_style = {"path": "simple", "query": "form", "header": "simple"}[location]
        if param.get("style", default_style) != default_style:
            raise self.unsupported(f"the parameter '{name}' with style '{param['style']}'")
        if kind == "object" or (isinstance(kind, list) and "object" in kind):
            raise self.unsupported(f"the object parameter '{name}'")
        if param.get("description") and "description" not in schema:
            schema["description"] = param["description"]
        return Parameter(name, location, bool(param.get("required") or location == "path"), schema,
                         bool(param.get("explode", location == "query")))

    def request_body(self, op: dict[str, Any], operation: Operation) -> None:
        body = op.get("requestBody")
        if body is None:
            return
        body = self.inline(body)
        content = body.get("content") or {}
        json_types = [t for t in content if t == "application/json" or t.endswith("+json")]
        if not json_types:
            raise self.unsupported(f"a request body of {', '.join(content) or 'no type'} (only JSON)")
        operation.body = content[json_types[0]].get("schema") or {}
        if body.get("description") and "description" not in operation.body:
            operation.body = {**operation.body, "description": body["description"]}
        operation.body_required = bool(body.get("required"))


def base_url_of(doc: dict[str, Any], settings: OpenApiToolSettings) -> str:
    """``base_url``, or the document's first server with its variables at their defaults."""
    if settings.base_url:
        return settings.base_url.rstrip("/")
    servers = doc.get("servers") or []
    if not servers:
        raise ConfigError(f"{settings.spec} names no servers: set base_url")
    url = str(servers[0].get("url", ""))
    for var, spec in (servers[0].get("variables") or {}).items():
        url = url.replace("{" + var + "}", str(spec.get("default", "")))
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{settings.spec}: its first server '{url}' is not an absolute http(s) URL: set base_url")
    return url.rstrip("/")


class OperationTool:
    """One operation as a tool. The tools of one ``[tools.NAME]`` entry share one HTTP client; closing any
    closes it (the Toolbox closes them all together, at shutdown)."""

    def __init__(self, name: str, operation: Operation, base_url: str, http: GuardedHttp,
                 headers: dict[str, str], description: str | None = None) -> None:
        self.operation, self.base_url, self.http, self.headers = operation, base_url, http, headers
        text = f"{description}: {operation.description}" if description else operation.description
        self._spec = ToolSpec(name, text, operation.arguments_schema())

    @property
    def spec(self) -> ToolSpec:
        return self._spec

    async def call(self, arguments: dict[str, Any]) -> ToolResult:
        op = self.operation
        path = op.path
        params: dict[str, Any] = {}
        headers = {"Accept": "application/json, text/plain;q=0.9, */*;q=0.1"}
        for p in op.parameters:
            if p.name not in arguments or arguments[p.name] is None:
                continue
            value = arguments[p.name]
            if p.location == "path":
                path = path.replace("{" + p.name + "}", self._segment(p.name, value))
            elif p.location == "header":
                headers[p.name] = _scalar(value) if not isinstance(value, list) else ",".join(map(_scalar, value))
            elif isinstance(value, list):
                params[p.name] = [_scalar(v) for v in value] if p.explode else ",".join(map(_scalar, value))
            else:
                params[p.name] = _scalar(value)
        headers.update(self.headers)  # after the header parameters: an argument never replaces the key
        answer = await self.http.fetch(self.base_url + path, method=op.method, params=params, headers=headers,
                                       json=arguments.get("body") if op.body is not None else None)
        meta = {"url": answer.url, "status": answer.status, "content_type": answer.content_type}
        if answer.content_type == "application/json" or answer.content_type.endswith("+json"):
            try:
                data = json.loads(answer.body)
            except ValueError:
                data = None
            else:
                return ToolResult(json.dumps(data, indent=1, ensure_ascii=False), data=data, meta=meta)
        return ToolResult(answer.text().strip() or f"HTTP {answer.status} (no content)", meta=meta)

    def _segment(self, name: str, value: Any) -> str:
        text = ",".join(map(_scalar, value)) if isinstance(value, list) else _scalar(value)
        if text in ("", ".", ".."):
            raise ToolRefused(f"tool '{self._spec.name}': the path parameter '{name}' may not be '{text}'")
        return quote(text, safe="")

    async def aclose(self) -> None:
        await self.http.aclose()


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@connector("openapi")
async def open_openapi(name: str, settings: OpenApiToolSettings) -> list[Tool]:
    doc = load_document(settings.spec)
    reader = _Reader(doc, settings.spec)
    base_url = base_url_of(doc, settings)
    headers: dict[str, str] = {}
    if settings.api_key_env:
        key = os.environ.get(settings.api_key_env)
        if not key:
            raise ConfigError(f"tool '{name}': the environment variable {settings.api_key_env} "
                              "(api_key_env) is not set")
        headers[settings.auth_header] = f"{settings.auth_scheme} {key}" if settings.auth_scheme else key
    operations = [reader.operation(op_id) for op_id in settings.operations]
    for op in operations:
        if not NAME.match(f"{name}-{op.operation_id}"):
            raise ConfigError(f"tool '{name}': operation '{op.operation_id}' makes the tool name "
                              f"'{name}-{op.operation_id}': letters, digits, _ and -, at most 64")
    http = GuardedHttp(allow_networks=settings.allow_networks, allow_hosts=[_host(base_url)],
                       max_bytes=settings.max_bytes, timeout_s=settings.timeout_s)
    try:
        http.policy.check_url(base_url)
    except AddressRefused as exc:
        await http.aclose()
        raise ConfigError(f"tool '{name}': base_url {base_url} {exc.message}") from None
    return [OperationTool(f"{name}-{op.operation_id}", op, base_url, http, headers, settings.description)
            for op in operations]


def _host(url: str) -> str:
    return httpx.URL(url).host
