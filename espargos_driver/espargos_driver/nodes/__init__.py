"""Thin entry points: ROS nodes and the board simulator."""
