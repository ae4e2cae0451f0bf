"""The compute side's Image API client (tasks/image_service.py) wired to the in-process Flask app: its requests
go through a requests transport adapter to the app's WSGI test client, with the compute's own service credential
(user "compute", role "service" in project "service"), so in-process compute steps fetch and upload images
exactly as a compute host does over HTTP."""
from __future__ import annotations

import io

import requests
from requests.structures import CaseInsensitiveDict

SERVICE_PASSWORD = "unit-compute-service"


class WSGIAdapter(requests.adapters.BaseAdapter):
    def __init__(self, app):
        super().__init__()
        self.client = app.test_client()
        self.requests: list[tuple[str, str]] = []  # (method, path) of each request, for tests that count them
        self.user_made = False

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        url = requests.utils.urlparse(request.url)
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        elif body is not None and not isinstance(body, (bytes, str)):
            body = b"".join(body)
        self.requests.append((request.method, url.path))
        if url.path.endswith("/auth/tokens") and not self.user_made:  # on first use: other tests count users
            make_service_user()
            self.user_made = True
        resp = self.client.open(url.path, query_string=url.query, method=request.method,
                                headers=dict(request.headers), data=body)
        out = requests.Response()
        out.status_code, out.url, out.request = resp.status_code, request.url, request
        out.headers = CaseInsensitiveDict(resp.headers)
        out._content, out._content_consumed = resp.get_data(), True
        out.raw = io.BytesIO(out._content)
        return out

    def close(self):
        pass


def make_service_user() -> None:
    """The compute's credential, as `flask stratus bootstrap` makes it with STRATUS_SERVICE_PASSWORD set."""
    from app.cli import ensure_compute_user
    from core import db
    with db.write_session() as s:
        ensure_compute_user(s)


def wire(app, base_url: str) -> WSGIAdapter:
    """Make the process's Image API client talk to ``app`` (the service user is made at its first sign-in)."""
    from tasks import image_service
    adapter = WSGIAdapter(app)
    session = requests.Session()
    session.mount(base_url, adapter)
    image_service.use(image_service.ImageService(session=session))
    return adapter
