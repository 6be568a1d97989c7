"""Spatial spectrum and bearings -> PNG (matplotlib, no display needed). No ROS import.

Works on espargos_msgs/SpatialSpectrum and BearingArray objects from rclpy or from a
rosbags reader alike: only their field names are used.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


CURVE, BAND, TRUTH = "tab:blue", "tab:red", "tab:green"


def _mac(raw) -> str:
    return ":".join(f"{int(b):02x}" for b in raw)


def auto_range_db(power_db: np.ndarray) -> float:
    """dB below the peak to show: the whole spectrum, at least 30 dB, at most 80 dB."""
    lowest = float(np.nanmin(power_db)) if np.isfinite(power_db).any() else -30.0
    return float(np.clip(np.ceil(-lowest / 10.0) * 10.0, 30.0, 80.0))


def stamp_text(sec: int, nanosec: int) -> str:
    """A message stamp as UTC date and time (epoch stamps) or seconds (simulated/bag time)."""
    t = sec + nanosec * 1e-9
    if t > 1e9:
        whole = datetime.fromtimestamp(sec, tz=timezone.utc)
        return whole.strftime("%Y-%m-%d %H:%M:%S") + f".{nanosec // 1_000_000:03d} UTC"
    return f"t = {t:.3f} s"


def render_png(spectrum, bearings, path: str | Path, dynamic_range_db: float | None = None,
               truth_azimuth_deg: float | None = None) -> Path:
    """Write a PNG of ``spectrum`` (a SpatialSpectrum) with ``bearings`` (a BearingArray or None).

    1-D: power (dB) over azimuth with each bearing, and an inset around the strongest bearing
    where its 1-sigma band is wide enough to see; 2-D: an azimuth x elevation map with each
    bearing and its 1-sigma box. ``dynamic_range_db`` None: the whole spectrum (30..80 dB).
    ``truth_azimuth_deg``: the true bearing (e.g. from the simulator's scenario), drawn dashed
    green. Angles in degrees.
    """
    az = np.degrees(np.asarray(spectrum.azimuths, float))
    el = np.degrees(np.asarray(spectrum.elevations, float))
    power = np.asarray(spectrum.power_db, float).reshape(el.size, az.size)
    span = auto_range_db(power) if dynamic_range_db is None else dynamic_range_db
    marks = list(bearings.bearings) if bearings is not None else []
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    if el.size == 1:
        ax.plot(az, power[0], color=CURVE, lw=1.5, label="MUSIC pseudo-spectrum")
        for b in marks:
            a, s = np.degrees(b.azimuth), np.degrees(b.azimuth_std)
            ax.axvspan(a - s, a + s, color=BAND, alpha=0.25)
            ax.axvline(a, color=BAND, lw=1.2, label=f"bearing {a:.2f} \u00b1 {s:.2g}\u00b0 (1\u03c3)")
        if truth_azimuth_deg is not None:
            ax.axvline(truth_azimuth_deg, color=TRUTH, lw=1.2, ls="--", label=f"true bearing {truth_azimuth_deg:.2f}\u00b0")
        ax.set_ylim(-span, 3)
        ax.set_xlim(az[0], az[-1])
        ax.set_xlabel("azimuth (deg, +x towards +y)")
        ax.set_ylabel("power (dB re. peak)")
        ax.grid(alpha=0.3)
        # The spectrum's floor fills the bottom: legend and zoom go to the top, away from the peak.
        ax.legend(loc="upper right" if not marks or np.degrees(marks[0].azimuth) > 0 else "upper left", fontsize=8)
        if marks:
            _zoom(ax, az, power[0], marks[0], truth_azimuth_deg)
    else:
        mesh = ax.pcolormesh(az, el, np.clip(power, -span, 0), shading="nearest", cmap="viridis")
        fig.colorbar(mesh, ax=ax, label="power (dB re. peak)")
        for b in marks:
            a, e = np.degrees(b.azimuth), np.degrees(b.elevation)
            sa, se = np.degrees(b.azimuth_std), np.degrees(b.elevation_std)
            ax.add_patch(plt.Rectangle((a - sa, e - se), 2 * sa, 2 * se, fill=False, ec=BAND, lw=1.2))
            ax.plot(a, e, "+", color=BAND, ms=12, mew=2)
            ax.annotate(f"{a:.1f}\u00b0, {e:.1f}\u00b0", (a, e), xytext=(6, 6), textcoords="offset points",
                        color="white", fontsize=8)
        if truth_azimuth_deg is not None:
            ax.axvline(truth_azimuth_deg, color=TRUTH, lw=1.2, ls="--")
        ax.set_xlabel("azimuth (deg)")
        ax.set_ylabel("elevation (deg)")
    ax.set_title(f"{spectrum.source_id} \u2190 {_mac(spectrum.transmitter_mac)}  {spectrum.method}, "
                 f"{spectrum.window_frames} frames, {stamp_text(spectrum.header.stamp.sec, spectrum.header.stamp.nanosec)}",
                 fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def _zoom(ax, az: np.ndarray, power: np.ndarray, bearing, truth_deg: float | None) -> None:
    """Inset of +-6 sigma around one bearing, so that its 1-sigma band (and a nearby true
    bearing) can be seen however small; the curve is drawn in it only where the zoom spans
    several grid steps (finer, it would be the grid's straight-line interpolation)."""
    a, s = np.degrees(bearing.azimuth), np.degrees(bearing.azimuth_std)
    half = 6 * s if np.isfinite(s) and s > 0 else 1.0
    if truth_deg is not None and abs(truth_deg - a) < 50 * half:
        half = max(half, 1.3 * abs(truth_deg - a))
    inset = ax.inset_axes([0.04 if a > 0 else 0.62, 0.5, 0.34, 0.42])
    step = float(np.median(np.diff(az))) if az.size > 1 else np.inf
    if half >= 2 * step:
        fine = np.linspace(a - half, a + half, 400)
        inset.plot(fine, np.interp(fine, az, power), color=CURVE, lw=1.2)
    else:
        inset.set_yticks([])
    inset.axvspan(a - s, a + s, color=BAND, alpha=0.25)
    inset.axvline(a, color=BAND, lw=1.0)
    if truth_deg is not None:
        inset.axvline(truth_deg, color=TRUTH, lw=1.0, ls="--")
    inset.set_xlim(a - half, a + half)
    inset.set_title(f"\u00b1{half:.2g}\u00b0 around the bearing (band: 1\u03c3)", fontsize=7)
    inset.tick_params(labelsize=6)
