"""Simulated ESPARGOS boards: controller state, and the sensor packets they emit over time.

Several boards can form one phase-coherent rig (a combined array): they share one 40 MHz
reference clock, one channel model over all their antennas (so every board sees the same
frame, from its own antennas' positions), and the reference signal of one board, which
reaches the others over cables of known length. A lone ``SimulatedBoard(scenario)`` is a rig
of one.
"""
from __future__ import annotations

import struct

import numpy as np

from ..calibration import reference_delays_s
from ..layout import ArrayLayout, single_board_layout
from ..protocol.constants import ANTENNAS, g3_antenna_row_col
from ..wifi import CsiFormat, secondary_from_code, secondary_to_code
from .channel import ArrayChannel
from .encoder import (ACQUIRE_LLTF_8BIT, apply_timestamp_slope, can_restamp, csi_message, csi_to_bytes, quantise_timestamp,
                      restamp, rx_ctrl_v3, sensor_packets)
from .scenario import Scenario

RF_REFERENCE = 1
REFERENCE_MAC = bytes.fromhex("02e5a7000001")
BROADCAST = b"\xff" * 6
AMPLITUDE_COUNTS = 60.0
BOOT_TIME_NS = 3_600e9
"""The simulated sensors' clocks read one hour at scenario time zero."""
NOMINAL_RX_GAIN_DB = 20
"""RX gain (dB) reported when the AGC adds nothing; it adds its per-frame gain to this."""
REPLAY_SPAN_S = 0.5
"""Scenario time over which a precomputed replay is encoded (the channel's fading over it), s.
Replayed packets are moved to the live sensor time (``restamp``), so the span does not reach the
driver; kept below supervisor.REBOOT_BACKSTEP_S all the same."""
RESTAMP_STEP_US = 64
"""Replayed packets are moved to the live sensor time in steps of 64 µs: whole periods of the
OFDM symbol of every format (3.2 µs, HE 12.8 µs), so the CSI's STO phase stays right."""
MAX_BACKLOG_S = 0.2
"""After a stall longer than this the rig skips frames instead of bursting them."""

_FORMATS = {"lltf": CsiFormat.LLTF, "ht20": CsiFormat.HT20, "ht40": CsiFormat.HT40, "he20": CsiFormat.HE20}


