"""kombu's filesystem transport with atomic message files.

Upstream writes a message file in place under a lock that readers do not take, so a consumer can pick up a
half-written file and lose the message (JSONDecodeError in _get). Here each message is written to a hidden
temporary name and renamed into place, which is atomic on POSIX: readers see whole messages or none.
"""
from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot: "partition('.')" in _get never matches "<queue>.msg" for temporary files.
        tmp = os.path.join(self.data_folder_out, f".{name}.tmp")
        try:
            with open(tmp, "wb", buffering=0) as f:
                f.write(str_to_bytes(dumps(payload)))
            os.rename(tmp, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
