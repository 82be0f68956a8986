"""``kind = "mcp"``: a real stdio MCP server (``mcp-server-time``) and a real Streamable HTTP one (the SDK's
MCPServer on a loopback uvicorn) seen as aifab tools through the official client."""

from __future__ import annotations

import sys

import psutil
import pytest

from aifab.config import McpToolSettings, load_settings
from aifab.errors import ConfigError
from aifab.testing.server import ThreadedServer
from aifab.testing.tools import ToolConformance
from aifab.tools import Toolbox, ToolFailed, ToolRefused
from aifab.tools.connectors.mcp import open_mcp, tool_name

TIME_SERVER = [sys.executable, "-m", "mcp_server_time"]


def time_settings(**extra) -> McpToolSettings:
    return McpToolSettings(kind="mcp", command=TIME_SERVER, **extra)


class TestMcpTimeServer(ToolConformance):
    good_arguments = {"timezone": "UTC"}
    bad_arguments = {"timezone": 5}

    @pytest.fixture
    async def tool(self):
        (tool,) = await open_mcp("time", time_settings(tools=["get_current_time"]))
        yield tool
        await tool.aclose()


async def test_the_servers_tools_keep_their_description_and_schema_and_answer():
    tools = await open_mcp("time", time_settings())
    box = Toolbox(tools)
    try:
        assert sorted(box.tools) == ["time-convert_time", "time-get_current_time"]
        spec = box.tools["time-get_current_time"].spec
        assert "timezone" in spec.description.lower() and spec.parameters["required"] == ["timezone"]
        result = await box.call("time-get_current_time", {"timezone": "UTC"})
        assert result.data["timezone"] == "UTC" and '"timezone": "UTC"' in result.text
        # the server's own error comes back as the tool's error, for the model to correct
        with pytest.raises(ToolRefused, match="Invalid timezone.*Nowhere/Land"):
            await box.call("time-get_current_time", {"timezone": "Nowhere/Land"})
    finally:
        await box.aclose()
    with pytest.raises(ToolFailed, match="has stopped"):
        await tools[0].call({"timezone": "UTC"})


def _time_servers() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "mcp_server_time" in " ".join(p.cmdline())]


async def test_closing_ends_the_server_process():
    tools = await open_mcp("time", time_settings())
    assert len(_time_servers()) == 1
    await Toolbox(tools).aclose()
    assert _time_servers() == []


async def test_a_server_that_cannot_start_is_a_config_error_naming_the_entry(tmp_path):
    for command in ([sys.executable, "-c", "import sys; sys.exit(3)"], ["/nonexistent/mcp-server"]):
        settings = load_settings(data_dir=tmp_path, tools={"broken": {"kind": "mcp", "command": command}})
        with pytest.raises(ConfigError, match="tool 'broken' \\(mcp\\) cannot start"):
            await Toolbox.open(settings)
    with pytest.raises(ConfigError, match="no tool 'clock'.*get_current_time"):
        await open_mcp("time", time_settings(tools=["clock"]))
    assert _time_servers() == []  # the one that did start was stopped again


def test_settings_need_exactly_one_transport(tmp_path):
    for entry in ({"kind": "mcp"}, {"kind": "mcp", "command": ["x"], "url": "http://127.0.0.1:1/mcp"}):
        with pytest.raises(ConfigError, match="exactly one of command"):
            load_settings(data_dir=tmp_path, tools={"m": entry})


def test_tool_names_are_what_openai_accepts():
    assert tool_name("kb", "search.docs v2") == "kb-search_docs_v2"
    assert len(tool_name("kb", "x" * 100)) == 64


# --- Streamable HTTP ------------------------------------------------------------------------------

TOKEN = "s3cret-token"


def _http_server():
    from mcp.server import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer("calc")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def divide(a: float, b: float) -> float:
        """Divide a by b."""
        if b == 0:
            raise ToolError("cannot divide by zero")  # a message meant for the caller
        return a / b

    inner = server.streamable_http_app(json_response=True)

    async def app(scope, receive, send):  # a server behind a Bearer token, as a real deployment is
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != f"Bearer {TOKEN}".encode():
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"no"})
            return
        await inner(scope, receive, send)

    return app


@pytest.fixture(scope="module")
def calc_url():
    with ThreadedServer(_http_server()) as server:
        yield f"{server.url}/mcp"


async def test_a_streamable_http_server_with_a_token(calc_url, monkeypatch):
    monkeypatch.setenv("CALC_TOKEN", TOKEN)
    box = Toolbox(await open_mcp("calc", McpToolSettings(kind="mcp", url=calc_url, api_key_env="CALC_TOKEN")))
    try:
        assert sorted(box.tools) == ["calc-add", "calc-divide"]
        result = await box.call("calc-add", {"a": 2, "b": 3})
        assert result.text == "5" and result.data == {"result": 5}
        with pytest.raises(ToolRefused, match="cannot divide by zero"):
            await box.call("calc-divide", {"a": 1, "b": 0})
    finally:
        await box.aclose()


async def test_a_wrong_token_or_no_server_is_a_config_error(calc_url, monkeypatch):
    monkeypatch.setenv("CALC_TOKEN", "wrong")
    with pytest.raises(ConfigError, match="tool 'calc' \\(mcp\\) cannot start"):
        await open_mcp("calc", McpToolSettings(kind="mcp", url=calc_url, api_key_env="CALC_TOKEN"))
    with pytest.raises(ConfigError, match="environment variable NO_SUCH_VAR is not set"):
        await open_mcp("calc", McpToolSettings(kind="mcp", url=calc_url, api_key_env="NO_SUCH_VAR"))
    with pytest.raises(ConfigError, match="cannot start"):
        await open_mcp("calc", McpToolSettings(kind="mcp", url="http://127.0.0.1:9/mcp", start_timeout_s=5))
