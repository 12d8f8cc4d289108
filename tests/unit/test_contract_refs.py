"""Image references: what the contract accepts before any DNS lookup."""

from __future__ import annotations

import pytest

from contract import RefError, RefKind, is_public_address, parse_image_ref

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("s3://my-bucket/in/a.png", RefKind.S3),
        ("https://huggingface.co/datasets/x/cat.png", RefKind.HTTPS),
        ("https://8.8.8.8/a.png", RefKind.HTTPS),
        (PNG_B64, RefKind.BASE64),
        ("data:image/png;base64," + PNG_B64, RefKind.BASE64),
    ],
)
def test_accepted(value: str, kind: RefKind) -> None:
    assert parse_image_ref(value).kind is kind


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("http://example.com/a.png", "scheme"),
        ("ftp://example.com/a.png", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("https://127.0.0.1/a", "public_address"),
        ("https://127.1/a", "public_address"),
        ("https://0x7f000001/a", "public_address"),
        ("https://[::ffff:127.0.0.1]/a", "public_address"),
        ("https://169.254.169.254/latest/meta-data", "public_address"),
        ("https://[fd00:ec2::254]/", "public_address"),
        ("https://192.168.1.1/", "public_address"),
        ("https://172.16.0.1/", "public_address"),
        ("https://100.64.0.1/", "public_address"),
        ("https://0.0.0.0/", "public_address"),
        ("https://localhost/", "public_address"),
        ("https://foo.localhost/", "public_address"),
        ("https://metadata.google.internal/", "public_address"),
        ("https://user:pw@example.com/", "url_credentials"),
        ("s3://UPPER/key", "s3_uri"),
        ("s3://bucket", "s3_uri"),
        ("not base64 at all", "base64"),
        ("", "image_ref"),
    ],
)
def test_refused(value: str, rule: str) -> None:
    with pytest.raises(RefError) as info:
        parse_image_ref(value)
    assert info.value.rule == rule


@pytest.mark.parametrize("address", ["10.0.0.1", "127.0.0.1", "::1", "fe80::1", "169.254.169.254", "224.0.0.1"])
def test_non_public_addresses(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ["1.1.1.1", "52.94.236.248", "2606:4700:4700::1111"])
def test_public_addresses(address: str) -> None:
    assert is_public_address(address)
