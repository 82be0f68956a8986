"""The tools a process has: built once from ``[tools.*]`` at start-up, called by name with the checks every
call gets whatever the connector (schema, timeout, result length), closed once at shutdown."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aifab.config import Settings
from aifab.errors import ConfigError, NotFound
from aifab.tools.protocol import Tool, ToolFailed, ToolResult, ToolSpec
from aifab.tools.schema import check_arguments, cut, validator

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

Opener = Callable[[str, Any], Awaitable[list[Tool]]]
"""Makes the tools of one ``[tools.NAME]`` entry: ``(NAME, its settings) -> tools``."""

OPENERS: dict[str, Opener] = {}
"""Connector kinds (``kind`` in the settings) to their openers; each connector module registers itself."""


def connector(kind: str) -> Callable[[Opener], Opener]:
    def register(opener: Opener) -> Opener:
        OPENERS[kind] = opener
        return opener
    return register


class Toolbox:
    def __init__(self, tools: Iterable[Tool], limits: Mapping[str, tuple[float, int]] | None = None) -> None:
        """``limits``: per tool name, (timeout in seconds, most result characters)."""
        self.tools: dict[str, Tool] = {}
        for tool in tools:
            name = tool.spec.name
            if not NAME.match(name):
                raise ConfigError(f"tool name '{name}' is not valid: letters, digits, _ and -, at most 64")
            if name in self.tools:
                raise ConfigError(f"two tools are named '{name}'")
            self.tools[name] = tool
        self.limits = dict(limits or {})
        self._validators = {name: validator(tool.spec.parameters) for name, tool in self.tools.items()}

    @classmethod
    async def open(cls, settings: Settings) -> Toolbox:
        """Every configured connector's tools. A connector that cannot start (a missing database, an MCP
        server that does not answer) is a :class:`ConfigError` naming it; the ones opened so far are closed."""
        from aifab.tools import connectors  # noqa: F401  (registers the connector kinds)

        opened: list[Tool] = []
        limits: dict[str, tuple[float, int]] = {}
        try:
            for name, conf in settings.tools.items():
                try:
                    tools = await OPENERS[conf.kind](name, conf)
                except ConfigError:
                    raise
                except Exception as exc:
                    raise ConfigError(f"tool '{name}' ({conf.kind}) cannot start: {exc}") from exc
                for tool in tools:
                    opened.append(tool)
                    limits[tool.spec.name] = (conf.timeout_s, conf.max_result_chars)
            return cls(opened, limits)
        except BaseException:
            await _close(opened)
            raise

    def specs(self, names: Iterable[str] | None = None) -> list[ToolSpec]:
        """The specs of ``names`` (a config entry's name stands for all its tools), or of every tool."""
        return [self.tools[n].spec for n in self.expand(names)] if names is not None else [
            t.spec for t in self.tools.values()]

    def expand(self, names: Iterable[str]) -> list[str]:
        """Tool names for config entry names: ``api`` stands for ``api-getUser``, ``api-listUsers``..."""
        out: list[str] = []
        for n in names:
            out += [t for t in self.tools if t == n or t.startswith(n + "-")]
        return out

    def get(self, name: str) -> Tool:
        try:
            return self.tools[name]
        except KeyError:
            raise NotFound(f"no tool named '{name}' (tools: {', '.join(self.tools) or 'none configured'})",
                           param="name") from None

    async def call(self, name: str, arguments: Any) -> ToolResult:
        """Check ``arguments`` against the schema, run the tool under its timeout, cut its text."""
        tool = self.get(name)
        args = check_arguments(name, self._validators[name], arguments)
        timeout, max_chars = self.limits.get(name, (10.0, 8000))
        try:
            async with asyncio.timeout(timeout):
                result = await tool.call(args)
        except TimeoutError:
            raise ToolFailed(f"tool '{name}' timed out after {timeout:g} s", status_code=504) from None
        result.text, cut_now = cut(result.text, max_chars)
        result.truncated = result.truncated or cut_now
        return result

    async def aclose(self) -> None:
        await _close(self.tools.values())


async def _close(tools: Iterable[Tool]) -> None:
    for tool in tools:
        try:
            await tool.aclose()
        except Exception:  # closing one must not keep the others open
            pass
