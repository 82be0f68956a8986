"""Outbound HTTP for tools, guarded against server-side request forgery (SSRF).

A model chooses the URL a ``web`` tool fetches, so without a guard it could read the cloud metadata service
(``169.254.169.254``), an admin page on ``localhost`` or anything on the intranet the server sits in.
:class:`GuardedHttp` refuses those unless an operator allow-lists them, and checks **the address it connects
to**, not the name in the URL:

* Every TCP connection (the first request and every redirect hop, followed one at a time here) is opened by
  :class:`GuardedBackend`, an ``httpcore`` network backend: it resolves the host once (or reads the literal
  address, with ``inet_aton``'s legacy forms ``2130706433``, ``0x7f.1``, ``127.1`` understood as the system
  would), refuses the connection if *any* answer is refused (a name answering a public and a private
  address is refused), and then connects to the checked address itself. Nothing resolves the name a second
  time, so a DNS answer that changes between the check and the connection (rebinding) changes nothing.
* The URL keeps the host *name*, so ``Host``, TLS SNI and certificate verification are for the name, as
  they would be without the guard; https needs nothing special, and the connection pool is keyed by name
  (a connection checked for one name is never reused for another).
* httpx has no public option for a pool's network backend: :class:`_GuardedTransport` builds its pool with
  one (the only place this module reaches into httpx), ignores proxy environment variables (a proxy would
  resolve the name itself) and never follows redirects on its own.

Refused unless ``allow_networks`` covers the address: loopback, private (RFC 1918), link-local (metadata),
shared/CGNAT, multicast, unspecified, broadcast and reserved, documentation and benchmarking ranges, IPv6
unique-local and site-local, IPv4-mapped/compatible, 6to4, Teredo and NAT64 forms of those, and anything
else ``ipaddress`` says is not global. Also refused: schemes other than http/https, URLs with credentials,
percent-encoded or zone-scoped hosts, cloud metadata host names (always), hosts outside ``allow_hosts`` when
it is set, and ports other than 80 and 443 unless the host is in ``allow_hosts`` or its address in
``allow_networks`` (the open web is served on those two; what an operator names may use any port).

Not covered: a public server that proxies onward (an open redirector is followed and checked; an open proxy
is not detectable), and attacks on the content itself (the caller decides what a body may be).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from aifab.errors import ConfigError
from aifab.tools.protocol import ToolFailed, ToolRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], Awaitable[list[str]]]
"""``async (host name) -> addresses``; raises ``OSError`` (``socket.gaierror``) for a name that does not resolve."""

METADATA_HOSTS = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal",
    "metadata.tencentyun.com", "metadata.platformequinix.com",
})
"""Cloud metadata services by name; refused whatever they resolve to (their addresses are refused too)."""

_RANGES: tuple[tuple[str, str], ...] = (
    ("100.64.0.0/10", "a shared (CGNAT) address"),  # Alibaba's metadata service is 100.100.100.200
    ("192.0.0.0/24", "an IETF protocol address"),  # Oracle's metadata service is 192.0.0.192
    ("192.0.2.0/24", "a documentation address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("192.88.99.0/24", "a 6to4 relay address"),
    ("255.255.255.255/32", "the broadcast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("0.0.0.0/8", "a 'this network' address"),
    ("2001:db8::/32", "a documentation address"),
    ("3fff::/20", "a documentation address"),
    ("fc00::/7", "a unique-local address"),  # AWS's IPv6 metadata service is fd00:ec2::254
    ("fec0::/10", "a site-local address"),
    ("2001::/32", "a Teredo address"),
    ("100::/64", "a discard-only address"),
)
_NETWORKS = tuple((ipaddress.ip_network(cidr), reason) for cidr, reason in _RANGES)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_COMPATIBLE = ipaddress.ip_network("::/96")
_LEGACY_V4 = re.compile(r"[0-9a-fx.]+", re.IGNORECASE)  # what inet_aton may read as an address
DEFAULT_PORTS = (80, 443)


class AddressRefused(ToolRefused):
    """A connection the policy refuses; ``reason`` completes "... refused: <reason>"."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"refused: {reason}")
        self.reason = reason


