"""The client's HTTPS link to the coordinator, checked against the raw bytes a TLS server receives: the
byte count it reports is exactly what it writes, it sends only the headers the coordinator reads, and
every signed request carries one compact, canonical authentication header over its path, query and body."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.core.sync.client import CoordinatorLink, CoordinatorPin
from agent.federation.signing import (AUTH_HEADER, MalformedAuth, SignatureError, decode_base64url, device_id_of,
                                     encode_base64url, parse_request_auth, public_bytes, sign_request, verify_request)
from agent.server.app import ensure_tls_certificate


class RawServer:
    """A TLS server that records each HTTP/1.1 request's bytes exactly as received and answers {}."""

    def __init__(self, tmp_path) -> None:
        cert, key = ensure_tls_certificate(tmp_path / "tls", ["127.0.0.1"])
        self.certificate = cert.read_text()
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        raw, _ = self.listener.accept()
        with self.context.wrap_socket(raw, server_side=True) as connection:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _ = buffer.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, value = line.split(b":", 1)
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                size = len(head) + 4 + length
                while len(buffer) < size:
                    buffer += connection.recv(65536)
                self.requests.append(buffer[:size])
                buffer = buffer[size:]
                connection.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")

    def close(self) -> None:
        self.listener.close()


def parse(raw: bytes) -> tuple[str, str, dict[str, str], bytes]:
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ")
    assert version == "HTTP/1.1"
    headers = {}
    for line in lines[1:]:
        name, value = line.split(":", 1)
        assert name.lower() not in headers
        headers[name.lower()] = value.strip()
    return method, target, headers, body


def test_the_link_counts_exactly_the_bytes_it_writes_and_sends_only_what_the_coordinator_reads(tmp_path):
    server = RawServer(tmp_path)
    key = Ed25519PrivateKey.generate()
    link = CoordinatorLink(CoordinatorPin(f"https://127.0.0.1:{server.port}", bytes(32), server.certificate), key)
    try:
        round_path = "/v1/rounds/" + "ab" * 16
        link.request("GET", "/v1/releases/latest", signed=False)
        link.request("POST", "/v1/checkin", json.dumps({"device_public": public_bytes(key).hex()}).encode())
        link.request("GET", f"{round_path}/status", params={"since": "forming", "wait": 4.0})
        link.request("GET", f"{round_path}/status", params={"since": "advertise", "wait": 4.0})
        link.request("POST", f"{round_path}/advertise-keys", bytes(range(90)))
    finally:
        link.close()
    server.thread.join(timeout=10)
    server.close()

    assert len(server.requests) == 5
    assert link.bytes_sent == sum(len(r) for r in server.requests)  # exact, request lines and blank lines included
    sizes = [len(r) for r in server.requests]
    assert link.sent_by_kind == {"release": [1, sizes[0]], "checkin": [1, sizes[1]],
                                 "status": [2, sizes[2] + sizes[3]], "advertise-keys": [1, sizes[4]]}

    device = device_id_of(public_bytes(key))
    nonces = set()
    for raw, signed in zip(server.requests, (False, True, True, True, True), strict=True):
        method, target, headers, body = parse(raw)
        # No user-agent, accept, accept-encoding or connection: host, the length of a body, the signature.
        assert set(headers) == {"host"} | ({"content-length"} if body else set()) | ({AUTH_HEADER} if signed else set())
        if not signed:
            continue
        auth = parse_request_auth(headers[AUTH_HEADER])
        assert len(headers[AUTH_HEADER]) < 150 and auth.device_id == device
        assert abs(auth.seconds - time.time()) < 60
        verify_request(public_bytes(key), method, target, body, auth)  # over the target as received, query too
        nonces.add(auth.nonce)
        if "?" in target:
            altered = target.replace("wait=4.0", "wait=25")
            with pytest.raises(SignatureError):
                verify_request(public_bytes(key), method, altered, body, auth)
        with pytest.raises(SignatureError):
            verify_request(public_bytes(key), method, target, body + b"x", auth)
    assert len(nonces) == 4  # a fresh nonce for every request


def test_the_auth_header_is_strict_and_canonical():
    key = Ed25519PrivateKey.generate()
    header = sign_request(key, "GET", "/v1/rounds/x/status?since=a", b"")[AUTH_HEADER]
    device, timestamp, nonce, signature = header.split(".")
    assert (len(device), len(nonce), len(signature)) == (22, 22, 86) and timestamp.isdigit()
    assert decode_base64url(nonce, 16) and encode_base64url(decode_base64url(signature, 64)) == signature

    # The last character of a 16-byte value carries 4 unused bits: another letter decodes to the same
    # bytes, and would otherwise pass as a new nonce. It is refused.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = nonce[:-1] + alphabet[alphabet.index(nonce[-1]) ^ 1]
    with pytest.raises(MalformedAuth) as caught:
        parse_request_auth(".".join([device, timestamp, twin, signature]))
    assert caught.value.field == "nonce"
    for broken, field in [(".".join([device, timestamp, nonce]), "header"),
                          (".".join([device, "1.5", nonce, signature]), "header"),
                          (".".join([device, "-15", nonce, signature]), "timestamp"),
                          (".".join([device, "", nonce, signature]), "timestamp"),
                          (".".join([device[:-1], timestamp, nonce, signature]), "device"),
                          (".".join([device, timestamp, nonce + "A", signature]), "nonce"),
                          (".".join([device, timestamp, nonce, signature[:-2] + "=="]), "signature"),
                          (".".join([device, timestamp, nonce.replace(nonce[0], "+"), signature]), "nonce")]:
        with pytest.raises(MalformedAuth) as caught:
            parse_request_auth(broken)
        assert caught.value.field == field, broken
