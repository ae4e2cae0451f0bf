"""/images: Nova's proxy to the Image service (list, detail, show, delete, and the image's metadata), removed at
2.36 (404 from there); clients pinned below still call it. The Image service's visibility rules decide what a
caller sees (app/image/common.py); the shapes are Nova's (views/images.py, image_metadata.py). Nova checks no
policy rule of its own here (Glance decides); the rule names below exist so that every route has one (any
authenticated user by default, as in Nova)."""
from __future__ import annotations

from flask import Blueprint, jsonify, request
from sqlalchemy import select

from app.compute.metadata_items import validate_metadata
from app.compute.paging import limit_and_marker, next_links, page
from app.compute.body_schemas import MetaBodySchema, MetadataBodySchema
from app.compute.request_body import body_schema, json_body
from app.compute.views import base_url, compute_prefix, links
from app.context import current
from app.image.common import load as load_visible, load_for_write as load_writable, readable
from app.microversion import current as api_version
from app.policy import enforce
from core import db, image_access, image_store
from core.errors import ApiError, bad_request, not_found
from core.models import Image, utcnow
from core.settings import get_settings

bp = Blueprint("images", __name__)

_STATUS = {"active": "ACTIVE", "queued": "SAVING", "saving": "SAVING", "deleted": "DELETED",
           "pending_delete": "DELETED", "killed": "ERROR"}
_PROGRESS = {"queued": 25, "saving": 50, "active": 100}
# Nova's filters (images.py SUPPORTED_FILTERS): query parameter -> the image's value.
_FILTERS = {"name": lambda i: i.name, "status": lambda i: (i.status or "").upper(),
            "server": lambda i: (i.properties or {}).get("instance_uuid"),
            "type": lambda i: (i.properties or {}).get("image_type")}


def _check_version() -> None:
    if api_version().matches("2.36"):
        raise not_found("The resource could not be found.")


def _metadata(img: Image) -> dict:
    return {k: v for k, v in (img.properties or {}).items() if k != "os_hidden"}


def _links(img: Image) -> list[dict]:
    return [*links("images", img.id), {"rel": "alternate", "type": "application/vnd.openstack.image",
                                       "href": f"{base_url()}/image/images/{img.id}"}]


def _iso(t) -> str | None:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else None


def _detail(img: Image) -> dict:
    metadata = _metadata(img)
    body = {"id": img.id, "name": img.name, "minRam": int(img.min_ram or 0), "minDisk": int(img.min_disk or 0),
            "metadata": metadata, "created": _iso(img.created_at), "updated": _iso(img.updated_at),
            "status": _STATUS.get(img.status, "UNKNOWN"), "progress": _PROGRESS.get(img.status, 0),
            "OS-EXT-IMG-SIZE:size": img.size, "links": _links(img)}
    server = metadata.get("instance_uuid")
    if server is not None:
        body["server"] = {"id": server, "links": links("servers", server)}
    disk_config = metadata.get("auto_disk_config")
    if disk_config is not None:
        body["OS-DCF:diskConfig"] = "AUTO" if str(disk_config).lower() in ("1", "true", "yes", "on", "y", "t") \
            else "MANUAL"
    return body


def _visible_images() -> list[Image]:
    args = request.args
    with db.read_session() as s:
        shared = image_access.memberships(s, current().project_id)
        images = [i for i in s.scalars(select(Image).order_by(Image.created_at.desc(), Image.id.desc()))
                  if readable(i, shared.get(i.id)) and not (i.properties or {}).get("os_hidden")
                  and image_access.listed(i.visibility, i.owner, current().project_id, shared.get(i.id))]
    for key, value_of in _FILTERS.items():
        if args.get(key) is not None:
            wanted = args[key].upper() if key == "status" else args[key]
            images = [i for i in images if value_of(i) == wanted]
    for key, column in (("minRam", "min_ram"), ("minDisk", "min_disk")):
        if args.get(key) is not None:
            if not args[key].isdigit():
                raise bad_request(f"Invalid {key} filter [{args[key]}]")
            images = [i for i in images if (getattr(i, column) or 0) >= int(args[key])]
    if args.get("changes-since"):
        images = [i for i in images if _iso(i.updated_at) and _iso(i.updated_at) >= args["changes-since"]]
    return images


def _list(view) -> dict:
    _check_version()
    limit, marker = limit_and_marker()
    images = page(_visible_images(), lambda i: i.id, limit, marker)
    body: dict = {"images": [view(i) for i in images]}
    more = next_links("images" + ("/detail" if view is _detail else ""), images[-1].id if images else None,
                      len(images), limit)
    if more:
        body["images_links"] = more
    return body


