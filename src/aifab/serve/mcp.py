"""``/mcp``: aifab as an MCP server, over Streamable HTTP with the official SDK's server.

Tools: ``search`` (retrieval over a collection, as ``/v1/retrieve``), ``ask`` (a RAG app answers with
citations, as ``/v1/chat/completions`` with the app as the model) and every configured ``[tools.*]``
connector. The gateway in front authenticates ``/mcp`` like every other route (Bearer API keys; open when no
key exists), and each tool follows the caller's key: its tool scope (:meth:`ApiKey.allows_tool`) hides and
refuses tools, its collection scope and ACL tags bound ``search`` and ``ask``, its model scope the apps.

The SDK runs stateless with JSON responses: every POST is answered on its own, so nothing is kept between
requests and any replica can answer; server-to-client requests (sampling, elicitation) are not offered.
``ask`` goes through the gateway in-process, so it gets the same guardrails, quotas and audit as a chat
request; ``search`` and connector calls are not written to the audit log.

The SDK is imported when the app starts (it takes about a second), not when the app is built.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from aifab import __version__
from aifab.errors import AifabError, ConfigError, error_response
from aifab.gateway.upstreams import GATEWAY_SCOPE
from aifab.identity import KEY_SCOPE, ApiKey
from aifab.serve.agent import guarded
from aifab.serve.deps import may_read
from aifab.tools import Toolbox, ToolFailed, ToolRefused, ToolResult, ToolSpec
from aifab.tools.schema import check_arguments

if TYPE_CHECKING:
    import mcp_types
    from mcp.server.context import ServerRequestContext
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    from aifab.rag import Rag

INVALID_PARAMS = -32602  # JSON-RPC: what the MCP spec answers for a tool the caller cannot call
INSTRUCTIONS = ("aifab: search its document collections, ask its RAG apps (answers with citations), and use "
                "the tools it is configured with.")


class McpEndpoint:
    """The ASGI endpoint at ``/mcp``. ``app_state`` is the app's ``state`` (rag, serving); :meth:`run`, entered
    in the app's lifespan, starts the SDK's session manager, whose task group lives as long as the app."""

    def __init__(self, app: ASGIApp, app_state: Any) -> None:
        self.app, self.state = app, app_state
        self.manager: StreamableHTTPSessionManager | None = None

    @asynccontextmanager
    async def run(self) -> AsyncIterator[None]:
        from mcp.server.lowlevel import Server
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        logging.getLogger("mcp.server.streamable_http_manager").setLevel(logging.WARNING)  # no start-up chatter
        server: Server[Any] = Server("aifab", version=__version__, instructions=INSTRUCTIONS,
                                     on_list_tools=self._list_tools, on_call_tool=self._call_tool)
        manager = StreamableHTTPSessionManager(app=server, json_response=True, stateless=True)
        async with manager.run():
            self.manager = manager
            try:
                yield
            finally:
                self.manager = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.manager is None:  # an app used without its lifespan (as some tests do)
            status, headers, body = error_response(ConfigError("the MCP server is not running"))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.manager.handle_request(scope, receive, send)

    # --- the tools a caller has -------------------------------------------------------------------

    def _toolbox(self) -> Toolbox:
        """The configured tools, opened at start-up (``OpenAIServing.toolbox``; None when none is configured)."""
        return self.state.serving.toolbox or Toolbox([])

    def specs(self, caller: ApiKey | None) -> dict[str, ToolSpec]:
        """The tools ``caller`` may list and call, by name."""
        specs: dict[str, ToolSpec] = {}
        rag: Rag | None = getattr(self.state, "rag", None)
        if rag is not None:
            specs["search"] = _search_spec(rag, caller)
            apps = [a for a in rag.app_names() if _may_ask(rag, caller, a)]
            if apps:
                specs["ask"] = _ask_spec(apps)
        specs.update({s.name: s for s in self._toolbox().specs()})
        return {n: s for n, s in specs.items() if caller is None or caller.allows_tool(n)}

    async def _list_tools(self, ctx: ServerRequestContext[Any, Any], params: Any) -> mcp_types.ListToolsResult:
        import mcp_types

        caller = _scope(ctx).get(KEY_SCOPE)
        specs = await asyncio.to_thread(self.specs, caller)  # lists collections: a database read
        return mcp_types.ListToolsResult(tools=[
            mcp_types.Tool(name=s.name, description=s.description, input_schema=s.parameters) for s in specs.values()])

    async def _call_tool(self, ctx: ServerRequestContext[Any, Any],
                         params: mcp_types.CallToolRequestParams) -> mcp_types.CallToolResult:
        import mcp_types
        from mcp import MCPError

        scope = _scope(ctx)
        caller: ApiKey | None = scope.get(KEY_SCOPE)
        name, arguments = params.name, params.arguments or {}
        specs = await asyncio.to_thread(self.specs, caller)
        if name not in specs:
            if caller is not None and name in await asyncio.to_thread(self.specs, None):
                raise MCPError(INVALID_PARAMS, f"the key '{caller.name}' may not use the tool '{name}'")
            raise MCPError(INVALID_PARAMS, f"no tool named '{name}' (tools: {', '.join(specs) or 'none'})")
        try:
            if name == "search":
                result = await self._search(caller, check_arguments(name, specs[name].parameters, arguments))
            elif name == "ask":
                result = await self._ask(scope, check_arguments(name, specs[name].parameters, arguments))
            else:
                result = guarded(await self._toolbox().call(name, arguments), self.state.serving.tool_guard)
        except AifabError as exc:  # refused, failed, forbidden, not found: the model reads why and may retry
            return mcp_types.CallToolResult(content=[mcp_types.TextContent(text=exc.message)], is_error=True)
        data = result.data if isinstance(result.data, dict) or result.data is None else {"result": result.data}
        return mcp_types.CallToolResult(content=[mcp_types.TextContent(text=result.text)], structured_content=data)

    # --- the built-in tools -----------------------------------------------------------------------

    async def _search(self, caller: ApiKey | None, args: dict[str, Any]) -> ToolResult:
        rag: Rag = self.state.rag
        may_read(caller, args["collection"])
        passages = await asyncio.to_thread(
            rag.retrieve, args["collection"], args["query"], top_k=args.get("top_k"),
            acl=caller.acl_filter() if caller is not None else None)
        found = [{"rank": i, **p.to_dict()} for i, p in enumerate(passages, start=1)]
        text = "\n\n".join(f"[{p['rank']}] {_place(p)}\n{p['text']}" for p in found) or "no passage matches"
        return ToolResult(text, data={"collection": args["collection"], "passages": found})

    async def _ask(self, scope: Scope, args: dict[str, Any]) -> ToolResult:
        """The app's answer through the gateway in front (its guardrails, quotas, audit), as a client's chat
        request with the caller's own key would get it; the app itself when no gateway is in front."""
        target = scope.get(GATEWAY_SCOPE) or self.app
        auth = [(k, v) for k, v in scope.get("headers", []) if k == b"authorization"]
        body = {"model": args["app"], "messages": [{"role": "user", "content": args["question"]}]}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=target), base_url="http://aifab") as http:
            r = await http.post("/v1/chat/completions", content=orjson.dumps(body),
                                headers={"content-type": "application/json", **{k.decode(): v.decode() for k, v in auth}})
        reply = r.json()
        if r.status_code != 200:
            message = reply.get("error", {}).get("message", r.text)
            raise (ToolRefused if r.status_code < 500 else ToolFailed)(message)
        message = reply["choices"][0]["message"]
        cites = message.get("citations") or []
        text = message.get("content") or ""
        sources = "\n".join(f"[{c['index']}] {_place(c)}" for c in cites if c.get("cited"))
        return ToolResult(text + (f"\n\nSources:\n{sources}" if sources else ""),
                          data={"app": args["app"], "answer": text, "citations": cites})


