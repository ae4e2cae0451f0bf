"""Interoperable image import (Glance v2.6+): ``GET /v2/info/import`` and ``/v2/info/stores``, ``PUT
/v2/images/{id}/stage``, ``POST /v2/images/{id}/import`` (202; the import runs as a task, app/image/importer.py),
and the tasks that record it: ``GET /v2/tasks`` and ``/v2/tasks/{id}`` (admins: Glance's tasks_api_access) and
``GET /v2/images/{id}/tasks`` (whoever sees the image)."""
from __future__ import annotations

import threading

from flask import Blueprint, jsonify, request
from sqlalchemy import select, update

from app.context import current
from app.image import importer
from app.image.body_schemas import ImportSchema, body_schema
from app.image.common import is_uuid, iso, load, load_for_write
from app.policy import enforce, register
from core import db, image_store
from core.errors import ApiError
from core.models import Image, ImageTask, new_uuid, utcnow
from core.settings import get_settings

bp = Blueprint("image_import", __name__)
register("modify_image", "project_member_api")

TASK_STATUSES = ("pending", "processing", "success", "failure")


@bp.get("/v2/info/import")
@enforce("authenticated")
def info_import():
    return jsonify({"import-methods": {"description": "Import methods available.", "type": "array",
                                       "value": list(importer.METHODS)}})


@bp.get("/v2/info/stores")
@enforce("authenticated")
def info_stores():
    return jsonify({"stores": [{"id": importer.STORE, "description": "Local file store", "default": "true"}]})


def _set_status(image_id: str, expected: str, **values) -> bool:
    with db.write_session() as s:
        return s.execute(update(Image).where(Image.id == image_id, Image.status == expected)
                         .values(updated_at=utcnow(), **values)).rowcount == 1


@bp.put("/v2/images/<image_id>/stage")
def stage(image_id):
    settings = get_settings()
    with db.read_session() as s:
        status = load_for_write(s, image_id, name="modify_image").status
    length = request.content_length
    if length is not None and length > settings.max_image_size:
        raise ApiError(413, f"The incoming image is too large: {length} bytes is more than the maximum of "
                            f"{settings.max_image_size}.")
    if status != "queued" or not _set_status(image_id, "queued", status="uploading"):
        raise ApiError(409, f"Image status transition from {status} to uploading is not allowed")
    try:
        size, _, _ = image_store.write_stream(image_id, request.stream, settings.max_image_size, staged=True)
    except image_store.ImageTooLarge:
        _set_status(image_id, "uploading", status="queued")
        raise ApiError(413, f"The incoming image is too large: the maximum is {settings.max_image_size} "
                            "bytes.") from None
    except BaseException:
        _set_status(image_id, "uploading", status="queued")
        raise
    if not _set_status(image_id, "uploading", size=size):
        image_store.delete_staged(image_id)  # deleted while staging
        raise ApiError(409, f"Image {image_id} was deleted or changed while its data was staged.")
    return "", 204


def _import_request() -> dict:
    body = request.get_json(silent=True, force=True)
    if not isinstance(body, dict):
        raise ApiError(400, "Body expected in request.")
    method = body.get("method")
    if not isinstance(method, dict):
        raise ApiError(400, "Import request requires a 'method' field.")
    if "name" not in method:
        raise ApiError(400, "Import request requires a 'name' field.")
    if method["name"] not in importer.METHODS:
        raise ApiError(400, f"Unknown import method name '{method['name']}'.")
    for flag in ("all_stores_must_succeed", "all_stores"):
        if not isinstance(body.get(flag, False), bool):
            raise ApiError(400, f"'{flag}' must be boolean value only")
    stores = body.get("stores")
    if stores is not None and (not isinstance(stores, list) or set(stores) - {importer.STORE}):
        raise ApiError(409, f"Unknown scheme '{stores}' found in URI")  # Glance's UnknownScheme, as a Conflict
    return body


