"""The lab's guards, as Jupyter's: the Host check, the session token, the page's headers.

- Host: a request is served only when its Host header names the lab: localhost, 127.0.0.1
  or [::1] at the lab's port, or the --host it was started with. A web page elsewhere that
  makes its own domain resolve to 127.0.0.1 (DNS rebinding) sends its own name and is
  refused. Bound to every interface (0.0.0.0 or ::), the machine's names and any IP literal
  are accepted too.
- Token: a random secret made when the lab starts, written into the page it serves; the
  requests that start or stop training must carry it (header X-Cnnlab-Token). Another site's
  page cannot read it, and the custom header makes the browser ask the lab first (CORS
  preflight), which the lab never grants.
- Headers: a Content-Security-Policy that lets the page load and connect to the lab alone
  and run no inline script; no sniffing, no referrer, no framing.
"""

import ipaddress
import secrets
import socket

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse

from cnnlab.lab.errors import Forbidden

TOKEN_HEADER = "x-cnnlab-token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
WILDCARDS = ("0.0.0.0", "::", "")
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data: blob:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'; form-action 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_host(host: str) -> str:
    """`host` as a URL writes it: an IPv6 address in brackets."""
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


class HostCheck:
    """Which Host headers name the lab bound to `host`:`port`."""

    def __init__(self, host: str, port: int):
        self.port = port
        self.wildcard = host in WILDCARDS
        names = set(LOOPBACK_NAMES)
        if not self.wildcard:
            names.add(url_host(host))
        else:
            names |= {socket.gethostname(), socket.getfqdn()}
        self.allowed = {f"{name}:{port}".lower() for name in names}
        if port == 80:
            self.allowed |= {name.lower() for name in names}

    def allows(self, header: str) -> bool:
        header = header.strip().lower()
        if header in self.allowed:
            return True
        if not self.wildcard:
            return False
        name, _, port = header.rpartition(":")
        try:
            ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            return False
        return port == str(self.port)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def check_token(headers, token: str) -> None:
    """Forbidden unless the request carries the session's token."""
    given = headers.get(TOKEN_HEADER, "")
    if not given or not secrets.compare_digest(given.encode(), token.encode()):
        raise Forbidden("this needs the lab's session token (header X-Cnnlab-Token), which "
                        "only the lab's own page has: reload the page")


class Guard:
    """ASGI middleware: refuse a request whose Host is not the lab's (403, JSON), and add
    SECURITY_HEADERS to every response."""

    def __init__(self, app, host_check: HostCheck):
        self.app, self.host_check = app, host_check

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        host = Headers(scope=scope).get("host", "")
        if not self.host_check.allows(host):
            response = JSONResponse({"error": f"refused: the Host header {host!r} does not "
                                              "name this lab (DNS rebinding?)"}, 403)
            return await response(scope, receive, self._with_headers(send))
        return await self.app(scope, receive, self._with_headers(send))

    @staticmethod
    def _with_headers(send):
        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for key, value in SECURITY_HEADERS.items():
                    headers.setdefault(key, value)
            await send(message)
        return send_with_headers
