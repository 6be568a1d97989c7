"""Single-antenna ESP32 / ESP32-C5 / ESP32-C6 swarm nodes: report formats, subcarrier layouts (pure, no ROS)."""