class SimulatedRig:
    """Boards sharing a clock, a reference generator and one channel model; schedules frames."""

    def __init__(self, scenario: Scenario, layout: ArrayLayout, hostname: str = "espargos-sim",
                 api_major: int = 3, fragment_size: int = 0, boards: list[SimulatedBoard] | None = None) -> None:
        """``boards``: existing boards to adopt (one per layout board); None: build them."""
        self.scenario = scenario
        self.layout = layout
        self.rng = np.random.default_rng(scenario.seed)
        delays = reference_delays_s(len(layout.boards), cable_lengths_m=[b.cable_length_m for b in layout.boards],
                                    velocity_factors=[b.velocity_factor for b in layout.boards])
        self.channel = ArrayChannel(scenario.impairments, delays, self.rng, layout.board_positions())
        self.boards = boards if boards is not None else [
            SimulatedBoard(scenario, f"{hostname}-{spec.name}" if len(layout.boards) > 1 else hostname,
                           api_major, fragment_size, rig=self) for spec in layout.boards]
        self._seq: dict[bytes, int] = {}
        self._next_ota = [0.0] * len(scenario.transmitters)
        self._next_ref = 0.0
        self._started = False
        self._advanced_to = -np.inf
        self.frames_sent = 0
        self.booted_at_s = np.zeros(len(layout.boards))
        """Scenario time of each board's last boot: its sensor clocks read BOOT_TIME_NS then."""

    @property
    def reference(self) -> "SimulatedBoard":
        return self.boards[self.layout.reference_board]

    def start(self, t_s: float) -> None:
        """Start emitting at scenario time ``t_s`` (the first call counts)."""
        if not self._started:
            self._started = True
            self._next_ota = [t_s] * len(self.scenario.transmitters)
            self._next_ref = t_s

    def precompute(self, frames: int) -> None:
        """Encode ``frames`` OTA frames of each transmitter now and let every board replay its
        packets cyclically, so that the simulator can offer far more frames per second than it
        could compute: for benchmarks. Each replayed packet is moved to the live sensor time
        (``encoder.restamp``), so the replay's sensor clock runs on like the reference frames' and
        never looks like a reboot to the driver; with 4096 frames (the 802.11 sequence space) the
        sequence numbers also continue across the wrap, so the driver counts no gap."""
        for k in range(frames):
            for i in range(len(self.scenario.transmitters)):
                self._ota_frame(i, k * REPLAY_SPAN_S / frames)
                for board in self.boards:                 # one replay entry = every packet of one frame
                    board.replay.append((k * REPLAY_SPAN_S / frames, board.queue))
                    board.queue = []

    def advance(self, t_s: float) -> None:
        """Generate every frame scheduled up to scenario time ``t_s`` into the boards' queues."""
        if t_s <= self._advanced_to:
            return
        self._advanced_to = t_s
        ref = self.reference
        if ref.rfswitch == RF_REFERENCE:
            if int(ref.wificonf.get("calib-mode", 1)) >= 1:
                interval = max(int(ref.wificonf.get("calib-interval", 10)), 1) / 1000
                self._next_ref = max(self._next_ref, t_s - MAX_BACKLOG_S)
                while self._next_ref <= t_s:
                    self._reference_frame()
                    self._next_ref += interval
            return
        for i in range(len(self.scenario.transmitters)):
            self._next_ota[i] = max(self._next_ota[i], t_s - MAX_BACKLOG_S)
            while self._next_ota[i] <= t_s:
                if any(b.replay for b in self.boards):
                    for b in self.boards:
                        encoded_at_s, packets = b.replay[b.replay_index % len(b.replay)]
                        shift_us = int((self._next_ota[i] - encoded_at_s) * 1e6) // RESTAMP_STEP_US * RESTAMP_STEP_US
                        b.queue += [restamp(p, shift_us) if can_restamp(p) else p for p in packets]
                        b.replay_index += 1
                else:
                    self._ota_frame(i, self._next_ota[i])
                self._next_ota[i] += 1 / self.scenario.frame_rate_hz

    def reboot(self, board: "SimulatedBoard", t_s: float) -> None:
        """``board`` reboots at scenario time ``t_s``: new LO phases and timing offsets of its
        sensors, their clocks restart, and the controller's state returns to its defaults."""
        b = self.boards.index(board)
        self.channel.reboot(slice(b * ANTENNAS, (b + 1) * ANTENNAS))
        self.booted_at_s[b] = t_s
        board.reset_state()

    def _next_seq(self, src: bytes) -> int:
        seq = self._seq.get(src, 0)
        self._seq[src] = (seq + 1) & 0xFFF
        return seq

    def _ota_frame(self, tx_index: int, t_s: float) -> None:
        tx = self.scenario.transmitters[tx_index]
        ref = self.reference
        fmt = ref.csi_format(reference=False)
        z, gain_db = self.channel.receive(tx, t_s, fmt, ref.primary, ref.secondary, self.scenario.snr_db,
                                          self.scenario.people)
        self._emit(z, fmt, tx.mac_bytes, t_s, False, gain_db)

    def _reference_frame(self) -> None:
        ref = self.reference
        fmt = ref.csi_format(reference=True)
        z = self.channel.reference(fmt, ref.primary, ref.secondary, snr_db=30.0)
        self._emit(z, fmt, REFERENCE_MAC, self._next_ref, True)

    def _emit(self, z: np.ndarray, fmt: CsiFormat, src: bytes, t_s: float, reference: bool,
              gain_db: np.ndarray | None = None) -> None:
        """``gain_db``: ``(N,)`` AGC gains already applied to ``z`` (None: none), reported in rx_ctrl."""
        ref = self.reference
        seq = self._next_seq(src)
        t_ns = (BOOT_TIME_NS + (t_s - np.repeat(self.booted_at_s, ANTENNAS)) * 1e9
                + self.channel.clock_offset_ns)
        stamps = [quantise_timestamp(t) for t in t_ns]
        z = apply_timestamp_slope(z, fmt, ref.secondary, np.array([s[2] for s in stamps])) * AMPLITUDE_COUNTS
        raw = csi_to_bytes(z, fmt)
        self.frames_sent += 1
        for b, board in enumerate(self.boards):
            hears = (board.primary, board.secondary) == (ref.primary, ref.secondary) and board.acquire.get("enable", True)
            if reference:
                hears = hears and board.rfswitch == RF_REFERENCE
            else:
                hears = hears and board.rfswitch != RF_REFERENCE and board.mac_passes(src)
            if hears:
                part = slice(b * ANTENNAS, (b + 1) * ANTENNAS)
                gains = np.zeros(ANTENNAS) if gain_db is None else gain_db[part]
                board.queue += board.frame_packets(raw[part], stamps[part], fmt, src, seq, reference, gains)


