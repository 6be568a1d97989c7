"""Serve a SimulatedBoard like a real controller: HTTP API and WebSocket on one port, UDP stream.

Only one stream transport is active at a time, as on the real controller: the latest
``/stream_udp`` or WebSocket connection wins.
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import time

from aiohttp import WSMsgType, web

from ..protocol.constants import STREAM_MAGIC
from .board import SimulatedBoard

log = logging.getLogger("board_simulator")
TICK_S = 0.002


class BoardServer:
    """asyncio server around one simulated board."""

    def __init__(self, board: SimulatedBoard, host: str, http_port: int, stream_port: int,
                 t0: float | None = None) -> None:
        """``t0``: time.monotonic() of scenario time zero (shared by the boards of one rig)."""
        self.board = board
        self.host, self.http_port, self.stream_port = host, http_port, stream_port
        self.udp_target: tuple[str, int] | None = None
        self.websocket: web.WebSocketResponse | None = None
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * 1024 * 1024)
        self.udp.bind((host, stream_port))
        self.udp.setblocking(False)
        self.keepalives = 0
        self.send_drops = 0
        self._t0 = time.monotonic() if t0 is None else t0

    def app(self) -> web.Application:
        app = web.Application()
        r = app.router
        b = self.board
        r.add_get("/identify", lambda _: web.Response(text="ESPARGOS-DENSIFLORUS (simulator)"))
        r.add_get("/api_info", self._api_info)
        r.add_get("/get_netconf", lambda _: web.json_response({"hostname": b.hostname}))
        r.add_get("/get_ip_info", lambda _: web.json_response({"ip": self.host}))
        r.add_get("/get_rfswitch", lambda _: web.Response(text=str(b.rfswitch)))
        r.add_post("/set_rfswitch", self._set_rfswitch)
        for name, state in (("wificonf", b.wificonf), ("mac_filter", b.mac_filter),
                            ("csi_acquire_config", b.acquire), ("gain_settings", b.gains),
                            ("cfo_correction", b.cfo_correction), ("wifi_channel_overrides", b.channel_overrides),
                            ("tx_control", b.tx_control)):
            r.add_get(f"/get_{name}", self._getter(state))
            r.add_post(f"/set_{name}", self._setter(state))
        r.add_post("/stream_udp", self._stream_udp)
        r.add_post("/csi_udp", self._stream_udp)
        r.add_get("/stream", self._stream_ws)
        r.add_get("/csi", self._stream_ws)                  # the client's fallback WebSocket path
        r.add_post("/sim/inject", self._inject)
        r.add_get("/reboot", self._reboot)                  # GET in the spec; POST kept for scripts
        r.add_post("/reboot", self._reboot)
        return app

    async def _reboot(self, request: web.Request) -> web.Response:
        """Reboot like the controller: new LO phases, sensor clocks restart, state back to defaults,
        and the stream ends (the client must reconnect). ``?keep_stream=1`` keeps the stream (a
        reset of the sensors alone: only the timestamps tell)."""
        self.board.reboot(self.scenario_time())
        if request.query.get("keep_stream") != "1":
            self.udp_target = None
            if self.websocket is not None:
                await self.websocket.close()
                self.websocket = None
        log.info("rebooted (keep_stream=%s)", request.query.get("keep_stream", "0"))
        return web.Response(text="ok")

    async def _inject(self, request: web.Request) -> web.Response:
        """Simulator control (not a controller endpoint): send the request body as is, as one
        datagram / WebSocket message of the active stream, for fault-injection tests."""
        data = await request.read()
        if self.udp_target is not None:
            self.udp.sendto(data, self.udp_target)
        elif self.websocket is not None and not self.websocket.closed:
            await self.websocket.send_bytes(data)
        else:
            return web.Response(status=409, text="no stream is active")
        return web.Response(text="ok")

    async def _api_info(self, _: web.Request) -> web.Response:
        return web.json_response({"api-major": self.board.api_major, "api-minor": 0,
                                  "device": "espargos", "revision": "densiflorus"})

    @staticmethod
    def _getter(state: dict):
        async def get(_: web.Request) -> web.Response:
            return web.json_response(state)
        return get

    @staticmethod
    def _setter(state: dict):
        async def post(request: web.Request) -> web.Response:
            try:
                update = json.loads(await request.text())
            except ValueError:
                return web.Response(status=400, text="bad json")
            state.update(update)
            return web.Response(text="ok")
        return post

    async def _set_rfswitch(self, request: web.Request) -> web.Response:
        try:
            self.board.rfswitch = int((await request.text()).strip())
        except ValueError:
            return web.Response(status=400, text="bad rfswitch")
        return web.Response(text="ok")

    async def _stream_udp(self, request: web.Request) -> web.Response:
        body = json.loads(await request.text())
        if body.get("enable"):
            self.udp_target = (request.remote, int(body["port"]))
            self.websocket = None
            self.udp.sendto(STREAM_MAGIC, self.udp_target)
            log.info("UDP stream to %s:%d", *self.udp_target)
        else:
            self.udp_target = None
        return web.Response(text="ok")

    async def _stream_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.websocket, self.udp_target = ws, None
        log.info("WebSocket stream to %s", request.remote)
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
        if self.websocket is ws:
            self.websocket = None
        return ws

    def scenario_time(self) -> float:
        return time.monotonic() - self._t0

    async def _drain_keepalives(self) -> None:
        while True:
            try:
                self.udp.recvfrom(2048)
                self.keepalives += 1
            except BlockingIOError:
                return

    async def generate(self) -> None:
        """Emit every packet that is due, forever, to whichever stream is active."""
        self.board.start(self.scenario_time())
        while True:
            await self._drain_keepalives()
            packets = self.board.packets_due(self.scenario_time())
            ws, target = self.websocket, self.udp_target
            for pkt in packets:
                if target is not None:
                    try:
                        self.udp.sendto(pkt, target)
                    except (BlockingIOError, OSError):
                        self.send_drops += 1
                elif ws is not None and not ws.closed:
                    await ws.send_bytes(pkt)
            await asyncio.sleep(TICK_S)

    async def run(self) -> None:
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.host, self.http_port).start()
        log.info("simulated board on http://%s:%d (UDP stream port %d)", self.host, self.http_port, self.stream_port)
        await self.generate()
