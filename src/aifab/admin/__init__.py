"""The admin operations, one implementation each: the admin API (``aifab.serve.routes.admin``) and the CLI
offline call the same functions, so a command gives the same answer through a running server as without one."""
