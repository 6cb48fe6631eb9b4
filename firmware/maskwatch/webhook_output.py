"""HTTP webhook (SPEC F15): one signed JSON POST per alarm.

The body is the alarm's JSON object (``tcp_output.message_fields`` with every field), compact
UTF-8. Two headers let the receiver check it came from this device and is fresh:

    X-Maskwatch-Timestamp: <unix seconds when sent>
    X-Maskwatch-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>

(no signature header when ``secret`` is empty). One ``send`` is one POST: the dispatcher
retries with back-off. A 2xx answer is success; 5xx, 408, 429, timeouts and connection errors
are worth retrying; any other 4xx and redirects are not (the request itself is wrong). TLS
certificates are verified unless ``verify_tls = false``; ``ca_file`` adds a private CA.
Proxy variables of the environment are not used: the appliance talks to the URL directly.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from maskwatch import __version__
from maskwatch.alarm_message import AlarmMessage, Output, OutputError
from maskwatch.tcp_output import message_fields

RETRYABLE_4XX = (408, 429)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Maskwatch-Signature value for this timestamp and body."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body,
                   hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def body_of(message: AlarmMessage) -> bytes:
    return json.dumps(message_fields(message, additional_data=True), separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        return None  # the 3xx then surfaces as an HTTPError


class WebhookOutput(Output):
    def __init__(
        self,
        url: str,
        secret: str = "",
        *,
        timeout_s: float = 5.0,
        verify_tls: bool = True,
        ca_file: str = "",
    ) -> None:
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s
        parts = urlsplit(url)
        self.name = f"webhook:{parts.scheme}://{parts.netloc}{parts.path}"
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({}),
                                                       _NoRedirect()]
        if parts.scheme == "https":
            if verify_tls:
                context = ssl.create_default_context(cafile=ca_file or None)
            else:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self._opener = urllib.request.build_opener(*handlers)

    def request_for(self, message: AlarmMessage,
                    now: float | None = None) -> urllib.request.Request:
        body = body_of(message)
        timestamp = str(int(time.time() if now is None else now))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"maskwatch/{__version__}",
            "X-Maskwatch-Timestamp": timestamp,
            "X-Maskwatch-Event": message.event_id,
        }
        if self.secret:
            headers["X-Maskwatch-Signature"] = sign(self.secret, timestamp, body)
        return urllib.request.Request(self.url, data=body, headers=headers, method="POST")

    def send(self, message: AlarmMessage) -> None:
        request = self.request_for(message)
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                response.read(65536)
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except (TimeoutError, socket.timeout):
            raise OutputError(f"{self.name}: no answer within {self.timeout_s:g} s") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise OutputError(f"{self.name}: TLS certificate not trusted "
                                  f"({reason.verify_message}); set ca_file") from None
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise OutputError(f"{self.name}: no answer within {self.timeout_s:g} s") from None
            raise OutputError(f"{self.name}: {reason}") from None
        except OSError as exc:  # e.g. a reset while reading the answer
            raise OutputError(f"{self.name}: {exc}") from None
        if 200 <= status < 300:
            return
        if status >= 500 or status in RETRYABLE_4XX:
            raise OutputError(f"{self.name}: HTTP {status}", retry=True)
        if 300 <= status < 400:
            raise OutputError(f"{self.name}: HTTP {status} redirect; set url to the final "
                              "address", retry=False)
        raise OutputError(f"{self.name}: HTTP {status} (rejected; not retried)", retry=False)
