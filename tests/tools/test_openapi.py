"""OpenAPI tools against a tiny real API on loopback (its document written here): schemas from the document,
the key sent, path parameters kept in their segment, errors, and what the connector refuses to build."""

from __future__ import annotations

import json

import pytest
import yaml
from aiohttp import web

from aifab.config import OpenApiToolSettings, load_settings
from aifab.errors import ConfigError
from aifab.testing.loopback import serve
from aifab.testing.tools import ToolConformance
from aifab.tools import Toolbox, ToolFailed, ToolRefused
from aifab.tools.connectors.openapi import open_openapi

KEY = "sekrit-123"
USERS = {"1": {"id": "1", "name": "Ada"}, "2": {"id": "2", "name": "Grace"}, "../admin": {"id": "x", "name": "Eve"}}

DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "Tiny", "version": "1"},
    "servers": [{"url": "http://{host}/api", "variables": {"host": {"default": "api.example.com"}}}],
    "paths": {
        "/users/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {"operationId": "getUser", "summary": "One user by id",
                    "parameters": [{"name": "X-Request-Id", "in": "header", "schema": {"type": "string"}},
                                   {"name": "Authorization", "in": "header", "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "the user"}}},
        },
        "/users": {"get": {
            "operationId": "listUsers", "summary": "Users, the first `limit` of them",
            "parameters": [{"$ref": "#/components/parameters/Limit"},
                           {"name": "tag", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}},
                           {"name": "active", "in": "query", "schema": {"type": "boolean", "nullable": True}}],
            "responses": {"200": {"description": "users"}}}},
        "/notes": {"post": {
            "operationId": "createNote", "summary": "Write a note",
            "requestBody": {"$ref": "#/components/requestBodies/Note"},
            "responses": {"201": {"description": "created"}}}},
        "/upload": {"post": {
            "operationId": "upload", "requestBody": {"content": {"multipart/form-data": {"schema": {}}}},
            "responses": {"200": {"description": "ok"}}}},
        "/tree": {"post": {
            "operationId": "plantTree",
            "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Tree"}}}},
            "responses": {"200": {"description": "ok"}}}},
        "/prefs": {"get": {
            "operationId": "getPrefs",
            "parameters": [{"name": "session", "in": "cookie", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "ok"}}}},
    },
    "components": {
        "parameters": {"Limit": {"name": "limit", "in": "query", "description": "at most this many",
                                 "schema": {"type": "integer", "minimum": 1, "maximum": 100}}},
        "schemas": {
            "Note": {"type": "object", "required": ["title"], "additionalProperties": False,
                     "properties": {"title": {"type": "string"}, "text": {"type": "string", "nullable": True}}},
            "Tree": {"type": "object", "properties": {"children": {"type": "array",
                                                                   "items": {"$ref": "#/components/schemas/Tree"}}}},
        },
        "requestBodies": {"Note": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Note"}}}}},
    },
}


def api(seen: list[web.Request]) -> web.Application:
    """The API the document describes; answers 401 without the key; records each request."""

    @web.middleware
    async def auth(request: web.Request, handler):
        seen.append(request)
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"detail": "no key"}, status=401)
        return await handler(request)

    async def get_user(request: web.Request) -> web.Response:
        user = USERS.get(request.match_info["id"])
        if user is None:
            return web.json_response({"detail": f"no user {request.match_info['id']}"}, status=404)
        return web.json_response(user)

    async def list_users(request: web.Request) -> web.Response:
        limit = int(request.query.get("limit", "10"))
        return web.json_response({"users": list(USERS.values())[:limit], "tags": request.query.getall("tag", []),
                                  "active": request.query.get("active")})

    async def create_note(request: web.Request) -> web.Response:
        return web.json_response({"id": 7, **await request.json()}, status=201)

    async def admin(request: web.Request) -> web.Response:
        return web.json_response({"secret": "admin area"})

    app = web.Application(middlewares=[auth])
    app.router.add_get("/api/users/{id}", get_user)
    app.router.add_get("/api/users", list_users)
    app.router.add_post("/api/notes", create_note)
    app.router.add_get("/api/admin", admin)
    return app


