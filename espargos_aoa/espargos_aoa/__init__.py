"""Angle of arrival from calibrated ESPARGOS CSI: covariance, MUSIC, bearings (pure core) and ROS nodes."""
