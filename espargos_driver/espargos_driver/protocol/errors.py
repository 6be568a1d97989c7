"""The one exception type of the protocol layer."""


class ProtocolError(ValueError):
    """Input that cannot be decoded. ``reason`` is a short counter name for diagnostics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
