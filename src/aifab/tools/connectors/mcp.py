"""``kind = "mcp"``: the tools of an MCP server, over stdio (``command``) or Streamable HTTP (``url``), through
the official ``mcp`` client.

One session per ``[tools.NAME]`` entry lives for the process. The SDK's transports are anyio context
managers (task groups inside) that must be entered and left by the same task, so one background task
owns them: it opens the session, lists the tools, then waits for :meth:`McpSession.aclose`; calls from
any task go through the session it holds. The server's tools become ``NAME-toolname`` with the server's
own description and input schema; a result with ``isError`` is a :class:`ToolRefused` carrying the
server's text, which the model can read and correct.

Not covered: resources, prompts, sampling and elicitation requests from the server (the client declines
them), and a server that goes away is not restarted (its tools fail with :class:`ToolFailed` until the
process restarts).
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import TYPE_CHECKING, Any

from aifab.config import McpToolSettings
from aifab.errors import ConfigError
from aifab.tools.box import connector
from aifab.tools.protocol import Tool, ToolFailed, ToolRefused, ToolResult, ToolSpec

if TYPE_CHECKING:
    import mcp
    import mcp_types

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
INVALID_PARAMS = -32602  # JSON-RPC: the server refused the arguments (the caller's fault, not the server's)


def tool_name(entry: str, remote: str) -> str:
    """``ENTRY-remote`` in the characters OpenAI accepts, at most 64 of them."""
    return f"{entry}-{_UNSAFE.sub('_', remote)}"[:64]


class McpSession:
    """One MCP client session owned by one background task, from :meth:`start` to :meth:`aclose`."""

    def __init__(self, name: str, settings: McpToolSettings) -> None:
        self.name, self.settings = name, settings
        self.client: mcp.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._listed: asyncio.Future[list[mcp_types.Tool]] | None = None
        self._stop = asyncio.Event()
        self._failure: BaseException | None = None

    async def start(self) -> list[mcp_types.Tool]:
        """Start the server (or connect to it) and list its tools; a :class:`ConfigError` naming the entry
        if it does not answer within ``start_timeout_s``."""
        self._listed = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._own(), name=f"aifab-mcp-{self.name}")
        try:
            async with asyncio.timeout(self.settings.start_timeout_s):
                return await asyncio.shield(self._listed)
        except TimeoutError:
            await self.aclose()
            raise ConfigError(f"tool '{self.name}' (mcp): the server did not answer within "
                              f"{self.settings.start_timeout_s:g} s ({self._where()})") from None
        except ConfigError:
            await self.aclose()
            raise
        except Exception as exc:
            await self.aclose()
            raise ConfigError(f"tool '{self.name}' (mcp) cannot start ({self._where()}): {_reason(exc)}") from exc

    async def _own(self) -> None:
        from mcp import Client

        assert self._listed is not None
        try:
            async with Client(self._transport()) as client:
                tools = await _list_all(client)
                self.client = client
                if not self._listed.done():
                    self._listed.set_result(tools)
                await self._stop.wait()
        except BaseException as exc:  # noqa: BLE001  (kept: start() or the next call reports it)
            self._failure = exc
            if not self._listed.done():
                self._listed.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.client = None

    def _transport(self) -> Any:
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        s = self.settings
        if s.command is not None:
            return stdio_client(StdioServerParameters(command=s.command[0], args=s.command[1:], env=s.env or None))
        assert s.url is not None
        headers = {}
        if s.api_key_env:
            token = os.environ.get(s.api_key_env)
            if not token:
                raise ConfigError(f"tool '{self.name}' (mcp): the environment variable {s.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {token}"
        return streamable_http_client(s.url, http_client=create_mcp_http_client(headers=headers))

    def _where(self) -> str:
        return " ".join(self.settings.command) if self.settings.command else str(self.settings.url)

    async def call(self, remote: str, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        from mcp import MCPError

        client = self.client
        if client is None:
            why = f": {_reason(self._failure)}" if self._failure is not None else ""
            raise ToolFailed(f"the MCP server of tool '{self.name}' has stopped{why}")
        try:
            return await client.call_tool(remote, arguments)
        except MCPError as exc:
            if exc.code == INVALID_PARAMS:
                raise ToolRefused(f"tool '{self.name}-{remote}': {exc.message}") from None
            raise ToolFailed(f"tool '{self.name}-{remote}': the MCP server answered an error: {exc.message}") from None
        except (OSError, EOFError) as exc:
            raise ToolFailed(f"tool '{self.name}-{remote}': the MCP server is unreachable: {_reason(exc)}") from None

    async def aclose(self) -> None:
        """End the session and the server process (or HTTP session); harmless twice."""
        self._stop.set()
        task, self._task = self._task, None
        if task is None or task.done():
            return
        try:
            async with asyncio.timeout(10):  # stdio_client itself escalates to a kill of the process tree
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
        except BaseException:  # noqa: BLE001  (its failure was recorded; closing goes on)
            pass


class McpTool:
    """One tool of an MCP server, called through the entry's shared :class:`McpSession`."""

    def __init__(self, session: McpSession, remote: mcp_types.Tool) -> None:
        self.session, self.remote = session, remote.name
        schema = dict(remote.input_schema or {})
        schema.setdefault("type", "object")  # the MCP spec requires it; some servers leave it out
        description = remote.description or session.settings.description or (
            f"{remote.title or remote.name} (from the MCP server '{session.name}')")
        self._spec = ToolSpec(tool_name(session.name, remote.name), description.strip(), schema)

    @property
    def spec(self) -> ToolSpec:
        return self._spec

    async def call(self, arguments: dict[str, Any]) -> ToolResult:
        result = await self.session.call(self.remote, arguments)
        text = _text(result.content)
        if result.is_error:
            raise ToolRefused(f"tool '{self._spec.name}': {text or 'the server reported an error'}")
        return ToolResult(text or _json(result.structured_content), data=result.structured_content,
                          meta={"server": self.session.name, "tool": self.remote})

    async def aclose(self) -> None:
        await self.session.aclose()


