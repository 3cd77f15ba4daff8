# INTERIM
from __future__ import annotations

from typing import Any

import httpx

from qwen3_vl_rag.errors import ServerResponseError, ServerUnreachableError


class ServerClient:
    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 4,
        max_concurrency: int = 8,
    ) -> None:
        self.url = url.rstrip("/")
        self.max_concurrency = max_concurrency
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._c = httpx.Client(base_url=self.url, timeout=timeout, headers=headers, trust_env=False)
        self._a: httpx.AsyncClient | None = None
        self._headers = headers
        self._timeout = timeout

    def _check(self, r: httpx.Response) -> Any:
        if r.status_code != 200:
            raise ServerResponseError(
                f"{r.status_code} {r.text[:300]}", url=self.url, status=r.status_code
            )
        return r.json()

    def get(self, path: str) -> Any:
        try:
            return self._check(self._c.get(path))
        except httpx.ConnectError as e:
            raise ServerUnreachableError(f"cannot reach {self.url}", url=self.url) from e

    def post(self, path: str, body: Any) -> Any:
        return self._check(self._c.post(path, json=body))

    async def apost(self, path: str, body: Any) -> Any:
        if self._a is None:
            self._a = httpx.AsyncClient(
                base_url=self.url, timeout=self._timeout, headers=self._headers, trust_env=False
            )
        return self._check(await self._a.post(path, json=body))

    def close(self) -> None:
        self._c.close()
