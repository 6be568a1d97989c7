"""Pure ESPARGOS wire-protocol decoding (no I/O, no ROS): bytes in, sensor reports out."""
