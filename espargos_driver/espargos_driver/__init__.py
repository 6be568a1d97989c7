"""ESPARGOS WiFi CSI driver: wire protocol, transport, clustering, calibration, simulator, ROS nodes."""
