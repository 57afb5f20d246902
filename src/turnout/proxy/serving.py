"""The outermost frame of every client session, deliberately not compiled (see setup.py).

A coroutine compiled by mypyc handles exceptions on the thread's own exception state, where an
interpreted coroutine has one of its own that Python swaps in and out around each step. An
exception a compiled session caught while it was suspended could stay the thread's "exception
being handled": every later exception, in any session, then took it as its context, and the
chain (with each session's frames) grew for the life of the process. Under this interpreted
frame, whatever the compiled code leaves there is this session's, and ends with it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from turnout.proxy.session import ClientSession

log = logging.getLogger("turnout.proxy")


async def serve(session: ClientSession) -> None:
    try:
        await session.run()
    except Exception:  # a bug in one session must never take the proxy down
        log.exception("session %d failed", session.id)
        session.state.close()
