"""rosbag2 support through the `rosbags` library (no ROS import): type store, storage names,
and the check that a recorded topic can be replayed with the installed message definitions."""
from __future__ import annotations

import os
from io import BytesIO
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from rosbags.interfaces import Connection
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import Channel, McapWriter, write_channel, write_string
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
ROS_DISTRO = os.environ.get("ROS_DISTRO", "jazzy")
"""Written as the bag's ``ros_distro`` (rosbags writes its own name there)."""


def _with_distro(metadata_yaml: str) -> str:
    return metadata_yaml.replace("ros_distro: rosbags", f"ros_distro: {ROS_DISTRO}")


class JazzyMcapWriter(McapWriter):
    """rosbags' MCAP storage, with the channel metadata rosbag2 Jazzy writes and reads: the type
    hash (``topic_type_hash``) beside the offered QoS, so a lone .mcap keeps its type hashes.
    (rosbags' own ``add_connection`` with the second key; its schema was written just before.)"""

    def add_connection(self, connection: Connection, offered_qos_profiles: str) -> None:
        metadata = BytesIO()
        for key, value in (("offered_qos_profiles", offered_qos_profiles),
                           ("topic_type_hash", connection.digest or "")):
            write_string(metadata, key)
            write_string(metadata, value)
        self.channels.append(Channel(connection.id, connection.msgtype, connection.topic,
                                     connection.ext.serialization_format, metadata.getvalue()))
        self.channel_stats[connection.id] = 0
        write_channel(self.chunk.bio, self.channels[-1], self.schemas)

    def close(self, version: int, metadata: str) -> None:
        super().close(version, _with_distro(metadata))


class BagWriter(Writer):
    """rosbags' rosbag2 writer with ``ros_distro`` set and the MCAP channel metadata of Jazzy."""

    STORAGE_PLUGINS = {**Writer.STORAGE_PLUGINS, StoragePlugin.MCAP: JazzyMcapWriter}

    def close(self) -> None:
        super().close()
        self.metapath.write_text(_with_distro(self.metapath.read_text()))


def espargos_typestore() -> Typestore:
    """ROS 2 Jazzy type store plus every espargos_msgs message, from the installed .msg files
    (so the definitions written into a bag are exactly the ones the nodes publish)."""
    store = get_typestore(Stores.ROS2_JAZZY)
    msg_dir = Path(get_package_share_directory("espargos_msgs")) / "msg"
    types = {}
    for path in sorted(msg_dir.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"espargos_msgs/msg/{path.stem}"))
    store.register(types)
    return store


def replay_problem(connection: Connection, store: Typestore, installed: bool) -> str | None:
    """Why a recorded topic cannot be replayed as it is (None if it can).

    ``installed``: whether the message type can be imported here. A recorded type hash
    (RIHS01) that differs from the installed definition's means the bag was written with
    another version of the message: its bytes would be misread.
    """
    msgtype = connection.msgtype
    if not installed or msgtype not in store.types:
        return f"{connection.topic}: type {msgtype} is not installed here; skipped"
    digest = connection.digest or ""
    if digest.startswith("RIHS01_") and digest != store.hash_rihs01(msgtype):
        return (f"{connection.topic}: recorded with another definition of {msgtype} (type hash {digest[:19]}..., "
                f"installed {store.hash_rihs01(msgtype)[:19]}...), e.g. an older message version; skipped")
    return None
