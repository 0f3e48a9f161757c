"""Where the broker is and how to log in: parsed from ``mqtt://`` / ``mqtts://`` URLs.

Passwords never go in the URL (it ends up in argv and shell history): they come as their
own argument, from the environment or a prompt. The TLS context is the caller's: the
device's factory client certificate (``service.cloud.device_broker_tls``) or a system CA
store for a host.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

import aiomqtt

from bleprov.broker.wire import DEFAULT_PREFIX
from bleprov.core.errors import BleprovError

DEFAULT_PORT: Final = 1883
DEFAULT_TLS_PORT: Final = 8883


class BrokerError(BleprovError):
    """The broker could not be reached, refused us, or went away."""


class BrokerUrlError(BrokerError):
    """A broker URL is not ``mqtt://host[:port]`` or ``mqtts://host[:port]``."""


@dataclass(frozen=True, repr=False)
class BrokerConfig:
    """How to reach the broker. ``password`` stays out of ``repr``."""

    host: str
    port: int = DEFAULT_PORT
    tls: ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    prefix: str = DEFAULT_PREFIX
    keepalive: int = 30
    #: Seconds to wait for the broker's answer to CONNECT, SUBSCRIBE or PUBLISH.
    timeout: float = 10.0
    #: Incoming messages buffered before the client drops more: a flood on our topics
    #: costs bounded memory (a dropped session message fails the session, as it must).
    max_queued_incoming: int = 1024

    def __repr__(self) -> str:
        return f"BrokerConfig({self}, prefix={self.prefix!r})"

    def __str__(self) -> str:
        """The broker as a person names it in a message: its URL (never credentials)."""
        scheme = "mqtts" if self.tls is not None else "mqtt"
        return f"{scheme}://{self.host}:{self.port}"

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        tls: ssl.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
        prefix: str = DEFAULT_PREFIX,
    ) -> BrokerConfig:
        """``mqtt://host[:port]`` (plain) or ``mqtts://host[:port]`` (TLS; the system's
        CA store unless ``tls`` is given). A user name may be in the URL, a password not."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise BrokerUrlError("the broker URL's port is not a number in 1..65535") from None
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise BrokerUrlError("a broker URL is mqtt://host[:port] or mqtts://host[:port]")
        if parts.password is not None:
            raise BrokerUrlError(
                "do not put the broker password in the URL (it would show in the process "
                "list); pass it separately, e.g. from BLEPROV_BROKER_PASSWORD"
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise BrokerUrlError("a broker URL has no path, query or fragment")
        secure = parts.scheme == "mqtts"
        if secure and tls is None:
            tls = ssl.create_default_context()
        if not secure and tls is not None:
            raise BrokerUrlError("a TLS context was given for a plain mqtt:// URL: use mqtts://")
        return cls(
            host=parts.hostname,
            port=port or (DEFAULT_TLS_PORT if secure else DEFAULT_PORT),
            tls=tls,
            username=username if username is not None else parts.username,
            password=password,
            prefix=prefix,
        )

    def client(
        self,
        *,
        identifier: str | None = None,
        will: aiomqtt.Will | None = None,
        queue_type: type[asyncio.Queue[aiomqtt.Message]] | None = None,
    ) -> aiomqtt.Client:
        """A fresh (clean-session) aiomqtt client for this broker; ``queue_type`` holds
        its incoming messages (the device's :class:`~bleprov.broker.device.Inbox`)."""
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=identifier,
            will=will,
            clean_session=True,
            keepalive=self.keepalive,
            timeout=self.timeout,
            tls_context=self.tls,
            max_queued_incoming_messages=self.max_queued_incoming,
            queue_type=queue_type,
        )
