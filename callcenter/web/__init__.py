"""The staff web console: pages under /app for the front desk, member units and the back office.

Plain HTML, one vanilla JS module and one stylesheet shipped as package files; the pages call the
/api/v1 JSON API with the bearer token from POST /api/v1/auth/token. Nothing loads from the network.
"""
from callcenter.web.pages import router

__all__ = ["router"]
