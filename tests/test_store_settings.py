"""Session settings the store gives every connection (ticketing/store.py)."""
from __future__ import annotations

import pytest
from sqlalchemy import text


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # a PostgreSQL setting
def test_postgresql_connections_run_without_jit(engine_for):
    """Issue 12 item 3: the month's report answers in under 1 s on PostgreSQL only with JIT off
    (compiling each figure query cost more than running it); every pooled connection has it."""
    with engine_for.connect() as first, engine_for.connect() as second:  # two pooled connections
        assert first.execute(text("SHOW jit")).scalar() == "off"
        assert second.execute(text("SHOW jit")).scalar() == "off"
