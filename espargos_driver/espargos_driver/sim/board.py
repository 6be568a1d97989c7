"""A simulated ESPARGOS board: controller state and the sensor packets it emits over time."""
from __future__ import annotations

import struct

import numpy as np

from ..calibration import reference_delays_s
from ..protocol.constants import g3_antenna_row_col
from ..wifi import CsiFormat, secondary_from_code, secondary_to_code
from .channel import ArrayChannel
from .encoder import ACQUIRE_LLTF_8BIT, csi_message, csi_to_bytes, apply_timestamp_slope, quantise_timestamp, rx_ctrl_v3, sensor_packets
from .scenario import Scenario

RF_REFERENCE = 1
REFERENCE_MAC = bytes.fromhex("02e5a7000001")
BROADCAST = b"\xff" * 6
AMPLITUDE_COUNTS = 60.0
BOOT_TIME_NS = 3_600e9
"""The simulated sensors' clocks read one hour at scenario time zero."""
MAX_BACKLOG_S = 0.2
"""After a stall longer than this the board skips frames instead of bursting them."""

_FORMATS = {"lltf": CsiFormat.LLTF, "ht20": CsiFormat.HT20, "ht40": CsiFormat.HT40, "he20": CsiFormat.HE20}


class SimulatedBoard:
    """Controller state (wificonf, RF switch, MAC filter, acquisition) and the channel behind it."""

    def __init__(self, scenario: Scenario, hostname: str = "espargos-sim", api_major: int = 3,
                 fragment_size: int = 0) -> None:
        self.scenario = scenario
        self.hostname = hostname
        self.api_major = api_major
        self.fragment_size = fragment_size
        self.rng = np.random.default_rng(scenario.seed)
        self.channel = ArrayChannel(scenario.impairments, reference_delays_s(1)[0], self.rng)
        self.wificonf = {"channel-primary": scenario.channel,
                         "channel-secondary": secondary_to_code(scenario.secondary),
                         "country-code": "DE", "calib-mode": 1, "calib-source": 0,
                         "calib-txpower": 40, "calib-interval": int(1000 / scenario.reference_rate_hz)}
        self.rfswitch = 2
        self.mac_filter = {"enable": False, "mac": "00:00:00:00:00:00", "mac_mask": "ff:ff:ff:ff:ff:ff"}
        self.acquire = {"enable": True, "compress_csi": False, "acquire_csi_force_lltf": False,
                        "lltf_8bit_mode": True, "acquire_csi_ht20": True, "acquire_csi_ht40": True}
        self.gains = {"fft_scale_enable": False, "rx_gain_enable": False, "rx_gain_value": 32}
        self._uid = [0] * 8
        self._seq: dict[bytes, int] = {}
        self._next_ota = [0.0] * len(scenario.transmitters)
        self._next_ref = 0.0
        self.frames_sent = 0
        self._replay: list[list[bytes]] = []
        self._replay_index = 0

    @property
    def secondary(self) -> int:
        return secondary_from_code(int(self.wificonf["channel-secondary"]))

    def csi_format(self, reference: bool) -> CsiFormat:
        """Format of the next frame; the reference generator always sends HT (HT40 when bonded)."""
        if self.acquire.get("acquire_csi_force_lltf"):
            return CsiFormat.LLTF
        if self.scenario.format != "auto" and not reference:
            return _FORMATS[self.scenario.format]
        return CsiFormat.HT40 if self.secondary else CsiFormat.HT20

    def precompute(self, frames: int) -> None:
        """Encode ``frames`` OTA frames of each transmitter now and replay them cyclically
        (distinct sequence numbers while frames <= 4096), so that the simulator can offer far
        more frames per second than it could compute: for throughput benchmarks."""
        self._replay = [self._frame(i, k / self.scenario.frame_rate_hz)
                        for k in range(frames) for i in range(len(self.scenario.transmitters))]

    def start(self, t_s: float) -> None:
        """Start emitting at scenario time ``t_s``."""
        self._next_ota = [t_s] * len(self.scenario.transmitters)
        self._next_ref = t_s

    def packets_due(self, t_s: float) -> list[bytes]:
        """Every sensor packet of frames scheduled up to scenario time ``t_s``, in time order."""
        if not self.acquire.get("enable", True):
            return []
        out: list[bytes] = []
        if self.rfswitch == RF_REFERENCE:
            if int(self.wificonf.get("calib-mode", 1)) >= 1:
                interval = max(int(self.wificonf.get("calib-interval", 10)), 1) / 1000
                self._next_ref = max(self._next_ref, t_s - MAX_BACKLOG_S)
                while self._next_ref <= t_s:
                    out += self._frame(None, self._next_ref)
                    self._next_ref += interval
            return out
        for i, tx in enumerate(self.scenario.transmitters):
            self._next_ota[i] = max(self._next_ota[i], t_s - MAX_BACKLOG_S)
            while self._next_ota[i] <= t_s:
                if self._replay:
                    out += self._replay[self._replay_index % len(self._replay)]
                    self._replay_index += 1
                elif self._mac_passes(tx.mac_bytes):
                    out += self._frame(i, self._next_ota[i])
                self._next_ota[i] += 1 / self.scenario.frame_rate_hz
        return out

    def _mac_passes(self, mac: bytes) -> bool:
        if not self.mac_filter.get("enable"):
            return True
        want = bytes.fromhex(str(self.mac_filter.get("mac", "")).replace(":", ""))
        mask = bytes.fromhex(str(self.mac_filter.get("mac_mask", "ff:ff:ff:ff:ff:ff")).replace(":", ""))
        return all((a & m) == (b & m) for a, b, m in zip(mac, want, mask))

    def _frame(self, tx_index: int | None, t_s: float) -> list[bytes]:
        sc = self.scenario
        fmt = self.csi_format(reference=tx_index is None)
        ch = int(self.wificonf["channel-primary"])
        sec = self.secondary
        if tx_index is None:
            z = self.channel.reference(fmt, ch, sec, snr_db=30.0)
            src = REFERENCE_MAC
        else:
            tx = sc.transmitters[tx_index]
            z = self.channel.ota(tx, t_s, fmt, ch, sec, sc.snr_db)
            src = tx.mac_bytes
        seq = self._seq.get(src, 0)
        self._seq[src] = (seq + 1) & 0xFFF
        t_ns = BOOT_TIME_NS + t_s * 1e9 + self.channel.clock_offset_ns
        stamps = [quantise_timestamp(t) for t in t_ns]
        z = apply_timestamp_slope(z, fmt, sec, np.array([s[2] for s in stamps])) * AMPLITUDE_COUNTS
        raw = csi_to_bytes(z, fmt)
        self.frames_sent += 1
        packets = []
        faults = sc.faults
        for antid in range(8):
            if self.rng.random() < sc.impairments.report_loss:
                continue
            row, col = g3_antenna_row_col(antid)
            index = row * 4 + col
            us, cyc, _ = stamps[index]
            rx = rx_ctrl_v3(fmt=fmt, channel=ch, secondary=sec, csi_len=len(raw[index]), rssi_dbm=-45,
                            noise_floor_dbm=-92, rxstart_cyc=cyc, timestamp_us=us)
            extra = b"\xc8\x03\x00abc" if self.rng.random() < faults.unknown_tlv else b""
            message = csi_message(src=src, dst=BROADCAST, seq=seq, is_calib=tx_index is None,
                                  global_us=us, rf_switch=self.rfswitch, rx_ctrl=rx, csi=raw[index],
                                  acquire_flags=ACQUIRE_LLTF_8BIT if fmt == CsiFormat.LLTF else 0,
                                  extra_tlvs=extra)
            if self.rng.random() < faults.bad_crc:
                message = message[:40] + bytes([message[40] ^ 0x55]) + message[41:]
            packets += self._apply_packet_faults(sensor_packets(message, self._next_uid(antid), self.fragment_size))
        return packets

    def _apply_packet_faults(self, packets: list[bytes]) -> list[bytes]:
        faults = self.scenario.faults
        out = []
        for pkt in packets:
            r = self.rng.random
            if r() < faults.drop_fragment and len(packets) > 1:
                continue
            if r() < faults.truncate:
                pkt = pkt[:int(self.rng.integers(1, len(pkt)))]
            if r() < faults.bad_magic:
                pkt = struct.pack("<I", 0x12345678) + pkt[4:]
            out.append(pkt)
            if r() < faults.repeat_fragment:
                out.append(pkt)
        return out

    def _next_uid(self, antid: int) -> int:
        counter = self._uid[antid] % ((1 << 29) - 1) + 1
        self._uid[antid] = counter
        return (antid << 29) | counter