def literal_address(host: str) -> IPAddress | None:
    """The address ``host`` spells, read as ``getaddrinfo`` would (``[::1]``, ``127.1``, ``0x7f.1``,
    ``2130706433``, a trailing dot), with IPv4-mapped IPv6 turned into the IPv4 it reaches; None for a name."""
    text = host.strip("[]").rstrip(".")
    try:
        address: IPAddress = ipaddress.ip_address(text)
    except ValueError:
        if not _LEGACY_V4.fullmatch(text):
            return None
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _embedded_v4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 transition form carries, and the form's name."""
    if address.sixtofour is not None:
        return "a 6to4", address.sixtofour
    if address.teredo is not None:
        return "a Teredo", address.teredo[1]
    if any(address in net for net in _NAT64):
        return "a NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _COMPATIBLE and int(address) > 1:
        return "an IPv4-compatible", ipaddress.IPv4Address(int(address))
    return None


def address_refusal(address: IPAddress) -> str | None:
    """Why connecting to ``address`` is refused (a phrase: "a loopback address"), or None if it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_v4(address)
        if embedded is not None:
            form, v4 = embedded
            inner = address_refusal(v4)
            if inner is not None:
                return f"{form} form of {v4}, {inner}"
            if form in ("a 6to4", "a NAT64"):  # they route to a public IPv4 host (DNS64 networks use NAT64)
                return None
    for flag, reason in (("is_loopback", "a loopback address"), ("is_unspecified", "the unspecified address"),
                         ("is_link_local", "a link-local address (where cloud metadata services live)"),
                         ("is_multicast", "a multicast address")):
        if getattr(address, flag):
            return reason
    for network, reason in _NETWORKS:
        if address.version == network.version and address in network:
            return reason
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a globally routable address"
    return None


async def system_resolver(host: str) -> list[str]:
    """The system's answer for ``host`` (``getaddrinfo``, off the event loop), each address once."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class Policy:
    """What may be connected to: the rules in the module docstring, with the operator's allow-lists."""

    def __init__(self, *, allow_networks: Iterable[str] = (), allow_hosts: Iterable[str] = (),
                 resolver: Resolver | None = None) -> None:
        try:
            self.allow_networks: tuple[Network, ...] = tuple(
                ipaddress.ip_network(cidr, strict=False) for cidr in allow_networks)
        except ValueError as exc:
            raise ConfigError(f"allow_networks: {exc}") from None
        self.allow_hosts = tuple(h.lower().rstrip(".") for h in allow_hosts)
        self.resolver = resolver or system_resolver

    def allowed_network(self, address: IPAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.allow_networks)

    def named_host(self, host: str) -> bool:
        """Whether ``host`` is in ``allow_hosts`` (a subdomain of an entry counts)."""
        host = host.lower().rstrip(".")
        return any(host == h or host.endswith("." + h) for h in self.allow_hosts)

    def check_url(self, url: str | httpx.URL) -> httpx.URL:
        """``url`` parsed as the client will send it, or :class:`AddressRefused` saying why not. Literal
        addresses are checked here already; names are checked when they are resolved, at connect time."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise AddressRefused(f"not a valid URL ({exc})") from None
        if parsed.scheme not in ("http", "https"):
            raise AddressRefused(f"only http and https URLs are fetched, not '{parsed.scheme or 'none'}:'")
        host = parsed.host.rstrip(".")
        if not host:
            raise AddressRefused("the URL has no host")
        if parsed.userinfo:
            raise AddressRefused("URLs with a user name or password are not fetched")
        if "%" in host:
            raise AddressRefused(f"the host '{host}' is percent-encoded or zone-scoped")
        if host in METADATA_HOSTS:
            raise AddressRefused(f"{host} is a cloud metadata service")
        if self.allow_hosts and not self.named_host(host):
            raise AddressRefused(f"{host} is not in allow_hosts ({', '.join(self.allow_hosts)})")
        literal = literal_address(host)
        if literal is not None:
            self.check_address(host, literal, parsed.port or (443 if parsed.scheme == "https" else 80))
        return parsed

    def check_address(self, host: str, address: IPAddress, port: int) -> None:
        """Refuse connecting to ``address`` (what ``host`` resolved to) on ``port``."""
        allowed = self.allowed_network(address)
        if not allowed:
            reason = address_refusal(address)
            if reason is not None:
                if literal_address(host) is None:
                    shown = f"{host} resolves to {address}, {reason}"
                elif host.strip("[]").rstrip(".") == str(address):
                    shown = f"{address} is {reason}"
                else:
                    shown = f"{host} (that is {address}) is {reason}"
                raise AddressRefused(f"{shown} (allow it with allow_networks)")
        if port not in DEFAULT_PORTS and not allowed and not self.named_host(host):
            raise AddressRefused(f"port {port} of {host}: only ports 80 and 443 are fetched (name the host in "
                                 "allow_hosts or its network in allow_networks to use another)")

    async def resolve(self, host: str, port: int, timeout: float | None) -> list[str]:
        """The checked addresses to connect to for ``host``: every answer must pass, or none is used."""
        literal = literal_address(host)
        if literal is not None:
            answers = [literal]
        else:
            try:
                async with asyncio.timeout(timeout):
                    found = await self.resolver(host.rstrip("."))
            except TimeoutError:
                raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
            except OSError as exc:
                raise httpcore.ConnectError(f"{host} does not resolve ({exc})") from None
            answers = [a for a in (literal_address(str(f).split("%")[0]) for f in found) if a is not None]
            if not answers:
                raise httpcore.ConnectError(f"{host} has no addresses")
        for address in answers:
            self.check_address(host, address, port)
        return [str(a) for a in answers]


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Opens each connection to an address :meth:`Policy.resolve` checked, through ``inner`` (the real
    network by default; a test or benchmark may pass one that records or redirects connections)."""

    def __init__(self, policy: Policy, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        failure: Exception | None = None
        for address in await self.policy.resolve(host, port, timeout):
            try:  # the next checked address if one does not answer, as getaddrinfo-based clients do
                return await self.inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("unix sockets are not connected to")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, backend: GuardedBackend, *, verify: Any = True) -> None:
        super().__init__(trust_env=False, verify=verify)
        # httpx takes no network backend, so the pool it just built is replaced by one that has ours
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0, network_backend=backend)