@bp.get("/images")
@enforce("authenticated", name="os_compute_api:image-proxy:list")
def list_images():
    return jsonify(_list(lambda i: {"id": i.id, "name": i.name, "links": _links(i)}))


@bp.get("/images/detail")
@enforce("authenticated", name="os_compute_api:image-proxy:list")
def list_images_detail():
    return jsonify(_list(_detail))


def _image(image_id: str) -> Image:
    _check_version()
    with db.read_session() as s:
        try:
            return load_visible(s, image_id)
        except ApiError:
            raise not_found("Image not found.") from None


def _writable(s, image_id: str, forbidden: str | None = None) -> Image:
    """The image this caller may change, or Nova's proxy 404 ("Image not found.") / ``forbidden`` as a 403."""
    try:
        return load_writable(s, image_id)
    except ApiError as exc:
        if exc.code == 404:
            raise not_found("Image not found.") from None
        if forbidden is None:
            raise
        raise ApiError(403, forbidden) from None


@bp.get("/images/<image_id>")
@enforce("authenticated", name="os_compute_api:image-proxy:show")
def show_image(image_id: str):
    return jsonify({"image": _detail(_image(image_id))})


@bp.delete("/images/<image_id>")
@enforce("authenticated", name="os_compute_api:image-proxy:delete")
def delete_image(image_id: str):
    _check_version()
    with db.write_session() as s:
        img = _writable(s, image_id, "You are not allowed to delete the image.")
        if img.protected:
            raise ApiError(403, "You are not allowed to delete the image.")
        s.delete(img)
    image_store.delete(image_id)
    return "", 204


# --- the image's metadata (its custom properties) -----------------------------------------------------------------

@bp.get("/images/<image_id>/metadata")
@enforce("authenticated", name="os_compute_api:image-metadata:index")
def list_metadata(image_id: str):
    return jsonify({"metadata": _metadata(_image(image_id))})


@bp.get("/images/<image_id>/metadata/<key>")
@enforce("authenticated", name="os_compute_api:image-metadata:show")
def show_metadata_item(image_id: str, key: str):
    metadata = _metadata(_image(image_id))
    if key not in metadata:
        raise not_found("The resource could not be found.")
    return jsonify({"meta": {key: metadata[key]}})


def _write_metadata(image_id: str, change) -> dict:
    """Apply ``change(current metadata) -> new metadata`` to the image's properties; the new metadata."""
    _check_version()
    with db.write_session() as s:
        img = _writable(s, image_id)
        hidden = {k: v for k, v in (img.properties or {}).items() if k == "os_hidden"}
        metadata = change(_metadata(img))
        limit = get_settings().quota_metadata_items
        if 0 <= limit < len(metadata):
            raise ApiError(403, "Image metadata limit exceeded")
        img.properties = {**metadata, **hidden}
        img.updated_at = utcnow()
    return metadata


def _body_metadata(root: str) -> dict:
    body = json_body()
    if root not in body or set(body) - {root}:
        raise bad_request(f"Invalid input for field/attribute {root}. Value: {body!r}. '{root}' is a required "
                          f"property")
    return validate_metadata(body[root], root)


@bp.post("/images/<image_id>/metadata")
@enforce("authenticated", name="os_compute_api:image-metadata:create")
@body_schema(MetadataBodySchema)
def update_metadata(_loaded: dict, image_id: str):
    new = _body_metadata("metadata")
    return jsonify({"metadata": _write_metadata(image_id, lambda old: {**old, **new})})


@bp.put("/images/<image_id>/metadata")
@enforce("authenticated", name="os_compute_api:image-metadata:update_all")
@body_schema(MetadataBodySchema)
def replace_metadata(_loaded: dict, image_id: str):
    new = _body_metadata("metadata")
    return jsonify({"metadata": _write_metadata(image_id, lambda old: dict(new))})


@bp.put("/images/<image_id>/metadata/<key>")
@enforce("authenticated", name="os_compute_api:image-metadata:update")
@body_schema(MetaBodySchema)
def set_metadata_item(_loaded: dict, image_id: str, key: str):
    meta = _body_metadata("meta")
    if key not in meta:
        raise bad_request("Request body and URI mismatch")
    if len(meta) > 1:
        raise bad_request("Request body contains too many items")
    _write_metadata(image_id, lambda old: {**old, **meta})
    return jsonify({"meta": meta})


@bp.delete("/images/<image_id>/metadata/<key>")
@enforce("authenticated", name="os_compute_api:image-metadata:delete")
def delete_metadata_item(image_id: str, key: str):
    def without(old: dict) -> dict:
        if key not in old:
            raise not_found("Invalid metadata key")
        return {k: v for k, v in old.items() if k != key}
    _write_metadata(image_id, without)
    return "", 204
