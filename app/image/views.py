"""Image API v2 subset (Glance): images (create, list, show, update by JSON patch, delete, upload, download),
schemas and discovery. Routes are relative to the blueprint's ``/image`` prefix.

Visibility (core/image_access.py): public and community images are readable by everyone; private and shared
images by the owner project (with a reader role) and admins, shared images also by their member projects; others
get 404. Members, tags, actions, import and metadefs have their own modules.
"""
from __future__ import annotations

import base64
import binascii
import uuid
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import delete, select, update

from app.image.body_schemas import CONTAINER_FORMATS, DISK_FORMATS, VISIBILITIES, ImageCreateSchema, body_schema
from app.context import current
from app.image import importer
from app.image.common import image_body, is_uuid, json_response, load, load_for_upload, load_for_write, readable
from app.policy import check, enforce, public
from core import db, image_access, image_store
from core.errors import ApiError
from core.models import Image, ImageMember, utcnow
from core.settings import get_settings

bp = Blueprint("image", __name__)

READ_ONLY = ("status", "size", "virtual_size", "created_at", "updated_at", "self", "file", "schema",
             "os_hash_algo", "os_hash_value", "direct_url", "locations", "checksum")
BASE_ATTRS = ("id", "name", "disk_format", "container_format", "visibility", "protected", "min_disk", "min_ram",
              "tags", "owner", "os_hidden") + READ_ONLY
SORT_KEYS = ("name", "status", "container_format", "disk_format", "size", "id", "created_at", "updated_at",
             "visibility", "owner", "min_disk", "min_ram")
LIST_PARAMS = {"limit", "marker", "sort_key", "sort_dir", "sort", "name", "status", "visibility", "owner",
               "member_status", "tag", "disk_format", "container_format", "size_min", "size_max", "os_hidden",
               "protected", "id", "created_at", "updated_at", "checksum", "os_hash_value"}
PATCH_TYPES = ("application/openstack-images-v2.1-json-patch", "application/openstack-images-v2.0-json-patch")
DEFAULT_LIMIT, MAX_LIMIT = 25, 1000


# --- helpers ----------------------------------------------------------------------------------------------------

def _set_attr(img: Image, key: str, value, *, creating: bool) -> None:
    """Validate and set one attribute (base or extra property) on ``img``."""
    ctx = current()
    if key in READ_ONLY and not (creating and key == "checksum"):
        raise ApiError(403, f"Attribute '{key}' is read-only.")
    if key == "id":
        if not creating:
            raise ApiError(403, "Attribute 'id' is read-only.")
        if not isinstance(value, str) or not is_uuid(value):
            raise ApiError(400, "Invalid input for field 'id': must be a UUID.")
        img.id = str(uuid.UUID(value))
    elif key == "checksum":
        if value is not None and (not isinstance(value, str) or len(value) != 32 or not _is_hex(value)):
            raise ApiError(400, "Invalid input for field 'checksum': must be an MD5 hex digest.")
        img.checksum = value.lower() if value else None
    elif key == "name":
        if value is not None and (not isinstance(value, str) or len(value) > 255):
            raise ApiError(400, "Invalid input for field 'name': must be a string of at most 255 characters.")
        img.name = value
    elif key in ("disk_format", "container_format"):
        allowed = DISK_FORMATS if key == "disk_format" else CONTAINER_FORMATS
        if value is not None and value not in allowed:
            raise ApiError(400, f"Invalid value '{value}' for field '{key}': must be one of "
                                f"{', '.join(allowed)}.")
        if not creating and img.status not in ("queued",) and value != getattr(img, key):
            raise ApiError(403, f"Attribute {key} can be only replaced for a queued image.")
        setattr(img, key, value)
    elif key == "visibility":
        if value not in VISIBILITIES:
            raise ApiError(400, f"Invalid value '{value}' for field 'visibility': must be one of "
                                f"{', '.join(VISIBILITIES)}.")
        if value == "public" and not ctx.is_admin:
            raise ApiError(403, "You are not authorized to complete publicize_image action.")
        img.visibility = value
    elif key in ("protected", "os_hidden"):
        if not isinstance(value, bool):
            raise ApiError(400, f"Invalid input for field '{key}': must be a boolean.")
        if key == "protected":
            img.protected = value
        else:
            img.properties = {**(img.properties or {}), "os_hidden": value}
    elif key in ("min_disk", "min_ram"):
        if isinstance(value, float) and value.is_integer():  # JSON Schema's integer: 3.0 is 3
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2147483647:
            raise ApiError(400, f"Invalid input for field '{key}': must be a non-negative integer.")
        setattr(img, key, value)
    elif key == "tags":
        if not isinstance(value, list) or not all(isinstance(t, str) and 0 < len(t) <= 255 for t in value):
            raise ApiError(400, "Invalid input for field 'tags': must be a list of strings.")
        img.tags = list(dict.fromkeys(value))
    elif key == "owner":
        if not ctx.is_admin and value != img.owner:
            raise ApiError(403, "Only an administrator may set the owner of an image.")
        if value is not None and (not isinstance(value, str) or len(value) > 64):
            raise ApiError(400, "Invalid input for field 'owner'.")
        img.owner = value
    else:
        if not key or len(key) > 255:
            raise ApiError(400, "Property names must be 1 to 255 characters long.")
        if key.startswith("os_glance"):
            raise ApiError(403, f"Attribute '{key}' is reserved.")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        elif isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise ApiError(400, f"Invalid value for property '{key}': additional properties must be strings.")
        img.properties = {**(img.properties or {}), key: value}


