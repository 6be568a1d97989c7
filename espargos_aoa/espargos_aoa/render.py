"""Spatial spectrum and bearings -> PNG (matplotlib, no display needed). No ROS import.

Works on espargos_msgs/SpatialSpectrum and BearingArray objects from rclpy or from a
rosbags reader alike: only their field names are used.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _mac(raw) -> str:
    return ":".join(f"{int(b):02x}" for b in raw)


def render_png(spectrum, bearings, path: str | Path, dynamic_range_db: float = 40.0) -> Path:
    """Write a PNG of ``spectrum`` (a SpatialSpectrum) with ``bearings`` (a BearingArray or None).

    1-D: power (dB) over azimuth with each bearing and its 1-sigma band; 2-D: an azimuth x
    elevation map with each bearing and its 1-sigma box. Angles shown in degrees.
    """
    az = np.degrees(np.asarray(spectrum.azimuths, float))
    el = np.degrees(np.asarray(spectrum.elevations, float))
    power = np.asarray(spectrum.power_db, float).reshape(el.size, az.size)
    marks = list(bearings.bearings) if bearings is not None else []
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    if el.size == 1:
        ax.plot(az, power[0], color="tab:blue", lw=1.5, label="MUSIC pseudo-spectrum")
        for b in marks:
            a, s = np.degrees(b.azimuth), np.degrees(b.azimuth_std)
            ax.axvspan(a - s, a + s, color="tab:red", alpha=0.25)
            ax.axvline(a, color="tab:red", lw=1.2, label=f"bearing {a:.2f}\u00b1{s:.2f}\u00b0")
        ax.set_ylim(-dynamic_range_db, 3)
        ax.set_xlabel("azimuth (deg, +x towards +y)")
        ax.set_ylabel("power (dB)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    else:
        mesh = ax.pcolormesh(az, el, np.clip(power, -dynamic_range_db, 0), shading="nearest", cmap="viridis")
        fig.colorbar(mesh, ax=ax, label="power (dB)")
        for b in marks:
            a, e = np.degrees(b.azimuth), np.degrees(b.elevation)
            sa, se = np.degrees(b.azimuth_std), np.degrees(b.elevation_std)
            ax.add_patch(plt.Rectangle((a - sa, e - se), 2 * sa, 2 * se, fill=False, ec="tab:red", lw=1.2))
            ax.plot(a, e, "+", color="tab:red", ms=12, mew=2)
            ax.annotate(f"{a:.1f}\u00b0, {e:.1f}\u00b0", (a, e), xytext=(6, 6), textcoords="offset points",
                        color="white", fontsize=8)
        ax.set_xlabel("azimuth (deg)")
        ax.set_ylabel("elevation (deg)")
    stamp = spectrum.header.stamp.sec + spectrum.header.stamp.nanosec * 1e-9
    ax.set_title(f"{spectrum.source_id} \u2190 {_mac(spectrum.transmitter_mac)}  {spectrum.method}, "
                 f"{spectrum.window_frames} frames, t={stamp:.3f} s", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
