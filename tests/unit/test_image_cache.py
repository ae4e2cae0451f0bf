"""A compute host's image cache (tasks/image_cache.py) over the in-process Image API, with the compute's own
service credential (tests/unit/image_api.py): one download per image and host, checksums enforced, least recently
used images evicted past the size limit except those a guest's disk still uses."""
from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest

from core import image_store
from tasks import image_service
from tasks.image_cache import GRACE, ImageCache, ImageCorrupt
from tasks.image_service import ImageNotFound


def _image(client, admin, data: bytes) -> str:
    """A private image of the admin's project (the compute's credential is not its owner)."""
    r = client.post("/image/v2/images", json={"name": "img", "disk_format": "raw", "container_format": "bare"},
                    headers=admin.headers)
    assert r.status_code == 201, r.get_json()
    image_id = r.get_json()["id"]
    r = client.put(f"/image/v2/images/{image_id}/file", data=data,
                   headers={**admin.headers, "Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.get_data()
    return image_id


def _downloads(app_adapter, image_id: str) -> int:
    return app_adapter.requests.count(("GET", f"/image/v2/images/{image_id}/file"))


@pytest.fixture
def adapter():
    return image_service.client().http.get_adapter("http://stratus.test")


@pytest.fixture
def cache(stratus_env, app):
    return ImageCache(stratus_env / "compute" / "image-cache", 0)


def _age(path: str, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_an_image_is_downloaded_once_and_then_served_from_the_cache(cache, client, admin, adapter):
    data = os.urandom(200_000)
    image_id = _image(client, admin, data)
    path = cache.fetch(image_id)
    assert open(path, "rb").read() == data
    assert cache.fetch(image_id) == path
    assert _downloads(adapter, image_id) == 1
    assert sorted(os.listdir(cache.dir)) == [f".{image_id}.lock", image_id]  # no temporary file left


def test_concurrent_builds_of_one_image_download_it_once(cache, client, admin, adapter):
    image_id = _image(client, admin, os.urandom(300_000))
    start, paths, errors = threading.Barrier(6), [], []

    def build() -> None:
        start.wait()
        try:
            paths.append(cache.fetch(image_id))
        except Exception as exc:  # reported below
            errors.append(exc)
    threads = [threading.Thread(target=build) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(paths)) == 1 and len(paths) == 6
    assert _downloads(adapter, image_id) == 1


def test_a_download_that_does_not_match_the_checksum_is_refused_and_not_kept(cache, client, admin, adapter):
    data = b"x" * 4096
    image_id = _image(client, admin, data)
    with open(image_store.path_for(image_id), "r+b") as fh:  # the stored data rots: same size, other bytes
        fh.write(b"y")
    with pytest.raises(ImageCorrupt, match=f"Image {image_id} is corrupt: the sha256 .* does not match"):
        cache.fetch(image_id)
    assert os.listdir(cache.dir) == [f".{image_id}.lock"]  # neither the image nor a partial file
    with pytest.raises(ImageCorrupt):  # and the next build tries again (and fails again)
        cache.fetch(image_id)
    assert _downloads(adapter, image_id) == 2


def test_an_older_image_with_an_md5_checksum_only_is_checked_against_it(cache, client, admin, stratus_env):
    from sqlalchemy import update

    from core.db import write_session
    from core.models import Image
    image_id = _image(client, admin, b"a" * 1000)
    with write_session() as s:  # as before Glance's multihash: checksum only, and a wrong one
        s.execute(update(Image).where(Image.id == image_id).values(
            os_hash_algo=None, os_hash_value=None, checksum=hashlib.md5(b"b" * 1000).hexdigest()))
    with pytest.raises(ImageCorrupt, match="the md5 of the downloaded data"):
        cache.fetch(image_id)


def test_a_missing_image_is_a_clear_error(cache):
    with pytest.raises(ImageNotFound, match="could not be found in the Image service"):
        cache.fetch("6f1c1f3e-0000-4000-8000-000000000000")


def test_least_recently_used_images_go_first_and_images_in_use_stay(cache, client, admin, adapter, tmp_path):
    a, b, c, d = (_image(client, admin, bytes([n]) * 100_000) for n in range(4))
    cache.max_bytes = 250_000  # room for two images and a half
    path_a, path_b = cache.fetch(a), cache.fetch(b)
    _age(path_b, GRACE + 30)
    _age(path_a, GRACE + 20)  # a was used after b
    path_c = cache.fetch(c)  # 300 kB: b, the least recently used, goes
    assert (os.path.exists(path_a), os.path.exists(path_b), os.path.exists(path_c)) == (True, False, True)
    os.link(path_a, tmp_path / "guest-disk")  # a guest's disk made from a (the fake driver's hard link)
    _age(path_a, GRACE + 60)
    _age(path_c, GRACE + 10)
    cache.fetch(d)  # a is older but in use: c goes
    assert (os.path.exists(path_a), os.path.exists(path_c), os.path.exists(cache.path(d))) == (True, False, True)
    cache.fetch(b)  # evicted images come back with a new download
    assert _downloads(adapter, b) == 2 and _downloads(adapter, a) == 1


def test_an_expired_or_revoked_token_is_replaced_on_401(cache, client, admin, adapter):
    first = _image(client, admin, b"1" * 10)
    cache.fetch(first)
    token = image_service.client()._token  # noqa: SLF001 - the test revokes the compute's token
    r = client.delete("/identity/v3/auth/tokens", headers={**admin.headers, "X-Subject-Token": token})
    assert r.status_code == 204
    second = _image(client, admin, b"2" * 10)
    assert open(cache.fetch(second), "rb").read() == b"2" * 10
    assert adapter.requests.count(("POST", "/identity/v3/auth/tokens")) == 2


def test_the_service_credential_uploads_snapshot_data_only(client, admin, stratus_env):
    import io

    from drivers.base import DriverError
    from tasks.snapshot_upload import HashingReader
    svc = image_service.client()
    r = client.post("/image/v2/images", headers=admin.headers, json={
        "name": "snap", "disk_format": "raw", "container_format": "bare", "image_type": "snapshot",
        "instance_uuid": "6f1c1f3e-0000-4000-8000-000000000001"})
    snapshot = r.get_json()["id"]
    body = HashingReader(io.BytesIO(b"disk" * 1000))
    assert svc.upload(snapshot, body) == 204 and body.size == 4000
    shown = client.get(f"/image/v2/images/{snapshot}", headers=admin.headers).get_json()
    assert (shown["status"], shown["os_hash_value"]) == ("active", body.sha256.hexdigest())
    assert svc.upload(snapshot, HashingReader(io.BytesIO(b"again"))) == 409  # a redelivered step: already there
    plain = client.post("/image/v2/images", headers=admin.headers,
                        json={"name": "plain", "disk_format": "raw", "container_format": "bare"}).get_json()["id"]
    with pytest.raises(DriverError, match=r"refused the snapshot data .*\(403\)"):
        svc.upload(plain, HashingReader(io.BytesIO(b"x")))


def test_without_a_setting_the_endpoint_comes_from_the_catalog(client, admin, monkeypatch):
    from core.settings import get_settings
    http = image_service.client().http  # the in-process transport
    image_id = _image(client, admin, b"c" * 10)
    monkeypatch.delenv("STRATUS_IMAGE_API_URL")
    get_settings.cache_clear()
    svc = image_service.ImageService(session=http)
    assert svc.show(image_id)["id"] == image_id
    assert svc._endpoint == "http://stratus.test/image"  # noqa: SLF001 - the bootstrap's catalog entry
