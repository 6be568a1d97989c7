"""rosbag2 support through the `rosbags` library: a type store that knows the suite's messages."""
from __future__ import annotations

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore


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
