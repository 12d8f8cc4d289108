"""Image inputs: inline base64, ``s3://`` object references or public ``https://`` URLs.

The same address rules serve the contract (literal hosts, before any DNS) and the agent
(every address a name resolves to, before connecting).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import socket
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_DATA_URL_RE = re.compile(r"^data:image/[a-z0-9.+-]+;base64,", re.IGNORECASE)
_BLOCKED_HOSTNAMES = frozenset(
    {"localhost", "metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal"}
)
# Cloud metadata endpoints that are not covered by the link-local range.
_METADATA_ADDRESSES = frozenset({ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")})


class RefKind(StrEnum):
    BASE64 = "base64"
    S3 = "s3"
    HTTPS = "https"


@dataclass(frozen=True)
class ImageRef:
    kind: RefKind
    value: str
    bucket: str | None = None
    key: str | None = None
    host: str | None = None


class RefError(ValueError):
    """A reference the contract refuses; ``rule`` names the broken rule."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def is_public_address(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """False for loopback, private, link-local, metadata, multicast, reserved and unspecified addresses."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA_ADDRESSES:
        return False
    return not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    # inet_aton also accepts forms like "2130706433" or "0x7f.1": treat those as addresses too.
    if re.fullmatch(r"[0-9a-fx.]+", host, re.IGNORECASE) and not re.fullmatch(r"[0-9.]+\.[a-z]+", host):
        try:
            return ipaddress.ip_address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_https_url(url: str) -> str:
    """Validate a URL's shape and literal host; returns the host. DNS results are checked by the agent."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise RefError("https_only", f"only https:// URLs are accepted, got {parts.scheme or 'no'} scheme")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise RefError("url_host", "URL has no host")
    if parts.username or parts.password:
        raise RefError("url_credentials", "URLs with embedded credentials are refused")
    if host in _BLOCKED_HOSTNAMES or host.endswith(".localhost") or host.endswith(".internal"):
        raise RefError("public_address", f"host {host!r} is not a public address")
    literal = _literal_ip(host)
    if literal is not None and not is_public_address(literal):
        raise RefError("public_address", f"host {host!r} is a loopback, private, link-local or metadata address")
    return host


def parse_image_ref(value: str) -> ImageRef:
    """Classify and check one image input. Raises RefError naming the rule."""
    if not isinstance(value, str) or not value:
        raise RefError("image_ref", "an image must be base64 data, an s3:// URI or an https:// URL")
    head = value[:16].lower()
    if head.startswith("s3://"):
        rest = value[5:]
        bucket, _, key = rest.partition("/")
        if not _BUCKET_RE.match(bucket) or not key:
            raise RefError("s3_uri", "s3 URI must look like s3://bucket/key")
        return ImageRef(RefKind.S3, value, bucket=bucket, key=key)
    if head.startswith("https://"):
        return ImageRef(RefKind.HTTPS, value, host=check_https_url(value))
    if "://" in value[:32]:
        scheme = value.split("://", 1)[0]
        raise RefError("scheme", f"{scheme}:// is not accepted; use base64 data, s3:// or https://")
    data = _DATA_URL_RE.sub("", value, count=1)
    try:
        base64.b64decode(data[: 4096 - (4096 % 4)] if len(data) > 4096 else data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RefError("base64", "image is neither valid base64 nor an s3:// or https:// reference") from exc
    return ImageRef(RefKind.BASE64, value)
