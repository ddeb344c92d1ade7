"""The remote cache layer: Turborepo's ``/v8/artifacts/{hash}`` protocol over httpx."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from vx import Artifact, CacheLayer

if TYPE_CHECKING:
    import httpx

#: Largest artifact accepted from a server (a hostile server could stream forever).
MAX_DOWNLOAD = 1 << 30
#: Attempts for idempotent reads on connection errors and 5xx responses.
READ_ATTEMPTS = 3


class RemoteCacheError(Exception):
    """A remote cache call failed; the kernel turns it into a miss plus one warning."""


def artifact_tag(key: bytes, hash: str, team: str, body: bytes) -> str:
    """Turborepo's ``x-artifact-tag``: base64(HMAC-SHA256(key, hash ‖ team ‖ body))."""
    mac = hmac.new(key, hash.encode() + team.encode() + body, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def redact(url: str) -> str:
    """``url`` without user info (``https://user:secret@host`` -> ``https://host``)."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    except ValueError:
        return "<invalid URL>"


class RemoteCache(CacheLayer):
    """The cache layer named ``remote``. Never raises anything but :class:`RemoteCacheError`.

    After a 401/403, or once the server proved unreachable or failing (connection errors,
    timeouts, truncated responses or 5xx after the retries), every later call fails at once
    without a request: a dead server costs one timeout per run, not one per task."""

    name = "remote"

    def __init__(
        self,
        url: str,
        team: str,
        token: str | None,
        *,
        read: bool = True,
        write: bool = True,
        timeout: float = 10.0,
        upload_timeout: float = 60.0,
        signature_key: bytes | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._shown_url = redact(self.url)
        self.team = team
        self.readable = read
        self.writable = write
        self.timeout = timeout
        self.upload_timeout = upload_timeout
        self.signature_key = signature_key
        self._token = token
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self.disabled: str | None = None

    def __repr__(self) -> str:  # never show the token
        return f"RemoteCache(url={self._shown_url!r}, team={self.team!r})"

    @property
    def _params(self) -> dict[str, str]:
        return {"teamId": self.team} if self.team.startswith("team_") else {"slug": self.team}

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                import httpx

                headers = {"User-Agent": "vx-remote-cache"}
                if self._token:
                    headers["Authorization"] = f"Bearer {self._token}"
                self._client = httpx.Client(
                    base_url=self.url, headers=headers, follow_redirects=True
                )
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _path(self, key: str) -> str:
        return f"/v8/artifacts/{key}"

    def _send(
        self,
        method: str,
        key: str,
        *,
        timeout: float,
        attempts: int,
        head: int | None = None,
        **kwargs: Any,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request with retries; returns status, headers and (size-bounded) body.
        ``head``: read at most about that many bytes of a GET's body, then drop the
        connection (``Range`` is asked for too; servers that ignore it send 200)."""
        if self.disabled:
            raise RemoteCacheError(self.disabled)
        import httpx

        where = f"{method} {self._shown_url}{self._path(key)[:30]}…"
        last: Exception | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(0.2 * 2 ** (attempt - 1))
            try:
                with self._http().stream(
                    method, self._path(key), params=self._params, timeout=timeout, **kwargs
                ) as response:
                    status = response.status_code
                    if status >= 500:
                        last = RemoteCacheError(f"{where}: HTTP {status}")
                        continue
                    body = b""
                    if method == "GET" and status in (200, 206):
                        body = self._read_bounded(response, head)
                    return status, dict(response.headers), body
            except httpx.TimeoutException:
                raise self._unavailable(f"{where}: timed out after {timeout:g}s") from None
            except httpx.TransportError as exc:
                last = RemoteCacheError(f"{where}: {_describe(exc)}")
        assert last is not None
        raise self._unavailable(str(last))

    def _unavailable(self, problem: str) -> RemoteCacheError:
        """The server is unreachable or failing: skip it for the rest of the run."""
        self.disabled = f"{problem}; remote cache disabled for this run"
        return RemoteCacheError(self.disabled)

    @staticmethod
    def _read_bounded(response: httpx.Response, head: int | None = None) -> bytes:
        declared = response.headers.get("content-length")
        too_big = declared is not None and declared.isdigit() and int(declared) > MAX_DOWNLOAD
        if too_big and head is None:
            raise RemoteCacheError(f"artifact of {declared} bytes exceeds the {MAX_DOWNLOAD} limit")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            chunks.append(chunk)
            if head is not None and size >= head:
                break  # the rest is not read: leaving the stream drops the connection
            if size > MAX_DOWNLOAD:
                raise RemoteCacheError(f"artifact exceeds the {MAX_DOWNLOAD} byte limit")
        return b"".join(chunks)

    def _check_status(self, status: int, key: str, method: str) -> None:
        if status in (401, 403):
            self.disabled = (
                f"remote cache disabled for this run: the server rejected the token (HTTP {status})"
            )
            raise RemoteCacheError(self.disabled)
        if status == 413:
            raise RemoteCacheError(
                f"{method} {key[:16]}: the server refused the artifact as too large (HTTP 413)"
            )
        raise RemoteCacheError(
            f"{method} {key[:16]}: unexpected HTTP {status} from {self._shown_url}"
        )

    # -- CacheLayer ------------------------------------------------------------

    def get(self, key: str) -> Artifact | None:
        status, headers, body = self._send("GET", key, timeout=self.timeout, attempts=READ_ATTEMPTS)
        if status == 404:
            return None
        if status != 200:
            self._check_status(status, key, "GET")
        if self.signature_key is not None:
            tag = headers.get("x-artifact-tag")
            expected = artifact_tag(self.signature_key, key, self.team, body)
            if not tag or not hmac.compare_digest(tag, expected):
                problem = "has no signature" if not tag else "has an invalid signature"
                raise RemoteCacheError(
                    f"remote artifact {key[:16]} {problem}; ignored (signature = true)"
                )
        duration = headers.get("x-artifact-duration", "0")
        return Artifact(
            key=key, data=body, duration_ms=float(duration) if duration.isdigit() else 0.0
        )

    def read_head(self, key: str, size: int) -> bytes | None:
        """The first ``size`` bytes (or more) of the artifact: a GET asking for that range,
        whose body is read only that far. With ``signature`` on, the whole artifact is read
        and verified (a tag covers the whole body)."""
        if self.signature_key is not None:
            artifact = self.get(key)
            return None if artifact is None else artifact.data
        status, _, body = self._send(
            "GET",
            key,
            timeout=self.timeout,
            attempts=READ_ATTEMPTS,
            head=size,
            headers={"Range": f"bytes=0-{size - 1}"},
        )
        if status == 404:
            return None
        if status not in (200, 206):
            self._check_status(status, key, "GET")
        return body

    def put(self, key: str, artifact: Artifact) -> None:
        headers = {
            "Content-Type": "application/octet-stream",
            "x-artifact-duration": str(int(artifact.duration_ms)),
        }
        if self.signature_key is not None:
            headers["x-artifact-tag"] = artifact_tag(
                self.signature_key, key, self.team, artifact.data
            )
        status, _, _ = self._send(
            "PUT",
            key,
            timeout=self.upload_timeout,
            attempts=1,
            content=artifact.data,
            headers=headers,
        )
        if status not in (200, 201, 202):
            self._check_status(status, key, "PUT")


def _describe(exc: Exception) -> str:
    import httpx

    if isinstance(exc, httpx.ConnectError):
        text = str(exc)
        if "Name or service not known" in text or "nodename nor servname" in text:
            return "DNS lookup failed"
        if "refused" in text.lower():
            return "connection refused"
        return f"cannot connect ({text})"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"truncated or malformed response ({exc})"
    return f"{type(exc).__name__}: {exc}"