@connector("mcp")
async def open_mcp(name: str, settings: McpToolSettings) -> list[Tool]:
    session = McpSession(name, settings)
    listed = await session.start()
    try:
        if settings.tools is not None:
            have = {t.name for t in listed}
            missing = [t for t in settings.tools if t not in have]
            if missing:
                raise ConfigError(f"tool '{name}' (mcp): the server has no tool {', '.join(map(repr, missing))} "
                                  f"(it has: {', '.join(sorted(have)) or 'none'})")
            listed = [t for t in listed if t.name in settings.tools]
        tools = [McpTool(session, t) for t in listed]
        names = [t.spec.name for t in tools]
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise ConfigError(f"tool '{name}' (mcp): several server tools become {', '.join(clashes)}; "
                              "choose among them with tools = [...]")
        return list(tools)
    except BaseException:
        await session.aclose()
        raise


async def _list_all(client: mcp.Client) -> list[mcp_types.Tool]:
    tools, cursor = [], None
    for _ in range(100):  # a server whose cursor never ends cannot hang start-up
        page = await client.list_tools(cursor=cursor)
        tools += page.tools
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


def _text(content: list[Any]) -> str:
    """The text blocks joined; other blocks (images, audio, resources) named, as a model cannot read them."""
    parts = []
    for block in content:
        if getattr(block, "type", None) == "text":
            parts.append(block.text)
        else:
            what = getattr(block, "mime_type", None) or getattr(block, "uri", None) or ""
            parts.append(f"[{getattr(block, 'type', 'content')} {what}]".replace(" ]", "]"))
    return "\n".join(parts)


def _json(value: Any) -> str:
    import json

    return "" if value is None else json.dumps(value, ensure_ascii=False)


def _reason(exc: BaseException | None) -> str:
    """The innermost message of an exception group (anyio task groups wrap the transport's error)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return type(exc).__name__ if exc is not None and not str(exc) else str(exc)
