from __future__ import annotations

from app.settings import Settings
from drivers.fake import FakeDriver


def make(host: str, settings: Settings) -> FakeDriver:
    return FakeDriver(host, vcpus=settings.fake_vcpus, memory_mb=settings.fake_memory_mb,
                      local_gb=settings.fake_local_gb)
