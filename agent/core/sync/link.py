"""The device's connection to one pinned coordinator (`CoordinatorLink`): HTTPS trusting only the pinned
certificate, every request signed with the device key (`federation.signing.sign_request`), every byte sent
counted by what it was for, and a refusal raised as `CoordinatorRefused` with the coordinator's code and,
when it named one, the time to ask again (`retry_after`). What the person pinned is a `CoordinatorPin`.
The round itself is `client.RoundRunner`'s."""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.federation.errors import SyncError
from agent.federation.signing import Release, sign_request, verify_release

# httpx sends these by default; HTTP/1.1 keeps the connection alive without being asked, the coordinator
# compresses nothing and answers every client alike: ~100 bytes a request saved.
UNSENT_HEADERS = ("accept", "accept-encoding", "connection", "user-agent")


class CoordinatorRefused(SyncError):
    """The coordinator answered with an error status; `code` is its machine-readable reason, `retry_after`
    the seconds after which it asked to be asked again (None: it named no time)."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"the coordinator refused ({status} {code}): {message}")
        self.status, self.code, self.reason, self.retry_after = status, code, message, retry_after


@dataclass(frozen=True)
class CoordinatorPin:
    """What the person pinned when joining: where the coordinator is, its TLS certificate (the only one
    trusted for this connection) and the Ed25519 key its releases must be signed with."""

    url: str
    signing_public_key: bytes
    tls_certificate: str

    @classmethod
    def from_json(cls, text: str) -> CoordinatorPin:
        data = json.loads(text)
        return cls(url=data["url"], signing_public_key=bytes.fromhex(data["signing_public_key"]),
                   tls_certificate=data["tls_certificate"])

    @classmethod
    def from_file(cls, path: Path) -> CoordinatorPin:
        return cls.from_json(Path(path).read_text())


class CoordinatorLink:
    """HTTPS to one pinned coordinator, every request signed by the device key.

    `bytes_sent` counts what this client writes at the HTTP layer, exactly as HTTP/1.1 puts it on the
    connection (request line, headers, blank line, body; TLS records and handshakes come on top);
    `sent_by_kind` splits it by what the request is for (`request_kind`): [requests, bytes]."""

    def __init__(self, pin: CoordinatorPin, device_key: Ed25519PrivateKey, timeout: float = 60.0) -> None:
        context = ssl.create_default_context(cadata=pin.tls_certificate)  # trust this certificate and nothing else
        self.http = httpx.Client(base_url=pin.url, verify=context, timeout=httpx.Timeout(timeout, connect=10.0))
        for unneeded in UNSENT_HEADERS:  # httpx's defaults: the coordinator reads none of them
            self.http.headers.pop(unneeded, None)
        self.pin = pin
        self.device_key = device_key
        self.bytes_sent = 0
        self.sent_by_kind: dict[str, list[int]] = {}

    def close(self) -> None:
        self.http.close()

    @staticmethod
    def request_kind(path: str) -> str:
        """checkin, release, info, or a round's endpoint (status, advertise-keys, envelopes, ...)."""
        parts = path.split("?", 1)[0].strip("/").split("/")
        if len(parts) == 4 and parts[:2] == ["v1", "rounds"]:
            return parts[3]
        return {"releases": "release"}.get(parts[1], parts[1]) if len(parts) > 1 else path

    @staticmethod
    def wire_size(request: httpx.Request) -> int:
        """The bytes HTTP/1.1 writes for `request`: "METHOD target HTTP/1.1\r\n", "name: value\r\n" per
        header, "\r\n", the body."""
        return (len(request.method) + len(request.url.raw_path) + len(b"  HTTP/1.1\r\n")
                + sum(len(k) + len(v) + 4 for k, v in request.headers.raw) + 2 + len(request.content))

    def build(self, method: str, path: str, body: bytes = b"", params: dict[str, Any] | None = None,
              signed: bool = True) -> httpx.Request:
        """A request ready to `send` (its `wire_size` is what sending it adds to `bytes_sent`)."""
        request = self.http.build_request(method, path, content=body or None, params=params)
        if signed:  # over the target exactly as sent: path and query
            request.headers.update(sign_request(self.device_key, method, request.url.raw_path.decode("ascii"), body))
        return request

    def request(self, method: str, path: str, body: bytes = b"", params: dict[str, Any] | None = None,
                signed: bool = True) -> httpx.Response:
        return self.send(self.build(method, path, body, params, signed))

    def send(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        size = self.wire_size(request)
        self.bytes_sent += size
        tally = self.sent_by_kind.setdefault(self.request_kind(path), [0, 0])
        tally[0] += 1
        tally[1] += size
        response = self.http.send(request)
        if response.status_code >= 400:
            try:
                data = response.json()
                retry = data.get("retry_after", response.headers.get("retry-after"))
                retry_after = None if retry is None else max(0.0, float(retry))
                raise CoordinatorRefused(response.status_code, data.get("error", "error"), data.get("message", ""),
                                         retry_after)
            except (ValueError, AttributeError, TypeError):
                raise CoordinatorRefused(response.status_code, "http_error", response.text[:200]) from None
        return response

    def latest_release(self, newer_than: int | None = None) -> Release:
        body = self.request("GET", "/v1/releases/latest", signed=False).content
        return verify_release(body, self.pin.signing_public_key, newer_than=newer_than)
