"""SSRF attack forms and a range to fire them in, shared by ``tests/tools/test_ssrf.py`` (every form must be
refused) and ``benchmarks/tools_ssrf.py`` (prints how many reached their target; the target is 0).

The range (:class:`AttackRange`) gives a :class:`~aifab.tools.ssrf.GuardedHttp` with default settings two
fakes in place of the outside world, so no attack needs a real private network or DNS server:

* a fake DNS (:class:`FakeResolver`) with each attack's answers, plus ``public.example`` -> a public address;
* a network backend (:class:`RedirectingNetwork`) that sends every connection the guard lets through to one
  loopback listener and records the address the guard meant to reach. The listener answers ``/hop?to=URL``
  with a redirect to URL (the first hop of a redirect attack, on the public name) and records every other
  request as a hit. An attack *reached* its target if the guard let a connection to anything but the public
  address through, or the listener recorded a hit.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpcore
from aiohttp import web

from aifab.testing.loopback import serve
from aifab.tools.protocol import ToolRefused
from aifab.tools.ssrf import GuardedHttp

PUBLIC = "public.example"
PUBLIC_ADDRESS = "93.184.216.34"


def hop(to: str, via: str = PUBLIC) -> str:
    """A URL on the public name that redirects to ``to``."""
    return f"http://{via}/hop?to={quote(to, safe='')}"


@dataclass(frozen=True)
class Attack:
    name: str
    url: str
    dns: Mapping[str, Sequence[str]] = field(default_factory=dict)


_EVIL = "internal.attacker.example"
ATTACKS: tuple[Attack, ...] = (
    # the loopback address, spelled every way a URL parser or inet_aton accepts
    Attack("loopback", "http://127.0.0.1/"),
    Attack("localhost by name", "http://localhost/", {"localhost": ["127.0.0.1", "::1"]}),
    Attack("uppercase name, trailing dot", "http://LOCALHOST./", {"localhost": ["127.0.0.1"]}),
    Attack("decimal", "http://2130706433/"),
    Attack("octal", "http://0177.0.0.1/"),
    Attack("hex, short", "http://0x7f.1/"),
    Attack("hex, whole", "http://0x7f000001/"),
    Attack("octal, whole", "http://017700000001/"),
    Attack("short form", "http://127.1/"),
    Attack("trailing dot", "http://127.0.0.1./"),
    Attack("other loopback", "http://127.8.9.10/"),
    Attack("ideographic dots", "http://127\u30020\u30020\u30021/"),
    Attack("percent-encoded host", "http://%31%32%37.0.0.1/"),
    Attack("userinfo", "http://public.example@127.0.0.1/"),
    Attack("userinfo, backslash", "http://a.b\\@127.0.0.1/"),
    Attack("no slashes", "http:/\\127.0.0.1/"),
    Attack("no scheme", "//127.0.0.1/"),
    Attack("unspecified", "http://0.0.0.0/"),
    Attack("zero", "http://0/"),
    Attack("IPv6 loopback", "http://[::1]/"),
    Attack("IPv6 unspecified", "http://[::]/"),
    Attack("IPv4-mapped, hex", "http://[::ffff:7f00:1]/"),
    Attack("IPv4-mapped, dotted", "http://[::ffff:127.0.0.1]/"),
    Attack("IPv4-mapped, long", "http://[0:0:0:0:0:ffff:127.0.0.1]/"),
    Attack("IPv4-compatible", "http://[::127.0.0.1]/"),
    Attack("NAT64", "http://[64:ff9b::7f00:1]/"),
    Attack("6to4", "http://[2002:7f00:1::]/"),
    Attack("Teredo", "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/"),
    # cloud metadata services
    Attack("AWS/GCP/Azure metadata", "http://169.254.169.254/latest/meta-data/"),
    Attack("metadata, decimal", "http://2852039166/"),
    Attack("GCP metadata name", "http://metadata.google.internal/computeMetadata/v1/",
           {"metadata.google.internal": [PUBLIC_ADDRESS]}),
    Attack("AWS IPv6 metadata", "http://[fd00:ec2::254]/"),
    Attack("Alibaba metadata", "http://100.100.100.200/"),
    Attack("Oracle metadata", "http://192.0.0.192/"),
    # the rest of the non-public space
    Attack("private 10/8", "http://10.0.0.1/"),
    Attack("private 172.16/12", "http://172.16.0.1/"),
    Attack("private 192.168/16", "http://192.168.1.1/"),
    Attack("link-local IPv6 with zone", "http://[fe80::1%25eth0]/"),
    Attack("link-local IPv6", "http://[fe80::1]/"),
    Attack("unique-local IPv6", "http://[fc00::1]/"),
    Attack("multicast", "http://224.0.0.1/"),
    Attack("broadcast", "http://255.255.255.255/"),
    Attack("reserved", "http://240.0.0.1/"),
    Attack("documentation", "http://192.0.2.1/"),
    Attack("IPv6 documentation", "http://[2001:db8::1]/"),
    Attack("benchmarking", "http://198.18.0.1/"),
    # other schemes, and ports that speak other protocols
    Attack("file", "file:///etc/passwd"),
    Attack("gopher", "gopher://127.0.0.1:6379/_INFO"),
    Attack("ftp", "ftp://127.0.0.1/"),
    Attack("dict", "dict://127.0.0.1:11211/stats"),
    Attack("redis port on a public host", f"http://{PUBLIC}:6379/"),
    Attack("ssh port on a public address", f"http://{PUBLIC_ADDRESS}:22/"),
    # names whose DNS answers are private
    Attack("name -> 10.x", f"http://{_EVIL}/", {_EVIL: ["10.0.0.5"]}),
    Attack("name -> ::1", f"http://{_EVIL}/", {_EVIL: ["::1"]}),
    Attack("name -> public and private", f"http://{_EVIL}/", {_EVIL: [PUBLIC_ADDRESS, "127.0.0.1"]}),
    Attack("name -> mapped metadata", f"http://{_EVIL}/", {_EVIL: ["::ffff:169.254.169.254"]}),
    Attack("name -> NAT64 metadata", f"http://{_EVIL}/", {_EVIL: ["64:ff9b::a9fe:a9fe"]}),
    Attack("name -> 0.0.0.0", f"http://{_EVIL}/", {_EVIL: ["0.0.0.0"]}),
    # redirects from a public page
    Attack("redirect -> metadata", hop("http://169.254.169.254/latest/meta-data/")),
    Attack("redirect -> 10.x", hop("http://10.0.0.1/")),
    Attack("redirect -> [::1]", hop("http://[::1]/")),
    Attack("redirect -> decimal loopback", hop("http://2130706433/")),
    Attack("redirect -> file", hop("file:///etc/passwd")),
    Attack("redirect -> private name", hop(f"http://{_EVIL}/"), {_EVIL: ["192.168.0.10"]}),
    Attack("redirect chain -> loopback", hop(hop("http://127.0.0.1/"))),
)

CONTROL = Attack("public page (control)", f"http://{PUBLIC}/page")
"""Not an attack: a public page the guard must fetch, so a range that refuses everything is caught."""


class FakeResolver:
    """DNS for tests: ``answers`` by name (``later``: what a name answers from its second lookup on, for
    rebinding). An unknown name fails as the system's resolver does. ``lookups`` records the names asked."""

    def __init__(self, answers: Mapping[str, Sequence[str]], later: Mapping[str, Sequence[str]] | None = None):
        self.answers = {k.lower(): list(v) for k, v in answers.items()}
        self.later = {k.lower(): list(v) for k, v in (later or {}).items()}
        self.lookups: list[str] = []

    async def __call__(self, host: str) -> list[str]:
        host = host.lower()
        again = host in self.lookups
        self.lookups.append(host)
        if again and host in self.later:
            return self.later[host]
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.answers[host]


