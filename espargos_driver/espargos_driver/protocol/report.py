"""What one receiver (sensor) reported about one WiFi frame, independent of protocol generation."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from ..wifi import is_channel, is_secondary_code
from .constants import HARDWARE_TIMESTAMP_LAG_NS, RXSTART_CYCLE_NS, RXSTART_DEC_HZ
from .errors import ProtocolError


def _s(value: int, bits: int) -> int:
    """Sign-extend the low ``bits`` of ``value`` (an int, or an int64 array element-wise)."""
    sign = 1 << (bits - 1)
    return ((value & ((1 << bits) - 1)) ^ sign) - sign


@dataclass(slots=True)
class RxControl:
    """Receiver metadata of one frame (the fields the driver uses), in chip units unless named."""

    rssi_dbm: int
    noise_floor_dbm: int
    channel: int
    secondary_code: int
    """0 none, 1 above, 2 below."""
    cur_bb_format: int
    """0 11b, 1 11g/a, 2 HT, 3 VHT, 4..7 HE; -1 where the layout has none (generation 1)."""
    sig_mode: int
    rate: int
    he_siga1: int
    rxstart_time_cyc: int
    rxstart_time_cyc_dec: int
    timestamp_us32: int
    csi_len: int
    rx_gain_db: float
    fft_gain_db: float
    cfo_low_rate: int
    cfo_high_rate: int

    @property
    def bandwidth_40mhz(self) -> bool:
        """HT-SIG CBW bit (he_siga1 bit 7)."""
        return bool(self.he_siga1 & 0x80)

    @property
    def cfo_hz(self) -> float:
        """Carrier frequency offset in Hz, as reverse-engineered in pyespargos."""
        ri = self.rate if self.sig_mode == 0 else (self.sig_mode << 4) + (self.he_siga1 & 0x7F)
        if ri < 8:
            return _s(self.cfo_low_rate, 15) / -48 * 976.5625
        return _s(self.cfo_high_rate, 15) * -5 / 128 * 976.5625


def check_rx_ctrl(rx: RxControl) -> RxControl:
    """Range-check what later stages compute with; ProtocolError ``bad_channel`` otherwise."""
    if not is_channel(rx.channel):
        raise ProtocolError("bad_channel", f"rx_ctrl channel {rx.channel} is no WiFi channel")
    if not is_secondary_code(rx.secondary_code):
        raise ProtocolError("bad_channel", f"rx_ctrl secondary-channel code {rx.secondary_code} (0, 1 or 2 expected)")
    if rx.sig_mode == SIG_MODE_HT and rx.bandwidth_40mhz and rx.secondary_code == 0:
        raise ProtocolError("bad_channel", "HT frame on a 40 MHz channel (HT-SIG CBW) without a secondary channel")
    return rx


SIG_MODE_HT = 1

_V3 = struct.Struct("<16I")


def parse_rx_ctrl_v3(data: bytes | memoryview) -> RxControl:
    """Decode the 64-byte PHY-v3 ``wifi_pkt_rx_ctrl_t`` (16 LE words)."""
    return rx_ctrl_v3_from_words(_V3.unpack_from(data))


def rx_ctrl_v3_from_words(w) -> RxControl:
    """The PHY-v3 ``wifi_pkt_rx_ctrl_t`` from its 16 words (unsigned 32-bit ints). ``w`` may also be
    16 int64 arrays (one word of many messages each): every field is then an array
    (gen3_batch decodes a batch of messages so), computed by the same expressions."""
    return RxControl(
        rssi_dbm=_s(w[0], 8),
        noise_floor_dbm=_s(w[5], 8),
        channel=w[7] & 0xFF,
        secondary_code=(w[7] >> 8) & 0xFF,
        cur_bb_format=(w[9] >> 12) & 0xF,
        sig_mode=(w[0] >> 14) & 0x3,
        rate=(w[0] >> 8) & 0x1F,
        he_siga1=w[1],
        rxstart_time_cyc=(w[2] >> 24) & 0x7F,
        rxstart_time_cyc_dec=(w[8] >> 8) & 0x7FF,
        timestamp_us32=w[3],
        csi_len=(w[9] >> 16) & 0x3FF,
        rx_gain_db=_s(w[5] >> 24, 8) * 1.0,
        fft_gain_db=_s(w[5] >> 16, 8) * 0.25,
        cfo_low_rate=w[4] & 0x7FFF,
        cfo_high_rate=(w[4] >> 15) & 0x7FFF,
    )


_COMPACT = struct.Struct("<BBBbBBBBHHIHHB")


def parse_rx_ctrl_compact(data: bytes | memoryview) -> RxControl:
    """Decode the 22/24-byte compact rx_ctrl (TLV 8); gain bytes 22..23 are optional."""
    (rssi, nf, channel, secondary, bb, rate, sig_mode, cyc, est_len, flags, ts, cfo_lo, cfo_hi,
     mcs) = _COMPACT.unpack_from(data)
    fft_gain = rx_gain = float("nan")
    if len(data) >= 24:
        fft_gain = _s(data[22], 8) * 0.25
        rx_gain = float(_s(data[23], 8))
    return RxControl(
        rssi_dbm=_s(rssi, 8),
        noise_floor_dbm=_s(nf, 8),
        channel=channel,
        secondary_code={1: 1, -1: 2}.get(secondary, 0),
        cur_bb_format=bb,
        sig_mode=sig_mode,
        rate=rate,
        he_siga1=mcs | (0x80 if flags & 1 else 0),    # bit 7 of he_sig1_mcs is HT-SIG CBW too, as the vendor reads it
        rxstart_time_cyc=cyc & 0x7F,
        rxstart_time_cyc_dec=0,
        timestamp_us32=ts,
        csi_len=est_len,
        rx_gain_db=rx_gain,
        fft_gain_db=fft_gain,
        cfo_low_rate=cfo_lo & 0x7FFF,
        cfo_high_rate=cfo_hi & 0x7FFF,
    )


_G1 = struct.Struct("<9I")


def parse_rx_ctrl_g1(data: bytes | memoryview) -> RxControl:
    """Decode the 36-byte generation-1 rx_ctrl (ESP32-family bit-field layout)."""
    w = _G1.unpack_from(data)
    return RxControl(
        rssi_dbm=_s(w[0], 8),
        noise_floor_dbm=_s(w[7], 8),
        channel=(w[2] >> 16) & 0xF,
        secondary_code=(w[2] >> 20) & 0xF,
        cur_bb_format=-1,
        sig_mode=(w[0] >> 14) & 0x3,
        rate=(w[0] >> 8) & 0x1F,
        he_siga1=w[1] & 0xFF,
        rxstart_time_cyc=(w[2] >> 24) & 0x7F,
        rxstart_time_cyc_dec=(w[6] >> 20) & 0x7FF,
        timestamp_us32=w[3],
        csi_len=384,
        rx_gain_db=float("nan"),
        fft_gain_db=float("nan"),
        cfo_low_rate=0,
        cfo_high_rate=0,
    )


def dec_fraction_ns(dec: int) -> float:
    """The fractional rx-start term in ns from ``rxstart_time_cyc_dec`` (1/640 MHz units)."""
    if dec >= 1024:
        dec = 2048 - dec
    return dec / RXSTART_DEC_HZ * 1e9


def sensor_time_ns(global_timestamp_us: int, rxstart_time_cyc: int) -> float:
    """Generation-3 sensor timestamp in ns: ``us*1000 - 20800 + cyc*12.5``."""
    return global_timestamp_us * 1000.0 - HARDWARE_TIMESTAMP_LAG_NS + rxstart_time_cyc * RXSTART_CYCLE_NS


@dataclass(slots=True)
class SensorReport:
    """One sensor's report of one received frame; CSI stays as raw bytes until the frame is decoded."""

    antenna_id: int
    """Board-local sensor index 0..7 (generation 3 antenna ID; generation 1 esp_num)."""
    row: int
    col: int
    src_mac: bytes
    dst_mac: bytes
    seq_ctrl: int
    retry: bool
    is_calib: bool
    first_word_invalid: bool
    rx: RxControl
    timestamp_ns: float
    """Sensor time of frame start in ns (generation-specific formula), uncalibrated."""
    acquire_flags: int
    """Bit 0 forced L-LTF, bit 1 L-LTF 8-bit mode."""
    rf_switch_state: int
    csi: bytes
    """Raw channel-estimate bytes (logical length)."""
    generation: int
    raw: bytes
    """The whole message/record, for duplicate detection."""
    board: int = 0

    @property
    def key(self) -> tuple[bytes, bytes, int, int, bool]:
        """802.11 frame identity: (src, dst, sequence number, fragment number, retry)."""
        return (self.src_mac, self.dst_mac, self.seq_ctrl >> 4, self.seq_ctrl & 0xF, self.retry)
