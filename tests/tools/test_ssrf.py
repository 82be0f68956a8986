"""The SSRF guard: every attack form refused and reaching nothing; real loopback servers for what an
operator allows, redirects, the size and redirect limits, and the address checked being the one connected to."""

from __future__ import annotations

import asyncio
import gzip

import pytest
from aiohttp import web

from aifab.errors import ConfigError
from aifab.testing.loopback import self_signed, serve
from aifab.testing.ssrf_attacks import (
    ATTACKS,
    CONTROL,
    PUBLIC,
    PUBLIC_ADDRESS,
    FakeResolver,
    RedirectingNetwork,
    attack_range,
)
from aifab.tools import ToolFailed, ToolRefused
from aifab.tools.ssrf import GuardedHttp

LOOPBACK = ["127.0.0.1/32"]


@pytest.fixture
async def range_():
    async with attack_range() as r:
        yield r


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
async def test_every_attack_form_is_refused_and_reaches_nothing(range_, attack):
    outcome = await range_.fire(attack)
    assert outcome.refused, outcome.message
    assert not outcome.reached
    assert "refused" in outcome.message


async def test_the_range_sees_a_fetch_that_gets_through(range_):
    outcome = await range_.fire(CONTROL)
    assert not outcome.refused and outcome.reached, outcome.message
    assert range_.hits == [f"GET {PUBLIC}/page"]  # Host is the name, though the connection went to its address


async def test_allowing_a_network_lets_its_forms_through(range_):
    outcome = await range_.fire(ATTACKS[0], allow_networks=LOOPBACK)  # http://127.0.0.1/
    assert not outcome.refused and outcome.reached


def _site(**routes) -> web.Application:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", "/" + path, handler)
    return app


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text=f"hello {request.headers.get('X-Key', '-')}")


async def test_a_real_loopback_server_is_refused_until_allowed():
    async with serve(_site(hello=_hello)) as base:
        guard = GuardedHttp()
        with pytest.raises(ToolRefused, match="127.0.0.1 is a loopback address .allow it with allow_networks"):
            await guard.fetch(f"{base}/hello")
        with pytest.raises(ToolRefused, match="localhost resolves to (127.0.0.1|::1), a loopback address"):
            await guard.fetch(base.replace("127.0.0.1", "localhost") + "/hello")  # the system's resolver
        allowed = GuardedHttp(allow_networks=LOOPBACK)
        fetched = await allowed.fetch(f"{base}/hello")
        assert (fetched.status, fetched.text(), fetched.content_type) == (200, "hello -", "text/plain")
        await guard.aclose()
        await allowed.aclose()


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/",
                                    "http://127.0.0.2/", "http://[::1]/"])
async def test_a_redirect_from_an_allowed_server_to_another_private_address_is_refused(target):
    async def away(request: web.Request) -> web.Response:
        raise web.HTTPFound(target)

    async with serve(_site(away=away)) as base:
        guard = GuardedHttp(allow_networks=LOOPBACK)
        with pytest.raises(ToolRefused, match=f"a redirect from {base}/away.* refused"):
            await guard.fetch(f"{base}/away")
        await guard.aclose()


async def test_the_size_limit_stops_reading_declared_streamed_and_compressed_bodies():
    async def declared(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 5000)

    async def streamed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to refuse up front
        await response.prepare(request)
        for _ in range(10):
            await response.write(b"y" * 1000)
        await response.write_eof()
        return response

    async def bomb(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b"\0" * 1_000_000), headers={"Content-Encoding": "gzip"})

    async with serve(_site(declared=declared, streamed=streamed, bomb=bomb)) as base:
        guard = GuardedHttp(allow_networks=LOOPBACK, max_bytes=4096)
        for path in ("declared", "streamed", "bomb"):
            with pytest.raises(ToolFailed, match=r"larger than max_bytes \(4096 bytes\)"):
                await guard.fetch(f"{base}/{path}")
        assert len((await GuardedHttp(allow_networks=LOOPBACK, max_bytes=5000).fetch(f"{base}/declared")).body) \
            == 5000
        await guard.aclose()


async def test_redirects_are_followed_up_to_the_limit():
    async def chain(request: web.Request) -> web.Response:
        left = int(request.match_info["n"])
        if left == 0:
            return web.Response(text="arrived")
        raise web.HTTPFound(f"/r/{left - 1}")

    app = web.Application()
    app.router.add_get("/r/{n}", chain)
    async with serve(app) as base:
        guard = GuardedHttp(allow_networks=LOOPBACK, max_redirects=3)
        fetched = await guard.fetch(f"{base}/r/3")
        assert fetched.text() == "arrived" and fetched.url == f"{base}/r/0"
        with pytest.raises(ToolFailed, match=r"more than 3 redirects \(max_redirects\)"):
            await guard.fetch(f"{base}/r/4")
        await guard.aclose()


