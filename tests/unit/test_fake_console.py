"""The fake guest's serial console reads like a real guest's: a multi-line boot log from the instance's own facts
that grows as time since spawn passes (capped like Nova's libvirt driver), so ``os-getConsoleOutput`` with
``length`` returns the last N lines and a longer request more of them (issue 28 item 9)."""
from __future__ import annotations

import uuid

import sqlalchemy as sa

from drivers import fake_console
from drivers.base import ImageSpec, InstanceSpec
from drivers.fake import FakeDriver
from tests.unit.inprocess import COMPUTE, inprocess_conductor, world  # noqa: F401 (fixtures)

NET = {"address": "10.20.0.7", "mac": "fa:16:3e:00:00:07", "bridge": "br-stratus", "gateway": "10.20.0.1",
       "netmask": "255.255.255.0", "prefixlen": 24, "cidr": "10.20.0.0/24", "network_id": "n", "network_name": "n"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def spec(uuid_: str | None = None) -> InstanceSpec:
    image = ImageSpec(id="img", disk_format="raw", container_format="bare", size=1, checksum=None, properties={},
                      path="/dev/null")
    return InstanceSpec(uuid=uuid_ or str(uuid.uuid4()), name="web-1", hostname="web-1", project_id="p",
                        user_id="u", vcpus=2, memory_mb=512, root_gb=1, flavor_name="f", flavor_id="1", image=image,
                        network=NET)


def booted(host: str | None = None, uuid_: str | None = None) -> tuple[FakeDriver, Clock, InstanceSpec]:
    driver, clock = FakeDriver(host or "fc-" + uuid.uuid4().hex[:6]), Clock()
    driver.clock = clock
    s = spec(uuid_)
    driver.build_disk(s)
    driver.spawn(s)
    return driver, clock, s


def test_boot_log_is_multi_line_and_made_of_the_instance():
    driver, clock, s = booted()
    first = driver.get_console_output(s.uuid).splitlines()
    assert len(first) >= 20, first  # a kernel's boot is there at once
    text = "\n".join(first)
    for fact in ("Linux version", "smpboot: Allowing 2 CPUs", "Hostname set to <web-1>", NET["mac"],
                 f"stratus.ip={NET['address']}/24", f"fake guest {s.uuid} booted as web-1"):
        assert fact in text
    # deterministic: the same instance at the same moment prints the same log
    other, other_clock, _ = booted(uuid_=s.uuid)
    other_clock.now = clock.now
    assert other.get_console_output(s.uuid).splitlines() == first


def test_log_grows_with_time_and_is_capped():
    driver, clock, s = booted()
    sizes = []
    for elapsed in (0, 3, fake_console.BOOT_SECONDS, 60, 600):
        clock.now += elapsed - (sizes and sizes[-1][0] or 0)
        sizes.append((elapsed, len(driver.get_console_output(s.uuid).splitlines())))
    counts = [n for _, n in sizes]
    assert counts == sorted(counts) and len(set(counts)) == len(counts), sizes  # strictly growing
    out = driver.get_console_output(s.uuid)
    assert "web-1 login:" in out and f"| {NET['mac']} |" in out
    # events land in time order, after what was printed before them
    driver.power_off(s.uuid)
    assert driver.get_console_output(s.uuid).splitlines()[-1] == "fake guest powered off"
    clock.now += 10 ** 7  # far beyond the cap: the last 100 KiB, whole lines, and no more growth
    capped = driver.get_console_output(s.uuid)
    assert len(capped) <= fake_console.MAX_CONSOLE_BYTES and capped.startswith("[")
    clock.now += 10 ** 7
    assert driver.get_console_output(s.uuid) == capped


def test_a_redelivered_spawn_does_not_restart_the_log():
    driver, clock, s = booted()
    clock.now += 30
    before = driver.get_console_output(s.uuid)
    driver.spawn(s)
    assert driver.get_console_output(s.uuid) == before


def test_console_output_length_pages_a_growing_log(client, world, monkeypatch):
    """Through the API, as tempest's and novaclient's checks do: length=N gives the last N lines, a longer length
    more lines, no length (or -1) the whole log."""
    from core import db
    from core.models import Instance
    from tasks.messaging import rpc

    host = "fc-" + uuid.uuid4().hex[:6]
    driver, clock, _ = booted(host, world.server_id)
    with db.write_session() as s:
        s.execute(sa.update(Instance).where(Instance.uuid == world.server_id).values(
            host=host, node=host, vm_state="active"))
    in_process = rpc.call

    def call(task_name: str, *args, **kwargs):
        if task_name == "stratus.compute.console_output":
            assert args[0] == {"host": host, "instance_uuid": world.server_id}
            return driver.get_console_output(world.server_id)
        return in_process(task_name, *args, **kwargs)
    monkeypatch.setattr(rpc, "call", call)

    def output(args: dict) -> str:
        r = client.post(f"/v2.1/servers/{world.server_id}/action", json={"os-getConsoleOutput": args},
                        headers={**world.a.headers, **COMPUTE})
        assert r.status_code == 200, r.get_data(as_text=True)
        return r.get_json()["output"]

    full = output({}).splitlines()
    assert len(output({"length": 5}).splitlines()) == 5
    assert output({"length": 5}).splitlines() == full[-5:]
    assert len(output({"length": "12"}).splitlines()) == 12
    assert output({"length": -1}).splitlines() == full
    clock.now += 120
    grown = output({"length": -1}).splitlines()
    assert len(grown) > len(full)
    assert len(output({"length": len(full) + 5}).splitlines()) == len(full) + 5