def _is_hex(value: str) -> bool:
    try:
        int(value, 16)
        return True
    except ValueError:
        return False


# --- discovery, schemas, info ---------------------------------------------------------------------------------

def _versions_doc() -> dict:
    href = f"{get_settings().public_url.rstrip('/')}/image/v2/"
    values = [{"id": "v2.16", "status": "CURRENT", "links": [{"rel": "self", "href": href}]}]
    for minor in range(15, -1, -1):
        values.append({"id": f"v2.{minor}", "status": "SUPPORTED", "links": [{"rel": "self", "href": href}]})
    return {"versions": values}


@bp.get("")
@bp.get("/")
@bp.get("/versions")
@public
def versions():
    status = 200 if request.path.endswith("/versions") else 300
    return json_response(_versions_doc(), status)


def _image_schema() -> dict:
    s = lambda *types, **kw: {"type": list(types) if len(types) > 1 else types[0], **kw}  # noqa: E731
    props = {
        "id": s("string", pattern="^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-"
                                  "([0-9a-fA-F]){12}$", description="An identifier for the image"),
        "name": s("null", "string", maxLength=255), "status": s("string", readOnly=True,
                                                                  enum=["queued", "saving", "active", "killed",
                                                                        "deleted", "pending_delete",
                                                                        "deactivated", "uploading",
                                                                        "importing"]),
        "visibility": s("string", enum=list(VISIBILITIES)), "protected": s("boolean"),
        "os_hidden": s("boolean"), "checksum": s("null", "string", readOnly=True, maxLength=32),
        "os_hash_algo": s("null", "string", readOnly=True, maxLength=64),
        "os_hash_value": s("null", "string", readOnly=True, maxLength=128),
        "owner": s("null", "string", maxLength=255), "size": s("null", "integer", readOnly=True),
        "virtual_size": s("null", "integer", readOnly=True), "container_format": s("null", "string",
                                                                                     enum=[None,
                                                                                           *CONTAINER_FORMATS]),
        "disk_format": s("null", "string", enum=[None, *DISK_FORMATS]),
        "created_at": s("string", readOnly=True), "updated_at": s("string", readOnly=True),
        "tags": s("array", items={"type": "string", "maxLength": 255}), "direct_url": s("string", readOnly=True),
        "min_ram": s("integer"), "min_disk": s("integer"), "self": s("string", readOnly=True),
        "file": s("string", readOnly=True), "schema": s("string", readOnly=True),
        "locations": s("array", items={"type": "object"}),
    }
    return {"name": "image", "properties": props, "additionalProperties": {"type": "string"},
            "links": [{"rel": "self", "href": "{self}"}, {"rel": "enclosure", "href": "{file}"},
                      {"rel": "describedby", "href": "{schema}"}]}


@bp.get("/v2/schemas/image")
@enforce("authenticated")
def schema_image():
    return jsonify(_image_schema())


