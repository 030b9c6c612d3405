"""The client's address, as the per-address limits count it (sign-up, log-in lockout).

By default it is the socket's peer (``REMOTE_ADDR``): a header such as X-Forwarded-For is
written by whoever sends the request, so trusting it by default would let a client pick a
fresh address for every attempt. Behind reverse proxies the peer is the proxy, so every
client would share one budget: name the header the proxies set
(``CHAT_CLIENT_ADDRESS_HEADER``) and how many proxies append to it
(``CHAT_TRUSTED_PROXY_COUNT``). Each proxy appends the address it received the request from,
so with N trusted proxies the client is the N-th entry from the right; entries further left
were written by the client and are ignored.

An IPv6 client is counted by its /64 network: one host is usually given a whole /64, and
counting single addresses would let it walk through 2**64 of them.

No library for this (django-axes can use python-ipware): the rule above is a few lines, and
django-axes is pointed at ``limited_address`` so log-in lockout counts the very same address.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest

UNKNOWN = "0.0.0.0"  # no peer address (a Unix socket): all such clients share one budget
IPV6_NETWORK_BITS = 64


def client_address(request: HttpRequest) -> str:
    """The client's address: from the trusted proxies' header if configured, else the peer."""
    peer = request.META.get("REMOTE_ADDR") or UNKNOWN
    header = settings.CHAT_CLIENT_ADDRESS_HEADER
    if not header:
        return peer
    value = request.headers.get(header, "")
    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    if not entries:
        return peer  # the proxy did not set it: a request that bypassed it, or misconfiguration
    # Fewer entries than proxies: the left-most is the farthest any trusted proxy saw.
    chosen = entries[-min(settings.CHAT_TRUSTED_PROXY_COUNT, len(entries))]
    return chosen if _parse(chosen) is not None else peer


def limited_address(request: HttpRequest) -> str:
    """The address limits are counted by: the client's IPv4 address, or its IPv6 /64.

    Also django-axes' ``AXES_CLIENT_IP_CALLABLE``, so log-in lockout counts the same way.
    """
    address = _parse(client_address(request))
    if address is None:
        return UNKNOWN
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # ::ffff:192.0.2.1 is 192.0.2.1
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network((address, IPV6_NETWORK_BITS), strict=False)
        return str(network.network_address)
    return str(address)


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
    except ValueError:
        return None