def settings(tmp_path, base: str | None, operations=("getUser", "listUsers", "createNote"), fmt="yaml",
             **extra) -> OpenApiToolSettings:
    spec = tmp_path / f"api.{fmt}"
    spec.write_text(yaml.safe_dump(DOCUMENT) if fmt == "yaml" else json.dumps(DOCUMENT))
    return OpenApiToolSettings(kind="openapi", spec=str(spec), operations=list(operations), base_url=base,
                               api_key_env="TINY_KEY", allow_networks=["127.0.0.1/32"], **extra)


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("TINY_KEY", KEY)


@pytest.fixture
async def server():
    seen: list[web.Request] = []
    async with serve(api(seen)) as base:
        yield f"{base}/api", seen


@pytest.fixture
async def box(tmp_path, key, server):
    box = Toolbox(await open_openapi("tiny", settings(tmp_path, server[0])))
    yield box
    await box.aclose()


class _Operation(ToolConformance):
    operation = ""

    @pytest.fixture
    async def tool(self, tmp_path, key, server):
        tools = await open_openapi("tiny", settings(tmp_path, server[0], operations=[self.operation]))
        yield tools[0]
        await tools[0].aclose()


class TestGetUser(_Operation):
    operation = "getUser"
    good_arguments = {"id": "1"}
    bad_arguments = {"user": "1"}


class TestListUsers(_Operation):
    operation = "listUsers"
    good_arguments = {"limit": 2}
    bad_arguments = {"limit": 0}


class TestCreateNote(_Operation):
    operation = "createNote"
    good_arguments = {"body": {"title": "hello", "text": None}}
    bad_arguments = {"body": {"text": "no title"}}


async def test_tools_are_named_and_described_from_the_document(box):
    assert [s.name for s in box.specs()] == ["tiny-getUser", "tiny-listUsers", "tiny-createNote"]
    listing = box.get("tiny-listUsers").spec
    assert listing.description == "Users, the first `limit` of them"
    assert listing.parameters["properties"]["limit"] == {
        "type": "integer", "minimum": 1, "maximum": 100, "description": "at most this many"}
    note = box.get("tiny-createNote").spec.parameters
    assert note["required"] == ["body"]
    assert note["properties"]["body"]["properties"]["text"]["type"] == ["string", "null"]  # $ref inlined


async def test_calls_send_the_key_and_give_json(box, server):
    _, seen = server
    user = await box.call("tiny-getUser", {"id": "2"})
    assert user.data == {"id": "2", "name": "Grace"} and json.loads(user.text) == user.data
    assert user.meta["status"] == 200 and seen[-1].headers["Authorization"] == f"Bearer {KEY}"
    listed = await box.call("tiny-listUsers", {"limit": 1, "tag": ["a", "b"], "active": False})
    assert listed.data == {"users": [USERS["1"]], "tags": ["a", "b"], "active": "false"}
    note = await box.call("tiny-createNote", {"body": {"title": "hi"}})
    assert note.data == {"id": 7, "title": "hi"} and note.meta["status"] == 201


async def test_header_parameters_are_sent_but_never_replace_the_key(box, server):
    _, seen = server
    user = await box.call("tiny-getUser", {"id": "1", "X-Request-Id": "r-42", "Authorization": "Bearer mine"})
    assert user.data == USERS["1"]
    assert seen[-1].headers["X-Request-Id"] == "r-42" and seen[-1].headers["Authorization"] == f"Bearer {KEY}"


async def test_a_path_parameter_cannot_climb_out_of_its_segment(box, server):
    _, seen = server
    user = await box.call("tiny-getUser", {"id": "../admin"})
    assert user.data == {"id": "x", "name": "Eve"}  # the user whose id is "../admin", not /api/admin
    assert seen[-1].raw_path == "/api/users/..%2Fadmin"
    for climb in ("..", "."):
        with pytest.raises(ToolRefused, match=f"path parameter 'id' may not be '{climb}'"):
            await box.call("tiny-getUser", {"id": climb})
    assert all(r.path != "/api/admin" for r in seen)