@bp.get("/v2/schemas/images")
@enforce("authenticated")
def schema_images():
    return jsonify({"name": "images", "properties": {
        "images": {"type": "array", "items": _image_schema()}, "schema": {"type": "string"},
        "first": {"type": "string"}, "next": {"type": "string"}},
        "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                  {"rel": "describedby", "href": "{schema}"}]})


# --- images -----------------------------------------------------------------------------------------------------

def _parse_sort() -> list[tuple[str, str]]:
    args = request.args
    pairs: list[tuple[str, str]] = []
    if "sort" in args:
        if "sort_key" in args or "sort_dir" in args:
            raise ApiError(400, "The 'sort' parameter cannot be combined with 'sort_key' or 'sort_dir'.")
        for part in args["sort"].split(","):
            key, _, direction = part.strip().partition(":")
            pairs.append((key, direction or "desc"))
    else:
        keys = args.getlist("sort_key") or ["created_at"]
        dirs = args.getlist("sort_dir")
        if len(dirs) > 1 and len(dirs) != len(keys):
            raise ApiError(400, "Number of sort dirs does not match the number of sort keys.")
        for i, key in enumerate(keys):
            pairs.append((key, dirs[i] if len(dirs) > 1 else (dirs[0] if dirs else "desc")))
    for key, direction in pairs:
        if key not in SORT_KEYS:
            raise ApiError(400, f"Invalid sort key: {key}. It should be one of the following: "
                                f"{', '.join(SORT_KEYS)}.")
        if direction not in ("asc", "desc"):
            raise ApiError(400, f"Invalid sort direction: {direction}. It must be one of: asc, desc.")
    if "id" not in [k for k, _ in pairs]:
        pairs.append(("id", pairs[-1][1]))
    return pairs


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} param must be an integer") from None
    if value < 0:
        raise ApiError(400, f"{name} param must be positive")
    return value


def _sorted(images: list[Image], pairs: list[tuple[str, str]]) -> list[Image]:
    def key_for(name: str):
        def key(im: Image):
            value = getattr(im, name)
            return (value is not None, value if value is not None else 0)
        return key
    for name, direction in reversed(pairs):  # stable sorts, least significant key first
        images.sort(key=key_for(name), reverse=direction == "desc")
    return images


@bp.get("/v2/images")
@enforce("authenticated")
def list_images():
    ctx = current()
    args = request.args
    limit = _int_arg("limit")
    limit = DEFAULT_LIMIT if limit is None else min(limit, MAX_LIMIT)
    pairs = _parse_sort()
    visibility = args.get("visibility")
    if visibility is not None and visibility not in (*VISIBILITIES, "all"):
        raise ApiError(400, f"Invalid visibility value: {visibility}")
    member_filter = args.get("member_status", "accepted")
    if member_filter not in (*image_access.MEMBER_STATUSES, "all"):
        raise ApiError(400, f"Invalid status value: {member_filter}")
    q = select(Image)
    for col in ("name", "status", "owner", "disk_format", "container_format", "checksum", "os_hash_value"):
        if args.get(col) is not None:
            q = q.where(getattr(Image, col) == args[col])
    if args.get("id") is not None:
        raw = args["id"]
        ids = [i.strip().strip('"') for i in raw[3:].split(",")] if raw.startswith("in:") else [raw]
        q = q.where(Image.id.in_(ids))
    size_min, size_max = _int_arg("size_min"), _int_arg("size_max")
    if size_min is not None:
        q = q.where(Image.size >= size_min)
    if size_max is not None:
        q = q.where(Image.size <= size_max)
    if args.get("protected") is not None:
        q = q.where(Image.protected.is_(args["protected"].lower() == "true"))
    if visibility not in (None, "all"):
        q = q.where(Image.visibility == visibility)
    with db.read_session() as s:
        rows = list(s.scalars(q))
        shared_with_caller = image_access.memberships(s, ctx.project_id)
        marker_id = args.get("marker")
        marker = None
        if marker_id is not None:
            marker = s.get(Image, marker_id) if is_uuid(marker_id) else None
            if marker is None or not readable(marker, shared_with_caller.get(marker.id)):
                raise ApiError(400, f"Invalid marker. Image {marker_id} could not be found.")

    def listed(img: Image) -> bool:
        status = shared_with_caller.get(img.id)
        if not readable(img, status):
            return False
        if not ctx.is_admin and not image_access.listed(img.visibility, img.owner, ctx.project_id, status,
                                                        member_filter):
            return False  # shared with the caller, but not accepted (or not in the member status asked for)
        if visibility is None and not ctx.is_admin and img.visibility == "community" \
                and img.owner != ctx.project_id:
            return False  # community images are listed only on request (as Glance does)
        return True

    hidden_arg = args.get("os_hidden")
    want_hidden = hidden_arg is not None and hidden_arg.lower() == "true"
    tags = args.getlist("tag")
    extra = {k: v for k, v in args.items() if k not in LIST_PARAMS}
    images = []
    for img in rows:
        props = img.properties or {}
        if not listed(img) or bool(props.get("os_hidden", False)) != want_hidden:
            continue
        if tags and not set(tags) <= set(img.tags or []):
            continue
        if any(props.get(k) != v for k, v in extra.items()):
            continue
        images.append(img)
    if marker is not None and all(im.id != marker.id for im in images):
        images.append(marker)
        images = _sorted(images, pairs)
        start = next(i for i, im in enumerate(images) if im.id == marker.id)
        images.pop(start)
    else:
        images = _sorted(images, pairs)
        start = next((i + 1 for i, im in enumerate(images) if marker is not None and im.id == marker.id), 0)
    page = images[start:start + limit]
    params = [(k, v) for k, v in args.items(multi=True) if k != "marker"]
    body: dict = {"images": [image_body(im) for im in page],
                  "first": "/v2/images" + (("?" + urlencode(params)) if params else ""),
                  "schema": "/v2/schemas/images"}
    if page and start + limit < len(images):
        next_params = [(k, v) for k, v in params if k != "limit"] + [("limit", str(limit)),
                                                                     ("marker", page[-1].id)]
        body["next"] = "/v2/images?" + urlencode(next_params)
    return jsonify(body)


@bp.post("/v2/images")
@enforce("project_member_api")
@body_schema(ImageCreateSchema)
def create_image(_loaded: dict):
    ctx = current()
    data = request.get_json(silent=True, force=True)
    now = utcnow()
    img = Image(id=str(uuid.uuid4()), status="queued", visibility="shared", protected=False, owner=ctx.project_id,
                min_disk=0, min_ram=0, properties={}, tags=[], created_at=now, updated_at=now)
    for key, value in data.items():
        _set_attr(img, key, value, creating=True)
    with db.write_session() as s:
        if s.get(Image, img.id) is not None:
            raise ApiError(409, f"Image with identifier {img.id} already exists!")
        s.add(img)
        s.flush()
        body = image_body(img)
    return json_response(body, 201, {"Location": f"{get_settings().public_url.rstrip('/')}/image/v2/images/{img.id}",
                                      # what interoperable import offers (app/image/imports.py), as Glance says
                                      "OpenStack-image-import-methods": ",".join(importer.METHODS),
                                      "OpenStack-image-store-ids": importer.STORE})


@bp.get("/v2/images/<image_id>")
@enforce("authenticated")
def show_image(image_id):
    with db.read_session() as s:
        return jsonify(image_body(load(s, image_id)))


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


@bp.patch("/v2/images/<image_id>")
def update_image(image_id):
    ctype = (request.content_type or "").split(";")[0].strip()
    if ctype not in PATCH_TYPES:
        check("authenticated")
        allowed = ", ".join(sorted(PATCH_TYPES))
        raise ApiError(415, f"Image PATCH expects Content-Type one of: {allowed}", {"Accept-Patch": allowed})
    ops = request.get_json(silent=True, force=True)
    if not isinstance(ops, list):
        check("authenticated")
        raise ApiError(400, "The request body must be a JSON array of patch operations.")
    with db.write_session() as s:
        img = load_for_write(s, image_id)
        for op in ops:
            if not isinstance(op, dict) or op.get("op") not in ("add", "replace", "remove") \
                    or not isinstance(op.get("path"), str) or not op["path"].startswith("/"):
                raise ApiError(400, "Each operation must be an object with 'op' (add, replace or remove) and a "
                                    "'path' starting with '/'.")
            parts = [_unescape(p) for p in op["path"][1:].split("/")]
            kind = op["op"]
            if kind != "remove" and "value" not in op:
                raise ApiError(400, f"Operation '{kind}' requires a 'value'.")
            if parts[0] == "tags" and len(parts) == 2:
                tags = list(img.tags or [])
                if kind == "remove":
                    tags = [t for t in tags if t != parts[1]]
                else:
                    tags.append(op["value"])
                _set_attr(img, "tags", tags, creating=False)
                continue
            if len(parts) != 1:
                raise ApiError(400, f"Invalid JSON pointer for this resource: '{op['path']}'")
            key = parts[0]
            props = img.properties or {}
            is_base = key in BASE_ATTRS
            if kind == "remove":
                if key in READ_ONLY or key == "id":
                    raise ApiError(403, f"Attribute '{key}' is read-only.")
                if is_base:
                    raise ApiError(403, f"Properties {key} cannot be removed: it is a base attribute.")
                if key.startswith("os_glance"):  # the import's own bookkeeping (Glance's reserved namespace)
                    raise ApiError(403, f"Attribute '{key}' is reserved.")
                if key not in props:
                    raise ApiError(409, f"Property {key} does not exist.")
                img.properties = {k: v for k, v in props.items() if k != key}
                continue
            if kind == "replace" and not is_base and key not in props:
                raise ApiError(409, f"Property {key} does not exist.")
            _set_attr(img, key, op["value"], creating=False)
        img.updated_at = utcnow()
        s.flush()
        body = image_body(img)
    return jsonify(body)


@bp.delete("/v2/images/<image_id>")
def delete_image(image_id):
    with db.write_session() as s:
        img = load_for_write(s, image_id)
        if img.protected:
            raise ApiError(403, f"Image {image_id} is protected and cannot be deleted.")
        s.execute(delete(ImageMember).where(ImageMember.image_id == image_id))
        s.delete(img)
    image_store.delete(image_id)
    image_store.delete_staged(image_id)
    return "", 204


def _md5_header() -> str | None:
    raw = request.headers.get("Content-MD5")
    if not raw:
        return None
    raw = raw.strip()
    if len(raw) == 32 and _is_hex(raw):
        return raw.lower()
    try:
        digest = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 16:
        raise ApiError(400, "Invalid Content-MD5 header.")
    return digest.hex()


def _set_status(image_id: str, expected: str, **values) -> bool:
    with db.write_session() as s:
        res = s.execute(update(Image).where(Image.id == image_id, Image.status == expected)
                        .values(updated_at=utcnow(), **values))
        return res.rowcount == 1


@bp.put("/v2/images/<image_id>/file")
def upload_image(image_id):
    settings = get_settings()
    with db.read_session() as s:
        img = load_for_upload(s, image_id)
        status, preset_md5 = img.status, img.checksum
    header_md5 = _md5_header()
    if header_md5 and preset_md5 and header_md5 != preset_md5:
        raise ApiError(400, "Content-MD5 does not match the image's checksum.")
    expected = header_md5 or preset_md5
    length = request.content_length
    if length is not None and length > settings.max_image_size:
        raise ApiError(413, f"Image exceeds the storage quota: {length} bytes is more than the maximum of "
                            f"{settings.max_image_size}.")
    if status != "queued" or not _set_status(image_id, "queued", status="saving"):
        raise ApiError(409, f"Image status transition from {status} to saving is not allowed")
    try:
        size, md5_hex, sha256_hex = image_store.write_stream(image_id, request.stream, settings.max_image_size,
                                                       expected)
    except image_store.ImageTooLarge:
        _set_status(image_id, "saving", status="queued")
        raise ApiError(413, f"Image exceeds the storage quota: the maximum is {settings.max_image_size} "
                            "bytes.") from None
    except image_store.ChecksumMismatch as exc:
        _set_status(image_id, "saving", status="queued")
        raise ApiError(400, f"Checksum verification failed: {exc}.") from None
    except BaseException:
        _set_status(image_id, "saving", status="queued")
        raise
    if not _set_status(image_id, "saving", status="active", size=size, checksum=md5_hex,
                       os_hash_algo="sha256", os_hash_value=sha256_hex):
        image_store.delete(image_id)  # deleted (or changed) while uploading
        raise ApiError(409, f"Image {image_id} was deleted or changed during the upload.")
    return "", 204


@bp.get("/v2/images/<image_id>/file")
@enforce("authenticated")
def download_image(image_id):
    with db.read_session() as s:
        img = load(s, image_id)
        status, size, checksum = img.status, img.size, img.checksum
    if status == "deactivated" and not current().is_admin:
        raise ApiError(403, "The requested image has been deactivated. Image data download is forbidden.")
    if status not in ("active", "deactivated"):
        return "", 204
    try:
        fh = image_store.open_data(image_id)
    except FileNotFoundError:
        return "", 204
    headers = {"Content-Type": "application/octet-stream"}
    if size is not None:
        headers["Content-Length"] = str(size)
    if checksum:
        headers["Content-MD5"] = checksum
    return Response(image_store.iter_data(fh), headers=headers, direct_passthrough=True)
