"""Thin rclpy shells around the espargos_aoa core."""
