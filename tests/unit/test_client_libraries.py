"""Each API's own client library, unmodified, over real HTTP: a 404, a 409 and a 400 raise that library's own
exception class (python-glanceclient, python-keystoneclient, python-novaclient), with the server's message."""
from __future__ import annotations

import io
import threading
import uuid

import pytest

from tests.unit.conftest import ADMIN_PASSWORD
from tests.unit.inprocess import inprocess_conductor  # noqa: F401  (fixture)


@pytest.fixture
def served(app, admin, inprocess_conductor, monkeypatch):  # noqa: F811
    """The in-process app behind a real HTTP server; its catalog points at that server."""
    from werkzeug.serving import make_server

    from core import settings

    server = make_server("127.0.0.1", 0, app, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("STRATUS_PUBLIC_URL", url)
    settings.get_settings.cache_clear()
    from app.identity import service
    from core import db
    with db.write_session() as s:  # the seeded catalog's endpoints move to the new URL, as a re-bootstrap does
        service.bootstrap_catalog(s)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield url
    server.shutdown()
    thread.join(10)


@pytest.fixture
def session(served):
    from keystoneauth1 import session
    from keystoneauth1.identity import v3
    auth = v3.Password(auth_url=f"{served}/identity/v3", username="admin", password=ADMIN_PASSWORD,
                       project_name="admin", user_domain_name="Default", project_domain_name="Default")
    return session.Session(auth=auth)


def test_glanceclient_raises_its_own_exceptions(session):
    from glanceclient import Client
    from glanceclient import exc

    glance = Client("2", session=session)
    missing = str(uuid.uuid4())
    with pytest.raises(exc.HTTPNotFound, match=f"No image found with ID {missing}"):
        glance.images.get(missing)
    with pytest.raises(exc.HTTPNotFound):
        glance.images.delete(missing)
    image = glance.images.create(name="client-lib", disk_format="raw", container_format="bare")
    glance.images.upload(image.id, io.BytesIO(b"x" * 512))
    with pytest.raises(exc.HTTPConflict):
        glance.images.upload(image.id, io.BytesIO(b"y" * 512))
    with pytest.raises(exc.HTTPBadRequest, match="Invalid visibility value: nope"):
        list(glance.images.list(filters={"visibility": "nope"}))
    glance.images.delete(image.id)
    with pytest.raises(exc.HTTPNotFound):  # what tools waiting for an image to disappear rely on
        glance.images.get(image.id)


def test_keystoneclient_raises_its_own_exceptions(session):
    from keystoneclient import exceptions
    from keystoneclient.v3 import client

    keystone = client.Client(session=session)
    with pytest.raises(exceptions.NotFound, match="Could not find project"):
        keystone.projects.get("no-such-project")
    with pytest.raises(exceptions.Conflict):
        keystone.projects.create(name="admin", domain="default")
    with pytest.raises(exceptions.BadRequest):
        keystone.users.create(name="")


def test_novaclient_raises_its_own_exceptions(session):
    from novaclient import client
    from novaclient import exceptions

    nova = client.Client("2.96", session=session)
    missing = str(uuid.uuid4())
    with pytest.raises(exceptions.NotFound, match=f"Instance {missing} could not be found"):
        nova.servers.get(missing)
    nova.flavors.create("client-lib", ram=64, vcpus=1, disk=1)
    with pytest.raises(exceptions.Conflict):
        nova.flavors.create("client-lib", ram=64, vcpus=1, disk=1)
    with pytest.raises(exceptions.BadRequest, match="Invalid imageRef"):
        nova.servers.create("client-lib", image="not-a-uuid", flavor="42", nics="none")


def test_glance_cli_image_show_of_a_missing_image(served):
    """`glance image-show <missing>` (the issue's report): the CLI says the image is not found, not a traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(OS_AUTH_URL=f"{served}/identity/v3", OS_USERNAME="admin", OS_PASSWORD=ADMIN_PASSWORD,
               OS_PROJECT_NAME="admin", OS_USER_DOMAIN_NAME="Default", OS_PROJECT_DOMAIN_NAME="Default")
    missing = str(uuid.uuid4())
    proc = subprocess.run([str(Path(sys.executable).parent / "glance"), "image-show", missing], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout
    # glanceclient's reading of Glance's HTML page: its <title> and <h1>, then the explanation
    assert proc.stderr.strip() == f"HTTP 404 Not Found: No image found with ID {missing}", proc.stderr
