"""The voice pool: `python -m ivr_flows.pool`, started (exec'd) by the ivr channel.

It loads the speech models, then forks the workers before any thread exists, so that every
worker shares the models' memory copy-on-write (hundreds of MB per language). It restarts a
worker that dies, and on SIGTERM stops them all. Settings come in SEDA_IVR_SETTINGS (JSON),
the main process's internal API in SEDA_IVR_CONTROL and its token in SEDA_IVR_TOKEN.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from gateway import logs
from gateway.logs import fields
from ivr_flows.settings import IvrSettings

log = logging.getLogger("seda.ivr.pool")

PR_SET_PDEATHSIG = 1
RESTARTS_PER_MINUTE = 5


def _libc_prctl() -> Any:
    """libc's prctl, looked up once (None where there is none: no parent-death signal)."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()


def die_with_parent(parent: int | None = None) -> None:
    """Linux: get SIGTERM when the parent process dies, so no worker outlives Seda.

    The signal comes when the parent *thread* that forked this process ends: Seda starts the
    pool from its event loop, on the main thread, and the pool forks workers from its only
    thread. If the parent died before this call, no signal will ever come: `parent` (the pid
    expected) or, when unknown, being adopted by init shows that, and the process exits.
    """
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    now = os.getppid()
    orphaned = now == 1 if parent is None else now != parent
    if orphaned:
        os._exit(3)


def _parent() -> int | None:
    """The pid of the Seda process that started the pool, when it says (SEDA_IVR_PARENT)."""
    given = os.environ.get("SEDA_IVR_PARENT", "")
    return int(given) if given.isdigit() else None


def load_models(settings: IvrSettings) -> Any:
    """asr_models.SpeechModels with every configured language loaded, or None without speech."""
    if not settings.speech:
        return None
    from asr_models import SpeechModels

    models = SpeechModels.from_config(settings.speech, Path.cwd())
    for language in models.languages():
        models.load(language)
    return models


class Pool:
    """Forks and watches the workers."""

    def __init__(self, settings: IvrSettings, control: str, token: str, models: Any):
        self.settings, self.control, self.token, self.models = settings, control, token, models
        self.children: dict[int, int] = {}  # pid -> worker index
        self.stopping = False
        self.restarts: list[float] = []
        self.failed = False

    def fork(self, index: int) -> None:
        """One worker; the child never returns from here."""
        if threading.active_count() > 1:
            raise RuntimeError("the voice pool must fork before any thread exists")
        pool = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                die_with_parent(pool)
                from ivr_flows import worker

                code = worker.run(index, self.settings, self.control, self.token, self.models)
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = index

    def stop(self, signum: int, frame: object) -> None:
        """Signal handler: pass SIGTERM on to every worker."""
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def run(self) -> int:
        """Start every worker and watch them until stopped."""
        for index in range(self.settings.workers):
            self.fork(index)
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            index = self.children.pop(pid, -1)
            if index < 0 or self.stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            log.error("voice worker died: restarting", extra=fields(worker=index, status=code))
            now = time.monotonic()
            self.restarts = [t for t in self.restarts if now - t < 60] + [now]
            if len(self.restarts) > RESTARTS_PER_MINUTE:
                log.error("voice workers keep dying: the pool stops")
                self.failed = True
                self.stop(signal.SIGTERM, None)
                continue
            self.fork(index)
        return 1 if self.failed else 0


def main() -> int:
    """Entry point of the pool process."""
    die_with_parent(_parent())
    settings = IvrSettings.from_json(json.loads(os.environ["SEDA_IVR_SETTINGS"]))
    logs.setup(settings.log_level)
    control = os.environ["SEDA_IVR_CONTROL"]
    token = os.environ.pop("SEDA_IVR_TOKEN")
    try:
        models = load_models(settings)
    except Exception as exc:
        log.error("speech models could not be loaded", extra=fields(reason=str(exc)))
        print(f"seda voice pool: {exc}", file=sys.stderr)
        return 2
    return Pool(settings, control, token, models).run()


if __name__ == "__main__":
    sys.exit(main())