@bp.post("/v2/images/<image_id>/import")
@body_schema(ImportSchema)
def import_image(_loaded: dict, image_id):
    body = _import_request()
    method = body["method"]["name"]
    uri = body["method"].get("uri")
    ctx = current()
    task_id = new_uuid()
    with db.write_session() as s:
        img = load_for_write(s, image_id, name="modify_image")
        if img.status == "active":
            raise ApiError(409, "Image with status active cannot be target for import")
        if method == "web-download" and img.status != "queued":
            raise ApiError(409, f"Image needs to be in 'queued' state to use '{method}' method")
        if method == "glance-direct" and img.status != "uploading":
            raise ApiError(409, "Image needs to be staged before 'glance-direct' method can be used")
        if not img.container_format:
            raise ApiError(409, "'container_format' needs to be set before import")
        if not img.disk_format:
            raise ApiError(409, "'disk_format' needs to be set before import")
        if "os_glance_import_task" in (img.properties or {}):
            raise ApiError(409, f"New operation on image '{image_id}' is not permitted as prior operation is "
                                "still in progress")
        if method == "web-download" and not (isinstance(uri, str) and importer.uri_allowed(uri)):
            raise ApiError(400, f"URI for web-download does not pass filtering: {uri}")
        now = utcnow()
        s.add(ImageTask(id=task_id, type="api_image_import", status="processing", owner=ctx.project_id,
                        image_id=image_id, user_id=ctx.user_id, request_id=ctx.request_id,
                        input={"image_id": image_id, "import_req": body, "backend": [importer.STORE]},
                        result=None, message="", created_at=now, updated_at=now))
        props = {**(img.properties or {}), "os_glance_import_task": task_id,
                 "os_glance_importing_to_stores": importer.STORE, "os_glance_failed_import": ""}
        done = s.execute(update(Image).where(Image.id == image_id, Image.status == img.status).values(
            status="importing", properties=props, updated_at=now)).rowcount
        if not done:
            raise ApiError(409, f"Image {image_id} changed status while the import was requested.")
    if method == "glance-direct":
        importer.run(task_id)  # the staged file is local: taking it is quick
    else:
        threading.Thread(target=importer.run, args=(task_id,), name=f"import-{task_id}", daemon=True).start()
    return "", 202


def task_body(t: ImageTask, full: bool = True) -> dict:
    body = {"id": t.id, "type": t.type, "status": t.status, "owner": t.owner, "created_at": iso(t.created_at),
            "updated_at": iso(t.updated_at), "self": f"/v2/tasks/{t.id}", "schema": "/v2/schemas/task"}
    if full:
        body.update({"input": t.input, "message": t.message, "result": t.result})
        for key in ("image_id", "request_id", "user_id"):
            if getattr(t, key):
                body[key] = getattr(t, key)
    if t.expires_at:
        body["expires_at"] = iso(t.expires_at)
    return body


@bp.get("/v2/tasks")
@enforce("admin_api", name="tasks_api_access")
def list_tasks():
    args = request.args
    q = select(ImageTask)
    for key, allowed in (("status", TASK_STATUSES), ("type", ("import", "api_image_import", "location_import"))):
        value = args.get(key)
        if value is not None:
            if value not in allowed:
                raise ApiError(400, f"Invalid {key} value: {value}")
            q = q.where(getattr(ImageTask, key) == value)
    sort_dir = args.get("sort_dir", "desc")
    if sort_dir not in ("asc", "desc"):
        raise ApiError(400, f"Invalid sort direction: {sort_dir}")
    sort_key = args.get("sort_key", "created_at")
    if sort_key not in ("id", "type", "status", "created_at", "updated_at"):
        raise ApiError(400, f"Invalid sort key: {sort_key}")
    column = getattr(ImageTask, sort_key)
    q = q.order_by(column.asc() if sort_dir == "asc" else column.desc(), ImageTask.id)
    with db.read_session() as s:
        tasks = [task_body(t, full=False) for t in s.scalars(q)]
    return jsonify({"tasks": tasks, "first": "/v2/tasks", "schema": "/v2/schemas/tasks"})


@bp.get("/v2/tasks/<task_id>")
@enforce("admin_api", name="tasks_api_access")
def show_task(task_id):
    with db.read_session() as s:
        task = s.get(ImageTask, task_id) if is_uuid(task_id) else None
        if task is None:
            raise ApiError(404, f"Failed to find task {task_id}")
        return jsonify(task_body(task))


@bp.get("/v2/images/<image_id>/tasks")
@enforce("authenticated")
def image_tasks(image_id):
    with db.read_session() as s:
        load(s, image_id)
        tasks = s.scalars(select(ImageTask).where(ImageTask.image_id == image_id)
                          .order_by(ImageTask.created_at.desc(), ImageTask.id))
        return jsonify({"tasks": [task_body(t) for t in tasks]})


def _task_schema() -> dict:
    string = {"type": "string"}
    return {"name": "task", "properties": {
        "id": {**string, "description": "An identifier for the task", "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F])"
               "{4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"},
        "type": {**string, "enum": ["import", "api_image_import", "location_import"]},
        "status": {**string, "enum": list(TASK_STATUSES)}, "input": {"type": ["null", "object"]},
        "result": {"type": ["null", "object"]}, "owner": string, "message": string, "image_id": string,
        "request_id": string, "user_id": string, "expires_at": {"type": ["null", "string"]},
        "created_at": string, "updated_at": string, "self": string, "schema": string},
        "links": [{"rel": "self", "href": "{self}"}, {"rel": "describedby", "href": "{schema}"}]}


@bp.get("/v2/schemas/task")
@enforce("authenticated")
def schema_task():
    return jsonify(_task_schema())


@bp.get("/v2/schemas/tasks")
@enforce("authenticated")
def schema_tasks():
    return jsonify({"name": "tasks", "properties": {
        "tasks": {"type": "array", "items": _task_schema()}, "schema": {"type": "string"},
        "first": {"type": "string"}, "next": {"type": "string"}},
        "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                  {"rel": "describedby", "href": "{schema}"}]})
