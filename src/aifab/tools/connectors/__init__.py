"""The connector kinds; importing this package registers each one's opener in ``aifab.tools.box.OPENERS``."""
