"""A compute host's client of the Image API (issue 25: no shared disk with the controller): image metadata and
data downloads, snapshot uploads, with the host's own service credential (settings ``service_*``: a Keystone user
with the ``service`` role in project ``service``, never the admin). The token is fetched with Keystone v3 password
auth, cached per process and fetched again shortly before it expires or when the API answers 401."""
from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from typing import BinaryIO

import requests

from core.settings import Settings, get_settings
from drivers.base import DriverError, DriverUnavailable

CHUNK = 1 << 20
TIMEOUT = (10, 300)  # connect, read (seconds)


class ImageNotFound(DriverError):
    """The Image API has no such image (or does not show it to the compute's credential)."""


class ImageServiceError(DriverUnavailable):
    """The Image or Identity API cannot be reached or failed (5xx): the step is retried with backoff."""


def _expires(body: dict) -> datetime.datetime:
    raw = body["token"].get("expires_at") or "9999-12-31T00:00:00Z"
    return datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))


class ImageService:
    def __init__(self, settings: Settings | None = None, session: requests.Session | None = None):
        self.settings = settings or get_settings()
        self.http = session or requests.Session()
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expiry = datetime.datetime.min.replace(tzinfo=datetime.UTC)
        self._endpoint: str | None = self.settings.image_api_url.rstrip("/") or None

    # -- credential -----------------------------------------------------------------------------------------
    def _auth_url(self) -> str:
        return (self.settings.service_auth_url or f"{self.settings.public_url.rstrip('/')}/identity/v3").rstrip("/")

    def _authenticate(self) -> None:
        cfg = self.settings
        if not cfg.service_password:
            raise DriverError("This compute host has no Image API credential (set STRATUS_SERVICE_PASSWORD, "
                              "and STRATUS_SERVICE_USER if not 'compute').")
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": cfg.service_user, "domain": {"id": "default"}, "password": cfg.service_password}}},
            "scope": {"project": {"name": cfg.service_project, "domain": {"id": "default"}}}}}
        try:
            r = self.http.post(f"{self._auth_url()}/auth/tokens", json=body, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise ImageServiceError(f"Cannot reach the Identity API at {self._auth_url()}: {exc}") from None
        if r.status_code >= 500:
            raise ImageServiceError(f"The Identity API answered {r.status_code} to the compute's sign-in")
        if r.status_code != 201:
            raise DriverError(f"The compute's Image API credential was refused ({r.status_code}) by "
                              f"{self._auth_url()}")
        data = r.json()
        self._token, self._expiry = r.headers["X-Subject-Token"], _expires(data)
        if self._endpoint is None:
            self._endpoint = self._catalog_endpoint(data)

    @staticmethod
    def _catalog_endpoint(data: dict) -> str:
        for svc in data["token"].get("catalog") or ():
            if svc.get("type") == "image":
                for ep in svc.get("endpoints") or ():
                    if ep.get("interface") == "public":
                        return ep["url"].rstrip("/")
        raise DriverError("The service catalog has no public image endpoint; set STRATUS_IMAGE_API_URL")

    def _headers(self, renew: bool = False) -> dict[str, str]:
        with self._lock:
            soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=60)
            if renew or self._token is None or self._expiry <= soon:
                self._authenticate()
            return {"X-Auth-Token": self._token or ""}

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        """One request to the Image API, signing in again once on a 401 (an expired or revoked token)."""
        for attempt in (0, 1):
            headers = {**self._headers(renew=attempt == 1), **kwargs.pop("headers", {})}
            if attempt == 1 and hasattr(kwargs.get("data"), "rewind"):
                kwargs["data"].rewind()
            try:
                r = self.http.request(method, f"{self._endpoint}{path}", headers=headers, timeout=TIMEOUT, **kwargs)
            except requests.RequestException as exc:
                raise ImageServiceError(f"Cannot reach the Image API at {self._endpoint}: {exc}") from None
            if r.status_code != 401:
                break
            r.close()
        if r.status_code >= 500:
            r.close()
            raise ImageServiceError(f"The Image API answered {r.status_code} to {method} {path}")
        return r

    # -- images ---------------------------------------------------------------------------------------------
    def show(self, image_id: str) -> dict:
        r = self._call("GET", f"/v2/images/{image_id}")
        if r.status_code == 404:
            raise ImageNotFound(f"Image {image_id} could not be found in the Image service.")
        if r.status_code != 200:
            raise DriverError(f"The Image API answered {r.status_code} for image {image_id}")
        return r.json()

    def download(self, image_id: str) -> Iterator[bytes]:
        """The image's data in chunks (streamed; nothing is held in memory beyond one chunk)."""
        r = self._call("GET", f"/v2/images/{image_id}/file", stream=True)
        if r.status_code == 404:
            raise ImageNotFound(f"Image {image_id} could not be found in the Image service.")
        if r.status_code == 204:
            r.close()
            raise DriverError(f"Image {image_id} has no data in the Image service.")
        if r.status_code != 200:
            r.close()
            raise DriverError(f"The Image API answered {r.status_code} to the download of image {image_id}")
        try:
            yield from r.iter_content(CHUNK)
        except requests.RequestException as exc:
            raise ImageServiceError(f"The download of image {image_id} broke off: {exc}") from None
        finally:
            r.close()

    def upload(self, image_id: str, data: BinaryIO) -> int:
        """PUT the data as the image's (a snapshot's queued image); the status code (204, or 404/409 when the image
        was deleted or changed meanwhile). Other refusals raise DriverError."""
        r = self._call("PUT", f"/v2/images/{image_id}/file", data=data,
                       headers={"Content-Type": "application/octet-stream"})
        r.close()
        if r.status_code in (204, 404, 409, 410):
            return r.status_code
        raise DriverError(f"The Image API refused the snapshot data of image {image_id} ({r.status_code})")


_client: ImageService | None = None
_client_lock = threading.Lock()


def client() -> ImageService:
    """This process's client (one token per process; a new one when the settings were reloaded)."""
    global _client
    with _client_lock:
        if _client is None or _client.settings is not get_settings():
            _client = ImageService()
        return _client


def use(service: ImageService) -> None:
    """Make ``service`` this process's client (tests wire one to an in-process API)."""
    global _client
    with _client_lock:
        _client = service