async def test_an_error_status_fails_with_the_status_and_the_body(box):
    with pytest.raises(ToolFailed, match='HTTP 404 Not Found: {"detail": "no user 9"}'):
        await box.call("tiny-getUser", {"id": "9"})


async def test_a_wrong_key_is_the_servers_401(tmp_path, server, monkeypatch):
    monkeypatch.setenv("TINY_KEY", "wrong")
    tools = await open_openapi("tiny", settings(tmp_path, server[0], fmt="json"))
    with pytest.raises(ToolFailed, match="HTTP 401"):
        await Toolbox(tools).call("tiny-getUser", {"id": "1"})
    await tools[0].aclose()


async def test_the_key_goes_in_the_configured_header_and_scheme(tmp_path, key, server):
    _, seen = server
    tools = await open_openapi("tiny", settings(tmp_path, server[0], auth_header="X-Api-Key", auth_scheme=""))
    with pytest.raises(ToolFailed, match="401"):  # this API wants Authorization; what was sent is the point
        await tools[0].call({"id": "1"})
    assert seen[-1].headers["X-Api-Key"] == KEY and "Authorization" not in seen[-1].headers
    await tools[0].aclose()


async def test_start_up_errors_name_what_is_wrong(tmp_path, key, monkeypatch):
    base = "http://127.0.0.1:9/api"
    for operation, what in [("upload", "operation 'upload': a request body of multipart/form-data"),
                            ("plantTree", "operation 'plantTree': the recursive \\$ref #/components/schemas/Tree"),
                            ("getPrefs", "operation 'getPrefs': the cookie parameter 'session'"),
                            ("nope", "no operation 'nope' .operationIds: createNote, getPrefs, getUser")]:
        with pytest.raises(ConfigError, match=what):
            await open_openapi("tiny", settings(tmp_path, base, operations=[operation]))
    monkeypatch.delenv("TINY_KEY")
    with pytest.raises(ConfigError, match="environment variable TINY_KEY .api_key_env. is not set"):
        await open_openapi("tiny", settings(tmp_path, base))
    monkeypatch.setenv("TINY_KEY", KEY)
    with pytest.raises(ConfigError, match="127.0.0.1 is a loopback address"):
        await open_openapi("tiny", settings(tmp_path, base).model_copy(update={"allow_networks": []}))
    (tmp_path / "broken.yaml").write_text("openapi: [3.0\n")
    with pytest.raises(ConfigError, match="broken.yaml is not valid JSON or YAML"):
        await open_openapi("tiny", settings(tmp_path, base).model_copy(update={"spec": str(tmp_path / "broken.yaml")}))
    with pytest.raises(ConfigError, match="not an OpenAPI 3 document"):
        (tmp_path / "swagger.yaml").write_text("swagger: '2.0'\n")
        await open_openapi("tiny", settings(tmp_path, base).model_copy(update={"spec": str(tmp_path / "swagger.yaml")}))


async def test_the_documents_server_is_the_default_base_url(tmp_path, key):
    tools = await open_openapi("tiny", settings(tmp_path, None).model_copy(update={"allow_networks": []}))
    assert tools[0].base_url == "http://api.example.com/api"  # type: ignore[attr-defined]
    await tools[0].aclose()


async def test_the_toolbox_opens_openapi_tools_from_config(tmp_path, key, server):
    spec = settings(tmp_path, server[0]).spec
    conf = load_settings(data_dir=tmp_path, tools={"tiny": {
        "kind": "openapi", "spec": spec, "operations": ["getUser"], "base_url": server[0],
        "api_key_env": "TINY_KEY", "allow_networks": ["127.0.0.1/32"]}})
    box = await Toolbox.open(conf)
    assert box.expand(["tiny"]) == ["tiny-getUser"]
    assert (await box.call("tiny-getUser", {"id": "1"})).data == USERS["1"]
    await box.aclose()
