"""Fetching https:// inputs: real TLS against a local server whose name the test resolves.

The address policy under test is the contract's ``is_public_address``; the only test-specific
allowance is the loopback address of the local server, which plays the "public" host.
"""

from __future__ import annotations

import pytest

from queue_agent.errors import PermanentError, TransientError
from queue_agent.fetch import InputRefused
from tests.agent_fakes.fixtures import tls_certs_fixture, tls_server_fixture  # noqa: F401
from tests.agent_fakes.images import png
from tests.agent_fakes.tls import IMAGE_HOST as HOST
from tests.agent_fakes.tls import Reply, Resolver, TlsServer
from tests.agent_fakes.tls import local_fetcher as fetcher


def url(server: TlsServer, path: str, host: str = HOST) -> str:
    return f"https://{host}:{server.port}{path}"


async def test_fetches_over_verified_tls_from_the_vetted_address(certs, server: TlsServer) -> None:
    server.routes["/cat.png"] = Reply(body=png(4), headers={"Content-Type": "image/png"})
    resolver = Resolver({HOST: ["127.0.0.1"]})
    assert await fetcher(certs, resolver).fetch(url(server, "/cat.png")) == png(4)
    # The name was resolved once, and the TLS handshake and Host header still carried the name.
    assert resolver.lookups == [HOST]
    assert server.requests == [("/cat.png", f"{HOST}:{server.port}", HOST)]


async def test_a_certificate_for_another_name_is_refused(certs, server: TlsServer) -> None:
    server.routes["/x"] = Reply(body=b"x")
    other = "cdn.example.org"  # resolves to the same server, whose certificate does not name it
    with pytest.raises(TransientError):
        await fetcher(certs, Resolver({other: ["127.0.0.1"]})).fetch(url(server, "/x", other))


@pytest.mark.parametrize("answer", [["10.0.0.7"], ["169.254.169.254"], ["127.0.0.1", "192.168.1.4"], ["::1"]])
async def test_a_name_resolving_to_any_non_public_address_is_refused_before_connecting(
    certs, server: TlsServer, answer: list[str]
) -> None:
    sneaky = "sneaky.example.net"
    with pytest.raises(InputRefused, match="non-public"):
        await fetcher(certs, Resolver({sneaky: answer})).fetch(url(server, "/x", sneaky))
    assert server.requests == []


async def test_redirects_are_vetted_hop_by_hop(certs, server: TlsServer) -> None:
    inside = "internal.example.net"
    server.routes["/moved"] = Reply(302, headers={"Location": f"https://{HOST}:{server.port}/here"})
    server.routes["/here"] = Reply(body=b"final")
    server.routes["/escape"] = Reply(302, headers={"Location": f"https://{inside}/secret"})
    resolver = Resolver({HOST: ["127.0.0.1"], inside: ["10.1.2.3"]})
    assert await fetcher(certs, resolver).fetch(url(server, "/moved")) == b"final"
    with pytest.raises(InputRefused, match="non-public"):
        await fetcher(certs, resolver).fetch(url(server, "/escape"))
    server.routes["/plain"] = Reply(302, headers={"Location": "http://example.com/x.png"})
    with pytest.raises(InputRefused, match="https"):
        await fetcher(certs, resolver).fetch(url(server, "/plain"))


async def test_redirect_loops_are_bounded(certs, server: TlsServer) -> None:
    server.routes["/loop"] = Reply(302, headers={"Location": "/loop"})
    with pytest.raises(InputRefused, match="redirects"):
        await fetcher(certs, Resolver({HOST: ["127.0.0.1"]}), max_redirects=2).fetch(url(server, "/loop"))
    assert len(server.requests) == 3


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "streamed"])
async def test_inputs_over_the_size_limit_are_refused(certs, server: TlsServer, chunked: bool) -> None:
    server.routes["/big"] = Reply(body=b"x" * 10_000, chunked=chunked)
    with pytest.raises(InputRefused, match="limit"):
        await fetcher(certs, Resolver({HOST: ["127.0.0.1"]}), max_bytes=4096).fetch(url(server, "/big"))


async def test_slow_hosts_time_out_as_transient(certs, server: TlsServer) -> None:
    server.routes["/slow"] = Reply(body=b"x", delay=3)
    with pytest.raises(TransientError) as info:
        await fetcher(certs, Resolver({HOST: ["127.0.0.1"]}), timeout=0.5).fetch(url(server, "/slow"))
    assert info.value.code == "input_timeout"


@pytest.mark.parametrize(("status", "kind"), [(404, PermanentError), (403, PermanentError), (503, TransientError)])
async def test_error_statuses_are_classified(certs, server: TlsServer, status: int, kind: type) -> None:
    server.routes["/e"] = Reply(status, b"no")
    with pytest.raises(kind):
        await fetcher(certs, Resolver({HOST: ["127.0.0.1"]})).fetch(url(server, "/e"))


@pytest.mark.parametrize(
    "bad", ["http://images.example.com/x.png", "https://localhost/x", "https://user:pw@images.example.com/x"]
)
async def test_urls_the_contract_refuses_never_resolve(certs, bad: str) -> None:
    resolver = Resolver({})
    with pytest.raises(InputRefused):
        await fetcher(certs, resolver).fetch(bad)
    assert resolver.lookups == []


async def test_unresolvable_names_are_refused(certs) -> None:
    with pytest.raises(InputRefused, match="does not resolve"):
        await fetcher(certs, Resolver({})).fetch("https://nowhere.example.com/x.png")
