"""Graph -> launch_ros actions, for the thin launch files in launch/ (needs launch_ros)."""
from __future__ import annotations

import tempfile

from launch_ros.actions import Node

from .graph import Graph


def graph_actions(graph: Graph) -> list:
    """One launch_ros Node per graph node (the simulator too: it ignores ROS arguments), one
    tf2_ros static_transform_publisher per transform, one rviz2 per rviz configuration."""
    actions = []
    for spec in graph.nodes:
        actions.append(Node(package=spec.package, executable=spec.executable, name=spec.name,
                            namespace=spec.namespace or None, parameters=[spec.parameters] if spec.ros else None,
                            arguments=spec.arguments or None, remappings=spec.remappings or None, output="screen"))
    for t in graph.transforms:
        actions.append(Node(package="tf2_ros", executable="static_transform_publisher",
                            name=f"static_tf_{t.child}", arguments=t.arguments(), output="log"))
    for text in graph.rviz_configs:
        with tempfile.NamedTemporaryFile("w", suffix=".rviz", prefix="espargos_", delete=False) as f:
            f.write(text)
        actions.append(Node(package="rviz2", executable="rviz2", arguments=["-d", f.name], output="log"))
    return actions
