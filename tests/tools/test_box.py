"""The Toolbox: the checks every tool call gets whatever the connector, and the config that names tools."""

from __future__ import annotations

import pytest

from aifab.config import load_settings
from aifab.errors import ConfigError, NotFound
from aifab.testing.tools import FakeTool, ToolConformance
from aifab.tools import Toolbox, ToolFailed, ToolRefused


class TestFakeTool(ToolConformance):
    good_arguments = {"query": "rivers"}
    bad_arguments = {"qurey": "rivers"}

    @pytest.fixture
    async def tool(self):
        return FakeTool(text="x" * 500)


async def test_bad_arguments_never_reach_the_tool():
    tool = FakeTool()
    with pytest.raises(ToolRefused, match="query"):
        await Toolbox([tool]).call("lookup", {"query": 3})
    with pytest.raises(ToolRefused, match="JSON object"):
        await Toolbox([tool]).call("lookup", ["rivers"])
    assert tool.calls == []


async def test_a_hanging_tool_times_out_as_a_504():
    box = Toolbox([FakeTool(hang=True)], limits={"lookup": (0.01, 1000)})
    with pytest.raises(ToolFailed, match="timed out") as caught:
        await box.call("lookup", {"query": "x"})
    assert caught.value.status_code == 504


async def test_unknown_tools_and_bad_names_are_clear_errors():
    with pytest.raises(NotFound, match="lookup"):
        await Toolbox([FakeTool()]).call("nope", {})
    with pytest.raises(ConfigError, match="not valid"):
        Toolbox([FakeTool("has space")])
    with pytest.raises(ConfigError, match="two tools"):
        Toolbox([FakeTool(), FakeTool()])


async def test_a_config_entry_stands_for_all_its_tools():
    box = Toolbox([FakeTool("api-getUser"), FakeTool("api-listUsers"), FakeTool("apix"), FakeTool("db")])
    assert box.expand(["api", "db"]) == ["api-getUser", "api-listUsers", "db"]
    await box.aclose()
    assert all(t.closed == 1 for t in box.tools.values())


def test_apps_need_a_collection_or_tools_and_name_known_tools(tmp_path):
    with pytest.raises(ConfigError, match="collection, tools, or both"):
        load_settings(data_dir=tmp_path, apps={"a": {"model": "m"}})
    with pytest.raises(ConfigError, match="unknown tools web"):
        load_settings(data_dir=tmp_path, apps={"a": {"tools": ["web"]}})
    s = load_settings(data_dir=tmp_path, tools={"db": {"kind": "sql", "url": "sqlite:///x.db", "tables": ["t"]}},
                      apps={"a": {"tools": ["db"]}})
    assert s.apps["a"].collection is None and s.tools["db"].kind == "sql"
    with pytest.raises(ConfigError, match="may not be named search"):
        load_settings(data_dir=tmp_path, tools={"search": {"kind": "web"}})
    with pytest.raises(ConfigError, match="tables"):
        load_settings(data_dir=tmp_path, tools={"db": {"kind": "sql", "url": "sqlite:///x.db", "tables": []}})
