"""kombu's `filesystem://` transport, made safe for several processes on one queue folder.

The stock transport (kombu 5.7) has two races that bite as soon as two workers and an API share
the folder: a publisher creates the message file and only then writes it, so a consumer can pick
up an empty file; and a consumer "claims" a message with `shutil.move` into a folder that may be
on another file system (copy + delete: two consumers can both get it). Here a message is written
to a hidden temp name and renamed into place (atomic), and claimed by `os.rename` into a
`processed` folder beside it (atomic on one file system: exactly one consumer wins).
Selected in lab.broker through `broker_transport`; the URL stays `filesystem://`.
"""

from __future__ import annotations

import os
import uuid
from queue import Empty
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        """Write under a temp name, fsync, then rename into the queue folder (atomic)."""
        # monotonic is system-wide on Linux: sorting by name is FIFO across processes
        name = f"{int(round(monotonic() * 1000)):016d}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        temp = os.path.join(self.data_folder_out, f".tmp-{uuid.uuid4().hex}")
        try:
            with open(temp, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add message {final!r} to the queue folder") from exc

    def _get(self, queue):
        """Claim the oldest message of `queue` by renaming it; losers of a race try the next."""
        suffix = f".{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.startswith(".") or name.partition(".")[2] != suffix[1:]:
                continue
            claimed = os.path.join(self.processed_folder, f"{name}.{os.getpid()}")
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except OSError:
                continue  # another consumer claimed it first
            try:
                with open(claimed, "rb") as f:
                    payload = f.read()
                os.remove(claimed)
            except OSError as exc:
                raise ChannelError(f"Cannot read claimed message {claimed!r}") from exc
            return loads(bytes_to_str(payload))
        raise Empty()

    def _size(self, queue):
        suffix = f".{queue}.msg"
        return sum(1 for name in os.listdir(self.data_folder_in)
                   if not name.startswith(".") and name.partition(".")[2] == suffix[1:])


class Transport(filesystem.Transport):
    Channel = Channel
