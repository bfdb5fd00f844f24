"""Answering an incoming in-dialog request that pjsua leaves unanswered (SIP INFO application/dtmf).

pjsua 2.15 reads keys from an INFO only when its Content-Type is `application/dtmf-relay`
(pjsua_call.c, pjsua_call_on_tsx_state_changed); any other INFO is handed to the
application's `Call::onCallTsxState` with the transaction in the Trying state and, left
unanswered there, the dialog answers `500 Unhandled by dialog usages` (sip_dialog.c). pjsua2
has no call to answer that transaction, but gives its pointers (`SipTransaction.pjTransaction`,
`SipRxData.pjRxData`) for PJSIP's own C API, which the extension module exports: the answer
is made with `pjsip_endpt_create_response` and sent on the transaction with
`pjsip_tsx_send_msg`, as pjsua answers `dtmf-relay` itself. Only pointers pass through here,
no PJSIP structure is read, and it runs on the SIP thread, inside the callback.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

import pjsua2 as pj

from gateway.logs import fields

log = logging.getLogger("seda.ivr.sip")

_VOID = ctypes.c_void_p


def _library() -> Any:
    """The loaded pjsua2 extension (the same pjsua instance), with the three functions typed."""
    lib = ctypes.CDLL(pj._pjsua2.__file__)
    lib.pjsua_get_pjsip_endpt.restype = _VOID
    lib.pjsua_get_pjsip_endpt.argtypes = []
    lib.pjsip_endpt_create_response.restype = ctypes.c_int
    lib.pjsip_endpt_create_response.argtypes = [
        _VOID, _VOID, ctypes.c_int, _VOID, ctypes.POINTER(_VOID)
    ]  # fmt: skip
    lib.pjsip_tsx_send_msg.restype = ctypes.c_int
    lib.pjsip_tsx_send_msg.argtypes = [_VOID, _VOID]
    lib.pjsip_tx_data_dec_ref.restype = ctypes.c_int
    lib.pjsip_tx_data_dec_ref.argtypes = [_VOID]
    return lib


_lib = _library()


def _address(pointer: Any) -> int:
    """The address a SWIG `void *` holds (0 for none)."""
    return int(pointer) if pointer is not None else 0


def respond(transaction: Any, rdata: Any, status: int) -> bool:
    """SIP thread: answer the incoming request of `transaction` (a pjsua2 SipTransaction, in
    the Trying state) with a final `status`; `rdata` is the event's SipRxData. False when it
    could not be sent (pjsua's dialog then answers 500, as before)."""
    tsx, rx = _address(transaction.pjTransaction), _address(rdata.pjRxData)
    if not tsx or not rx:
        return False
    tdata = _VOID()
    endpoint = _lib.pjsua_get_pjsip_endpt()
    if _lib.pjsip_endpt_create_response(endpoint, rx, status, None, ctypes.byref(tdata)) != 0:
        log.warning("in-dialog answer not made", extra=fields(status=status))
        return False
    if _lib.pjsip_tsx_send_msg(tsx, tdata) != 0:
        _lib.pjsip_tx_data_dec_ref(tdata)  # sent, the transaction owns it; else it is ours
        log.warning("in-dialog answer not sent", extra=fields(status=status))
        return False
    return True
