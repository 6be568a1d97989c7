"""rosbag2 support through the `rosbags` library (no ROS import): type store, storage names,
and the check that a recorded topic can be replayed with the installed message definitions."""
from __future__ import annotations

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from rosbags.interfaces import Connection
from rosbags.rosbag2 import StoragePlugin
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


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
