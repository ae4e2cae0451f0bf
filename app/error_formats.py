"""Error bodies as each reference service writes them (no Flask here; app/errors.py picks one per API).

- Keystone, and keystonemiddleware's 401 in front of Nova and Glance: ``{"error": {"code", "title", "message"}}``.
- Nova: ``{"<faultName>": {"code", "message"}}`` (nova/api/openstack/wsgi.py).
- Neutron: ``{"NeutronError": {"type", "message", "detail"}}``.
- Glance: webob's rendering of ``webob.exc.HTTPNotFound(explanation=msg)``, chosen by the request's Accept header
  among text/html and application/json, else text/plain (webob's ``WSGIHTTPException.generate_response``).
  python-glanceclient sends ``Accept: */*`` and so reads the HTML page; webob's JSON has the *status line* as its
  ``code``, which is why a JSON body with an integer code broke glanceclient's parser.
"""
from __future__ import annotations

import html
import json
import re

# webob's titles (webob/exc.py), also Keystone's exception titles for these codes.
TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
          406: "Not Acceptable", 409: "Conflict", 410: "Gone", 411: "Length Required",
          413: "Request Entity Too Large", 415: "Unsupported Media Type", 429: "Too Many Requests",
          500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}

# Nova's fault names (nova/api/openstack/wsgi.py Fault._fault_names); anything else is "computeFault".
NOVA_FAULT_NAMES = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
                    405: "badMethod", 409: "conflictingRequest", 413: "overLimit", 415: "badMediaType",
                    429: "overLimit", 501: "notImplemented", 503: "serviceUnavailable"}

AUTH_REQUIRED = "The request you have made requires authentication."


def title(code: int) -> str:
    return TITLES.get(code, "Error")


def keystone_body(code: int, message: str) -> dict:
    return {"error": {"code": code, "title": title(code), "message": message}}


# webob's exception class names: the ``type`` of Neutron's body for an error raised as a bare HTTP error.
WEBOB_NAMES = {400: "HTTPBadRequest", 403: "HTTPForbidden", 404: "HTTPNotFound", 405: "HTTPMethodNotAllowed",
               409: "HTTPConflict", 413: "HTTPRequestEntityTooLarge", 415: "HTTPUnsupportedMediaType",
               500: "HTTPInternalServerError", 501: "HTTPNotImplemented", 503: "HTTPServiceUnavailable"}


def neutron_body(code: int, message: str, error_type: str | None = None) -> dict:
    """Neutron's (neutron/api/api_common.py convert_exception_to_http_exc): ``{"NeutronError": {"type": <the
    exception's class name>, "message", "detail": ""}}``; what the plugin does not implement is a 501 under
    ``NotImplementedError``."""
    data = {"type": error_type or WEBOB_NAMES.get(code, "HTTPInternalServerError"), "message": message,
            "detail": ""}
    return {"NotImplementedError" if code == 501 else "NeutronError": data}


def nova_body(code: int, message: str) -> dict:
    return {NOVA_FAULT_NAMES.get(code, "computeFault"): {"code": code, "message": message}}


# --- webob's content negotiation and templates (Glance) ----------------------------------------------------------

_OFFERS = ("text/html", "application/json")
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_RANGE = re.compile(rf"^(\*/\*|{_TOKEN}/\*|{_TOKEN}/{_TOKEN})$")
_PARAM = re.compile(rf'^({_TOKEN})=({_TOKEN}|"(?:[^"\\]|\\.)*")$')
_QVALUE = re.compile(r"^(0(\.\d{0,3})?|1(\.0{0,3})?)$")
_BR = re.compile(r"<br.*?>", re.I | re.S)
_TAG = re.compile(r"<.*?>", re.S)


def _parse_accept(value: str) -> list[tuple[str, float, tuple]] | None:
    """The media ranges of an Accept header as (type/subtype, q, media type params), or None when the header is
    not valid (RFC 7231 grammar, as webob's AcceptValidHeader)."""
    ranges = []
    for element in value.split(","):
        element = element.strip()
        if not element:
            continue
        media_range, *params = [p.strip() for p in element.split(";")]
        if not _MEDIA_RANGE.match(media_range):
            return None
        q, media_params = 1.0, []
        for param in params:
            m = _PARAM.match(param)
            if not m:
                return None
            if m.group(1).lower() == "q":
                if not _QVALUE.match(m.group(2)):
                    return None
                q = float(m.group(2))
                break  # what follows q is accept-ext, not media type parameters
            media_params.append((m.group(1).lower(), m.group(2)))
        ranges.append((media_range.lower(), q, tuple(media_params)))
    return ranges


def negotiate(accept: str | None) -> str:
    """The content type webob renders an error in for this Accept header: the acceptable offer (text/html, then
    application/json) with the highest q, each offer's q coming from its most specific matching range; an
    invalid header accepts every offer; no acceptable offer (or no header at all) gives text/plain."""
    ranges = _parse_accept(accept or "")
    if ranges is None:
        return _OFFERS[0]
    best: list[tuple[float, int]] = []
    for index, offer in enumerate(_OFFERS):
        offer_type = offer.split("/")[0]
        found: tuple[int, float] | None = None  # (specificity, q)
        for media_range, q, params in ranges:
            if media_range == offer:
                if params:
                    continue  # a range with parameters does not match an offer without them
                specificity = 3
            elif media_range == f"{offer_type}/*":
                specificity = 2
            elif media_range == "*/*":
                specificity = 1
            else:
                continue
            if found is None or specificity > found[0]:
                found = (specificity, q)
        if found is not None and found[1] > 0:
            best.append((-found[1], index))
    return _OFFERS[min(best)[1]] if best else "text/plain"


def _html_escape(text: str) -> str:
    return html.escape(text, True).encode("ascii", "xmlcharrefreplace").decode("ascii")


def _strip_tags(text: str) -> str:
    text = text.replace("\n", " ").replace("\r", "")
    text = _BR.sub("\n", text)
    text = text.replace("<!--", "").replace("-->", "")
    return _TAG.sub("", text)


def webob_error(code: int, explanation: str, accept: str | None, content_type: str = "") -> tuple[str, str]:
    """(body, content type) of ``webob.exc.HTTP<code>(explanation=...)`` answering a request with ``accept``; a
    415 is ``HTTPUnsupportedMediaType(detail=...)`` (its template names the request's ``content_type``), as
    Glance raises it."""
    status = f"{code} {title(code)}"
    kind = negotiate(accept)

    def body(escape) -> str:  # webob's body_template (detail and comment empty), or the 415's own
        if code == 415:
            return (f"The request media type {escape(content_type)} is not supported by this server.\n"
                    f"<br /><br />\n{escape(explanation)}")
        return f"{escape(explanation)}<br /><br />\n\n\n"

    if kind == "text/html":
        page = (f"<html>\n <head>\n  <title>{status}</title>\n </head>\n <body>\n  <h1>{status}</h1>\n"
                f"  {body(_html_escape)}\n </body>\n</html>")
        return page, "text/html; charset=UTF-8"
    if kind == "application/json":
        return json.dumps({"message": body(str), "code": status, "title": title(code)}), "application/json"
    return f"{status}\n\n{_strip_tags(body(str))}", "text/plain; charset=UTF-8"
