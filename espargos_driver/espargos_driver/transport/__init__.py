"""Talking to a board (no ROS): HTTP control, UDP/WebSocket sensor streams, reconnects."""