@dataclass
class Fetched:
    """A successful (2xx) answer, read whole within ``max_bytes``."""

    url: str  # the final URL, after redirects
    status: int
    content_type: str  # lower case, without parameters ("text/html")
    charset: str | None
    body: bytes
    headers: httpx.Headers

    def text(self) -> str:
        try:
            return self.body.decode(self.charset or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return self.body.decode("utf-8", errors="replace")


class GuardedHttp:
    """An HTTP client for tools: every connection checked by :class:`Policy`, redirects followed one hop at
    a time (each checked; the caller's headers dropped when a hop leaves the origin, so an API key does not
    follow a redirect elsewhere), bodies read up to ``max_bytes`` (after decompression: a gzip bomb stops at
    the limit too), the whole exchange bounded by ``timeout_s``."""

    def __init__(self, *, allow_networks: Iterable[str] = (), allow_hosts: Iterable[str] = (),
                 max_bytes: int = 2 * 1024 * 1024, max_redirects: int = 5, timeout_s: float = 10.0,
                 resolver: Resolver | None = None, network: httpcore.AsyncNetworkBackend | None = None,
                 verify: Any = True, user_agent: str = "aifab-tools") -> None:
        self.policy = Policy(allow_networks=allow_networks, allow_hosts=allow_hosts, resolver=resolver)
        self.max_bytes, self.max_redirects, self.timeout_s = max_bytes, max_redirects, timeout_s
        self.client = httpx.AsyncClient(
            transport=_GuardedTransport(GuardedBackend(self.policy, network), verify=verify),
            follow_redirects=False, trust_env=False, timeout=httpx.Timeout(timeout_s),
            headers={"User-Agent": user_agent})

    async def fetch(self, url: str | httpx.URL, *, method: str = "GET", params: Mapping[str, Any] | None = None,
                    headers: Mapping[str, str] | None = None, json: Any = None,
                    accept: Callable[[str], None] | None = None) -> Fetched:
        """The 2xx answer to ``method url``. ``accept(content_type)`` may refuse a body before it is read.
        Refusals are :class:`ToolRefused`; failures, error statuses, too many redirects, a body over
        ``max_bytes`` and the timeout are :class:`ToolFailed`."""
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._follow(url, method, params, headers, json, accept)
        except TimeoutError:
            raise ToolFailed(f"{url}: no answer within {self.timeout_s:g} s", status_code=504) from None

    async def _follow(self, url: str | httpx.URL, method: str, params: Mapping[str, Any] | None,
                      headers: Mapping[str, str] | None, json: Any,
                      accept: Callable[[str], None] | None) -> Fetched:
        target = self._check(url, "")
        if params:
            target = target.copy_merge_params(dict(params))
        via = ""
        for _ in range(self.max_redirects + 1):
            request = self.client.build_request(method, target, headers=headers, json=json)
            try:
                response = await self.client.send(request, stream=True)
            except AddressRefused as exc:
                raise ToolRefused(f"{target}{via} refused: {exc.reason}") from None
            except httpx.HTTPError as exc:
                raise ToolFailed(f"{target}: {type(exc).__name__}: {exc or 'no details'}") from None
            try:
                if response.has_redirect_location:
                    via = f" (a redirect from {target})"
                    following = self._check(target.join(response.headers["location"]), via)
                    if (following.scheme, following.host, following.port) != (target.scheme, target.host,
                                                                                target.port):
                        headers = None
                    if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
                        method, json = "GET", None  # what browsers (and httpx) do
                    target = following
                    continue
                if not response.is_success:
                    raise ToolFailed(f"{target}: HTTP {response.status_code} {response.reason_phrase}"
                                     f"{await self._excerpt(response)}")
                content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if accept is not None:
                    accept(content_type)
                body = await self._read(response, target)
                return Fetched(str(target), response.status_code, content_type, response.charset_encoding,
                               body, response.headers)
            finally:
                await response.aclose()
        raise ToolFailed(f"{url}: more than {self.max_redirects} redirects (max_redirects)")

    def _check(self, url: str | httpx.URL, via: str) -> httpx.URL:
        try:
            return self.policy.check_url(url)
        except AddressRefused as exc:
            raise ToolRefused(f"{url}{via} refused: {exc.reason}") from None

    async def _read(self, response: httpx.Response, url: httpx.URL) -> bytes:
        too_big = f"{url}: the answer is larger than max_bytes ({self.max_bytes} bytes); stopped reading"
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise ToolFailed(too_big)
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise ToolFailed(too_big)
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    async def _excerpt(response: httpx.Response, limit: int = 300) -> str:
        """The start of an error body, for the message (text and JSON only: an HTML error page is noise)."""
        kind = response.headers.get("content-type", "")
        if not any(t in kind for t in ("json", "text/plain", "problem")):
            return ""
        data = b""
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) >= limit:
                break
        text = " ".join(data[:limit].decode("utf-8", errors="replace").split())
        return f": {text}" if text else ""

    async def aclose(self) -> None:
        await self.client.aclose()
