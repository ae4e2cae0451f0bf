"""Each API's error bodies are its reference service's: Glance's are webob's rendering (checked here against
webob itself, as the oracle), Keystone's and keystonemiddleware's are {"error": {...}}, Nova's its fault."""
from __future__ import annotations

import pytest
import webob.exc
from webob import Request

from app.error_formats import negotiate, webob_error

ACCEPTS = [None, "", "*/*", "application/json", "text/html", "text/plain", "text/*", "application/*",
           "application/json, text/html", "application/json;q=0.5, text/html;q=0.4", "text/html;q=0, */*",
           "text/html;level=1, application/json;q=0.2", "application/json;q=0", "image/png", "not a media type",
           "text/html;q=2", "*/*;q=0.1, application/json;q=0.1", "Application/JSON"]
MESSAGES = ["No image found with ID 6f1c0e9e-94ad-4c2f-9b3a-111111111111", "Attribute 'id' is read-only.",
            "Invalid value '<script>&\"' for field 'visibility'", "Nom d'image ç déjà pris \u2603"]


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("code", [400, 403, 404, 409, 413, 415, 503])
@pytest.mark.parametrize("message", MESSAGES)
def test_image_errors_are_webobs(accept, code, message):
    """Byte for byte what Glance answers: webob.exc.HTTP<code>(explanation=msg) for the same Accept header."""
    req = Request.blank("/v2/images/x", content_type="application/x-<bad>")
    if accept is not None:
        req.headers["Accept"] = accept
    exc_class = webob.exc.status_map[code]
    expected = req.get_response(exc_class(detail=message) if code == 415 else exc_class(explanation=message))
    body, content_type = webob_error(code, message, accept, "application/x-<bad>")
    assert content_type == expected.headers["Content-Type"]
    assert body.encode() == expected.body


def test_negotiation_prefers_html_then_json_then_plain():
    assert negotiate(None) == negotiate("") == "text/plain"  # webob: no Accept header is a valid, empty one
    assert negotiate("*/*") == "text/html"  # what python-glanceclient sends
    assert negotiate("application/json") == "application/json"
    assert negotiate("garbage") == "text/html"  # an invalid header accepts everything


def test_api_error_bodies(client, admin):
    """Glance's by Accept, Keystone's, Nova's, and keystonemiddleware's 401 (with where to authenticate) on all."""
    missing = "00000000-0000-0000-0000-000000000000"
    r = client.get(f"/image/v2/images/{missing}", headers={**admin.headers, "Accept": "*/*"})
    assert r.status_code == 404 and r.content_type == "text/html; charset=UTF-8"
    assert f"No image found with ID {missing}<br /><br />" in r.get_data(as_text=True)
    r = client.get(f"/image/v2/images/{missing}", headers={**admin.headers, "Accept": "application/json"})
    assert r.get_json() == {"message": f"No image found with ID {missing}<br /><br />\n\n\n",
                            "code": "404 Not Found", "title": "Not Found"}
    r = client.get(f"/image/v2/images/{missing}", headers=admin.headers)
    assert r.get_data(as_text=True) == f"404 Not Found\n\nNo image found with ID {missing}\n\n   "
    r = client.get("/identity/v3/projects/nope", headers=admin.headers)
    assert r.status_code == 404 and list(r.get_json()["error"]) == ["code", "title", "message"]
    assert r.get_json()["error"]["title"] == "Not Found"
    r = client.get(f"/v2.1/servers/{missing}", headers=admin.headers)
    assert r.get_json() == {"itemNotFound": {"code": 404, "message": f"Instance {missing} could not be found."}}
    for url in ("/v2.1/servers", "/image/v2/images", "/identity/v3/projects"):
        r = client.get(url, headers={"X-Auth-Token": "not-a-token", "Accept": "*/*"})
        assert r.status_code == 401 and r.get_json() == {"error": {
            "code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}
        assert r.headers["WWW-Authenticate"] == 'Keystone uri="http://stratus.test/identity"'
