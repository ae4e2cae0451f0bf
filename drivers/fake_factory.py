from __future__ import annotations

from core.settings import Settings
from drivers.base import console_address
from drivers.fake import FakeDriver


def make(host: str, settings: Settings) -> FakeDriver:
    state_dir = settings.state_path / "fake-guests" / host if settings.fake_persist else None
    return FakeDriver(host, vcpus=settings.fake_vcpus, memory_mb=settings.fake_memory_mb,
                      local_gb=settings.fake_local_gb, state_dir=state_dir,
                      build_disk_delay=settings.fake_build_disk_delay, spawn_delay=settings.fake_spawn_delay,
                      live_migration_seconds=settings.fake_live_migration_seconds,
                      host_ip=settings.my_ip or "127.0.0.1", console_address=console_address(settings),
                      console_port=settings.fake_console_port,
                      serial_port_range=settings.serial_port_range)