def _scope(ctx: ServerRequestContext[Any, Any]) -> Scope:
    """The HTTP request's ASGI scope, where the gateway put the caller's key."""
    return getattr(ctx.request, "scope", None) or {}


def _may_ask(rag: Rag, caller: ApiKey | None, app: str) -> bool:
    if caller is None:
        return True
    collection = rag.settings.apps[app].collection
    return caller.allows_model(app) and (collection is None or caller.allows_collection(collection))


def _search_spec(rag: Rag, caller: ApiKey | None) -> ToolSpec:
    names = [c.name for c in rag.corpus.collections.list() if caller is None or caller.allows_collection(c.name)]
    return ToolSpec("search", "Search a document collection: the passages that best match the query, each with "
                    f"its source, section, page and character offsets. Collections: {', '.join(names) or 'none yet'}.",
                    {"type": "object", "additionalProperties": False, "required": ["collection", "query"],
                     "properties": {
                         "collection": {"type": "string", "minLength": 1, "description": "the collection to search"},
                         "query": {"type": "string", "minLength": 1, "description": "what to look for"},
                         "top_k": {"type": "integer", "minimum": 1, "maximum": 100,
                                   "description": "how many passages (default: the server's)"}}})


def _ask_spec(apps: list[str]) -> ToolSpec:
    return ToolSpec("ask", "Ask one of aifab's apps a question: it answers from its documents, with numbered "
                    f"citations of its sources. Apps: {', '.join(apps)}.",
                    {"type": "object", "additionalProperties": False, "required": ["app", "question"],
                     "properties": {"app": {"type": "string", "enum": apps},
                                    "question": {"type": "string", "minLength": 1}}})


def _place(p: dict[str, Any]) -> str:
    """``source § section, p. 3, chars 120-480``: where a passage or citation is."""
    where = [str(p.get("source") or p.get("document_id") or "?")]
    if p.get("section"):
        where.append("§ " + " > ".join(p["section"]))
    if p.get("page") is not None:
        where.append(f"p. {p['page']}")
    if p.get("start") is not None:
        where.append(f"chars {p['start']}-{p['end']}")
    return ", ".join(where)
