"""python-telegram-bot's HTTP layer on aiohttp, Seda's own client library.

PTB's default (httpx) logs every request URL at INFO, and a Bot API URL holds the bot token;
this class logs nothing and never puts the URL into an error message.
"""

from __future__ import annotations

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

from gateway.http import HttpPool

_FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class AiohttpRequest(BaseRequest):
    """Sends Bot API calls with one aiohttp session (form-encoded, no file uploads)."""

    __slots__ = ("_connect_timeout", "_pool", "_read_timeout")

    def __init__(
        self, read_timeout: float = 10.0, connect_timeout: float = 5.0, pool_size: int = 64
    ) -> None:
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._pool = HttpPool(
            connector=lambda: aiohttp.TCPConnector(limit=pool_size),
            headers={"User-Agent": self.USER_AGENT},
        )

    @property
    def read_timeout(self) -> float | None:
        """The read timeout used when a call does not name one."""
        return self._read_timeout

    async def initialize(self) -> None:
        """Open the connection pool."""
        self._client()

    async def shutdown(self) -> None:
        """Close the connection pool."""
        await self._pool.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: object = BaseRequest.DEFAULT_NONE,
        write_timeout: object = BaseRequest.DEFAULT_NONE,
        connect_timeout: object = BaseRequest.DEFAULT_NONE,
        pool_timeout: object = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """One HTTP call to the Bot API: its status and body."""
        data: bytes | None = None
        if request_data is not None:
            if request_data.contains_files:
                raise NetworkError("file uploads are not supported by Seda's Telegram channel")
            # Form-encoded, as PTB's own client sends it (encoded here: aiohttp's FormData
            # costs more than the rest of a call).
            data = request_data.url_encoded_parameters().encode("ascii")
        read = _seconds(read_timeout, self._read_timeout)
        connect = _seconds(connect_timeout, self._connect_timeout)
        timeout = aiohttp.ClientTimeout(
            total=None if read is None else read + (connect or 0.0),
            sock_connect=connect,
        )
        try:
            async with self._client().request(
                method, url, data=data, headers=_FORM, timeout=timeout, allow_redirects=False
            ) as response:
                return response.status, await response.read()
        except TimeoutError:
            raise TimedOut("no answer from the Bot API in time") from None
        except aiohttp.ClientError as exc:
            raise NetworkError(f"connection to the Bot API failed: {type(exc).__name__}") from None

    async def download(self, url: str, limit: int) -> bytes | None:
        """GET a file from the Bot API's file URL: its bytes, None when bigger than `limit`."""
        timeout = aiohttp.ClientTimeout(total=self._read_timeout + self._connect_timeout)
        try:
            async with self._client().get(url, timeout=timeout, allow_redirects=False) as response:
                if response.status != 200:
                    raise NetworkError(f"file download refused: HTTP {response.status}")
                if (response.content_length or 0) > limit:
                    return None
                data = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > limit:
                        return None
                return bytes(data)
        except TimeoutError:
            raise TimedOut("no answer from the Bot API file server in time") from None
        except aiohttp.ClientError as exc:
            raise NetworkError(f"file download failed: {type(exc).__name__}") from None

    def _client(self) -> aiohttp.ClientSession:
        return self._pool.get()


def _seconds(value: object, default: float | None) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    if value is None:
        return None
    return default  # BaseRequest.DEFAULT_NONE: the default of this instance
