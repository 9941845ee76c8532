"""FastAGI server for the hotline's voice menus (asyncio, no third-party AGI library)."""
from .channel import AGIChannel, AGIError, AGIHangup, AGITimeout, RecordResult
from .protocol import AGIRequest, Response
from .server import FastAGIServer, Router, ServerStats, ServerThread, run_in_thread

__all__ = [
    "AGIChannel",
    "AGIError",
    "AGIHangup",
    "AGITimeout",
    "AGIRequest",
    "FastAGIServer",
    "RecordResult",
    "Response",
    "Router",
    "ServerStats",
    "ServerThread",
    "run_in_thread",
]