class RedirectingNetwork(httpcore.AsyncNetworkBackend):
    """The network as far as a guard can tell: every connection goes to ``port`` on 127.0.0.1 whatever the
    address asked for; ``connections`` records the (address, port) pairs asked for."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.real = httpcore.AnyIOBackend()
        self.connections: list[tuple[str, int]] = []

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        self.connections.append((host, port))
        return await self.real.connect_tcp("127.0.0.1", self.port, timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await self.real.sleep(seconds)


@dataclass
class Outcome:
    attack: Attack
    refused: bool
    reached: bool
    message: str


class AttackRange:
    """Fires :data:`ATTACKS` at guards with default settings; see the module docstring."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.port = int(base_url.rsplit(":", 1)[1])
        self.hits: list[str] = []

    async def fire(self, attack: Attack, **settings: Any) -> Outcome:
        network = RedirectingNetwork(self.port)
        resolver = FakeResolver({PUBLIC: [PUBLIC_ADDRESS], **attack.dns})
        guard = GuardedHttp(resolver=resolver, network=network, timeout_s=5.0, **settings)
        before = len(self.hits)
        try:
            result = await guard.fetch(attack.url)
            refused, message = False, f"fetched {result.url}"
        except ToolRefused as exc:
            refused, message = True, exc.message
        except Exception as exc:  # a failure is not a refusal: the guard let something through
            refused, message = False, f"{type(exc).__name__}: {exc}"
        finally:
            await guard.aclose()
        strays = [c for c in network.connections if c[0] != PUBLIC_ADDRESS]
        return Outcome(attack, refused, bool(strays) or len(self.hits) > before, message)


@asynccontextmanager
async def attack_range() -> AsyncIterator[AttackRange]:
    """An :class:`AttackRange` with its listener running."""
    hits: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path == "/hop":
            raise web.HTTPFound(request.query["to"])
        hits.append(f"{request.method} {request.host}{request.path_qs}")
        return web.Response(text="reached")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    async with serve(app) as base_url:
        target = AttackRange(base_url)
        target.hits = hits
        yield target
