"""The connector kinds; importing this package registers each one's opener in ``aifab.tools.box.OPENERS``."""

from aifab.tools.connectors import mcp, openapi, sql, web  # noqa: F401