class SimulatedBoard:
    """Controller state (wificonf, RF switch, MAC filter, acquisition) of one board, and its sensors' packets."""

    def __init__(self, scenario: Scenario, hostname: str = "espargos-sim", api_major: int = 3,
                 fragment_size: int = 0, rig: SimulatedRig | None = None) -> None:
        self.scenario = scenario
        self.hostname = hostname
        self.api_major = api_major
        self.fragment_size = fragment_size
        self.wificonf: dict = {}
        self.mac_filter: dict = {}
        self.acquire: dict = {}
        self.gains: dict = {}
        self.cfo_correction: dict = {}
        self.channel_overrides: dict = {}
        self.tx_control: dict = {}
        self.reset_state()
        self.queue: list[bytes] = []
        self.replay: list[tuple[float, list[bytes]]] = []
        """Precomputed frames: (scenario time they were encoded at, s; their packets)."""
        self.replay_index = 0
        self._uid = [0] * ANTENNAS
        self.rig = rig if rig is not None else SimulatedRig(scenario, single_board_layout("board", "sim"), hostname,
                                                            api_major, fragment_size, boards=[self])
        self.rng = self.rig.rng

    def reset_state(self) -> None:
        """The controller's power-on state (dicts updated in place: the server serves them)."""
        sc = self.scenario
        for state, default in (
                (self.wificonf, {"channel-primary": sc.channel, "channel-secondary": secondary_to_code(sc.secondary),
                                 "country-code": "DE", "calib-mode": 1, "calib-source": 0, "calib-txpower": 40,
                                 "calib-interval": int(1000 / sc.reference_rate_hz)}),
                (self.mac_filter, {"enable": False, "mac": "00:00:00:00:00:00", "mac_mask": "ff:ff:ff:ff:ff:ff"}),
                (self.acquire, {"enable": True, "compress_csi": False, "acquire_csi_force_lltf": False,
                                "lltf_8bit_mode": True, "acquire_csi_ht20": True, "acquire_csi_ht40": True}),
                (self.gains, {"fft_scale_enable": False, "rx_gain_enable": False, "rx_gain_value": 32}),
                (self.cfo_correction, {"auto": True, "value": 0}),
                (self.channel_overrides, {"override_active": False, "channel-primary": [sc.channel] * ANTENNAS,
                                          "channel-secondary": [secondary_to_code(sc.secondary)] * ANTENNAS}),
                (self.tx_control, {"active_by_antid": [False] * ANTENNAS, "start_by_antid": [0] * ANTENNAS,
                                   "period_by_antid": [0] * ANTENNAS, "mac_by_antid": ["00:00:00:00:00:00"] * ANTENNAS,
                                   "rfswitch_state": 2, "tx_power": 40, "tx_phymode": 0, "tx_rate": 0})):
            state.clear()
            state.update(default)
        self.rfswitch = 2

    def reboot(self, t_s: float) -> None:
        """Reboot at scenario time ``t_s`` (see SimulatedRig.reboot)."""
        self.rig.reboot(self, t_s)

    @property
    def primary(self) -> int:
        return int(self.wificonf["channel-primary"])

    @property
    def secondary(self) -> int:
        return secondary_from_code(int(self.wificonf["channel-secondary"]))

    @property
    def frames_sent(self) -> int:
        return self.rig.frames_sent

    def csi_format(self, reference: bool) -> CsiFormat:
        """Format of the next frame; the reference generator always sends HT (HT40 when bonded)."""
        if self.acquire.get("acquire_csi_force_lltf"):
            return CsiFormat.LLTF
        if self.scenario.format != "auto" and not reference:
            return _FORMATS[self.scenario.format]
        return CsiFormat.HT40 if self.secondary else CsiFormat.HT20

    def precompute(self, frames: int) -> None:
        self.rig.precompute(frames)

    def start(self, t_s: float) -> None:
        self.rig.start(t_s)

    def packets_due(self, t_s: float) -> list[bytes]:
        """Every sensor packet of this board's frames scheduled up to scenario time ``t_s``, in time order."""
        self.rig.advance(t_s)
        out, self.queue = self.queue, []
        return out

    def mac_passes(self, mac: bytes) -> bool:
        if not self.mac_filter.get("enable"):
            return True
        want = bytes.fromhex(str(self.mac_filter.get("mac", "")).replace(":", ""))
        mask = bytes.fromhex(str(self.mac_filter.get("mac_mask", "ff:ff:ff:ff:ff:ff")).replace(":", ""))
        return all((a & m) == (b & m) for a, b, m in zip(mac, want, mask))

    def frame_packets(self, raw: list[bytes], stamps: list[tuple], fmt: CsiFormat, src: bytes, seq: int,
                      reference: bool, gain_db: np.ndarray) -> list[bytes]:
        """Sensor packets of one frame: ``raw`` CSI bytes, quantised stamps and AGC gains (dB,
        1/4 dB steps, relative to the nominal RX gain) per antenna (row-major)."""
        sc = self.scenario
        faults = sc.faults
        packets = []
        for antid in range(ANTENNAS):
            if self.rng.random() < sc.impairments.report_loss:
                continue
            row, col = g3_antenna_row_col(antid)
            index = row * 4 + col
            us, cyc, _ = stamps[index]
            rx_gain = int(np.floor(gain_db[index]))
            rx = rx_ctrl_v3(fmt=fmt, channel=self.primary, secondary=self.secondary, csi_len=len(raw[index]),
                            rssi_dbm=-45, noise_floor_dbm=-92, rxstart_cyc=cyc, timestamp_us=us,
                            rx_gain_db=NOMINAL_RX_GAIN_DB + rx_gain,
                            fft_gain_q=int(round((gain_db[index] - rx_gain) * 4)))
            extra = b"\xc8\x03\x00abc" if self.rng.random() < faults.unknown_tlv else b""
            message = csi_message(src=src, dst=BROADCAST, seq=seq, is_calib=reference,
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