async def test_headers_follow_a_redirect_within_the_origin_only():
    async with serve(_site(hello=_hello)) as other:
        async def here(request: web.Request) -> web.Response:
            raise web.HTTPFound("/hello")

        async def there(request: web.Request) -> web.Response:
            raise web.HTTPFound(f"{other}/hello")

        async with serve(_site(here=here, there=there, hello=_hello)) as base:
            guard = GuardedHttp(allow_networks=LOOPBACK)
            assert (await guard.fetch(f"{base}/here", headers={"X-Key": "k1"})).text() == "hello k1"
            assert (await guard.fetch(f"{base}/there", headers={"X-Key": "k1"})).text() == "hello -"
            await guard.aclose()


async def test_the_connection_goes_to_the_address_that_was_checked(range_):
    """DNS rebinding: a name answers a public address, then loopback. Each connection resolves once and
    connects to what it checked; a new connection checks the new answer."""
    resolver = FakeResolver({"rebind.example": [PUBLIC_ADDRESS]}, later={"rebind.example": ["127.0.0.1"]})
    network = RedirectingNetwork(range_.port)
    guard = GuardedHttp(resolver=resolver, network=network)
    await guard.fetch("http://rebind.example/first")
    await guard.fetch("http://rebind.example/again")  # the same connection: no new lookup, nothing to rebind
    assert network.connections == [(PUBLIC_ADDRESS, 80)] and resolver.lookups == ["rebind.example"]
    fresh = GuardedHttp(resolver=resolver, network=network)  # a new connection resolves (and checks) anew
    with pytest.raises(ToolRefused, match="rebind.example resolves to 127.0.0.1, a loopback address"):
        await fresh.fetch("http://rebind.example/second")
    assert network.connections == [(PUBLIC_ADDRESS, 80)]
    assert range_.hits == ["GET rebind.example/first", "GET rebind.example/again"]
    await guard.aclose()
    await fresh.aclose()


async def test_allow_hosts_takes_subdomains_and_their_ports_only(range_):
    resolver = FakeResolver({"docs.example.org": [PUBLIC_ADDRESS], "example.org.evil.test": [PUBLIC_ADDRESS]})
    network = RedirectingNetwork(range_.port)
    guard = GuardedHttp(allow_hosts=["Example.org"], resolver=resolver, network=network)
    assert (await guard.fetch("http://docs.example.org:8080/a")).status == 200
    with pytest.raises(ToolRefused, match=r"example.org.evil.test is not in allow_hosts \(example.org\)"):
        await guard.fetch("http://example.org.evil.test/")
    await guard.aclose()


async def test_error_statuses_and_unreachable_servers_fail_with_the_status():
    async def missing(request: web.Request) -> web.Response:
        return web.json_response({"error": "no such page"}, status=404)

    async with serve(_site(missing=missing)) as base:
        guard = GuardedHttp(allow_networks=LOOPBACK)
        with pytest.raises(ToolFailed, match='HTTP 404 Not Found: {"error": "no such page"}'):
            await guard.fetch(f"{base}/missing")
    with pytest.raises(ToolFailed, match="ConnectError"):
        await guard.fetch(f"{base}/missing")  # the server is gone
    with pytest.raises(ToolFailed, match="does not resolve"):
        await GuardedHttp(resolver=FakeResolver({})).fetch("http://nowhere.example/")
    await guard.aclose()


async def test_a_server_that_never_answers_times_out():
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="too late")

    async with serve(_site(hang=hang)) as base:
        guard = GuardedHttp(allow_networks=LOOPBACK, timeout_s=0.2)
        with pytest.raises(ToolFailed, match="no answer within 0.2 s") as caught:
            await guard.fetch(f"{base}/hang")
        assert caught.value.status_code == 504
        release.set()  # so the server shuts down now rather than waiting for the handler
        await guard.aclose()


def test_a_bad_network_in_the_allow_list_is_a_config_error():
    with pytest.raises(ConfigError, match="allow_networks"):
        GuardedHttp(allow_networks=["10.0.0.0/33"])


async def test_https_verifies_the_name_while_connecting_to_the_checked_address(tmp_path):
    """The URL keeps the name: SNI and the certificate check are for it, the TCP connection goes to the
    address the guard checked (here loopback, allowed)."""
    server_tls, client_tls = self_signed("tls.test", tmp_path)
    names: list[str | None] = []
    server_tls.sni_callback = lambda sock, name, ctx: names.append(name)
    async with serve(_site(hello=_hello), tls=server_tls) as base:
        port = base.rsplit(":", 1)[1]
        resolver = FakeResolver({"tls.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
        guard = GuardedHttp(allow_networks=LOOPBACK, resolver=resolver, verify=client_tls)
        fetched = await guard.fetch(f"https://tls.test:{port}/hello")
        assert fetched.text() == "hello -" and names == ["tls.test"]
        with pytest.raises(ToolFailed, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            await guard.fetch(f"https://other.test:{port}/hello")  # same address, a name the cert is not for
        await guard.aclose()
