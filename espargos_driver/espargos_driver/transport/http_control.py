"""The ESPARGOS controller's HTTP control API (spec section 1.1), on any host and port."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from ..protocol.constants import KNOWN_REVISIONS, SUPPORTED_API_MAJOR


class BoardError(RuntimeError):
    """A board could not be reached or answered wrongly. ``reason`` is a diagnostics counter name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass
class BoardInfo:
    generation: int
    """3 for API-3 firmware, 1 for the prototype."""
    api_version: str
    hostname: str


class BoardHttp:
    """Blocking HTTP client for one controller. Requests with a body are POSTs, others GETs."""

    def __init__(self, host: str, port: int, timeout_s: float = 5.0) -> None:
        self.base = f"http://{host}:{port}"
        self.timeout_s = timeout_s

    def request(self, path: str, body: str | dict | None = None) -> str:
        data = None
        if body is not None:
            data = (json.dumps(body) if isinstance(body, dict) else str(body)).encode()
        try:
            with urllib.request.urlopen(urllib.request.Request(self.base + path, data=data),
                                        timeout=self.timeout_s) as resp:
                return resp.read().decode(errors="replace")
        except urllib.error.HTTPError as err:
            raise BoardError("http_status", f"{path}: HTTP {err.code}") from err
        except (urllib.error.URLError, OSError) as err:
            raise BoardError("unreachable", f"{self.base}{path}: {getattr(err, 'reason', err)}") from err

    def get_json(self, path: str) -> dict:
        text = self.request(path)
        try:
            return json.loads(text)
        except ValueError as err:
            raise BoardError("bad_response", f"{path}: not JSON: {text[:80]!r}") from err

    def command(self, path: str, body: str | dict) -> None:
        """POST a command that must answer ``ok``."""
        text = self.request(path, body)
        if text.strip() != "ok":
            raise BoardError("bad_response", f"{path} answered {text[:80]!r}, expected 'ok'")

    def identify(self) -> BoardInfo:
        """Identify the board and check its firmware API; raises BoardError('api_version') if unsupported."""
        ident = self.request("/identify")
        if "ESPARGOS" not in ident:
            raise BoardError("not_espargos", f"{self.base} is not an ESPARGOS controller: {ident[:60]!r}")
        try:
            api = self.get_json("/api_info")
        except BoardError as err:
            if err.reason == "http_status" and ident.strip() == "ESPARGOS":
                return BoardInfo(1, "prototype", self._hostname())
            raise BoardError("api_version", f"no usable /api_info ({err}); update the controller firmware") from err
        major = api.get("api-major")
        if major != SUPPORTED_API_MAJOR:
            raise BoardError("api_version", f"controller API {major}.{api.get('api-minor')} is not supported "
                                            f"(need {SUPPORTED_API_MAJOR}.x); update firmware or driver")
        if (api.get("device"), api.get("revision")) not in KNOWN_REVISIONS:
            raise BoardError("api_version", f"unknown board revision {api.get('device')}/{api.get('revision')}")
        return BoardInfo(3, f"{major}.{api.get('api-minor')}", self._hostname())

    def _hostname(self) -> str:
        return str(self.get_json("/get_netconf").get("hostname", ""))
