"""The aiohttp application: health, metrics, and every enabled channel's routes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

from aiohttp import web
from prometheus_client.core import Metric

from gateway import registry
from gateway.api import JSON, check_token, erasure_route
from gateway.backends import Backend, DeliveryError, build_backend, event_types
from gateway.bodies import BodyTimeout, body_deadline, body_timed_out
from gateway.config import Config, ConfigError, duration
from gateway.config_check import unknown_quiet_channel
from gateway.flows.loader import SurveyError, load_surveys
from gateway.flows.model import Survey
from gateway.forwarder import Forwarder, RetryPolicy
from gateway.ids import Clock, IdFactory, system_clock
from gateway.logs import fields
from gateway.metrics import CONTENT_TYPE, Metrics, counter_family, gauge_family
from gateway.quiet import QuietHours, QuietHoursError
from gateway.router import Gateway
from gateway.store import Store

log = logging.getLogger("seda.server")

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
FORWARDER: web.AppKey[Forwarder] = web.AppKey("forwarder", Forwarder)
_Checks = dict[str, Callable[[], Mapping[str, Any]]]
CHANNEL_HEALTH: web.AppKey[_Checks] = web.AppKey("channel_health", dict)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SWEEP_SECONDS = 30.0
HEALTH_TIMEOUT = 2.0  # seconds a /healthz read of the store may take
PRUNE_SECONDS = 600.0  # how often what is past its retention is deleted (store_retention.py)
PRUNE_BATCH = 1000  # rows per delete transaction (a short hold on the write lock)


async def create_app(config: Config, clock: Clock = system_clock) -> web.Application:
    """The whole gateway as one aiohttp application; the store is opened here."""
    metrics = Metrics()
    token = config.api_token
    if not token:
        log.warning("no api.token configured: the API answers loopback clients only")
    try:
        surveys = load_surveys(config.flows)
    except SurveyError as exc:
        raise ConfigError("\n".join(str(p) for p in exc.problems)) from None
    factories = {}
    for name in config.channels:
        try:
            factories[name] = registry.load(name)
        except registry.UnknownChannel as exc:
            raise ConfigError(f"{config.path}: channels.{name}: {exc}") from None
    senders = frozenset(name for name, f in factories.items() if registry.sends_prompts(f))
    store, gateway = await _open_core(config, surveys, senders, clock)
    try:
        channels = {name: make(gateway, _spec(config, name)) for name, make in factories.items()}
        backends: dict[str, Backend] = {}
        for name, spec in config.backends.items():
            try:
                backends[name] = build_backend(name, spec, clock=clock)
            except ValueError as exc:  # a bad secret, timeout...: said as any config error is
                raise ConfigError(f"{config.path}: {exc}") from None
    except BaseException:
        await store.close()  # a bad channel or backend section: leave nothing open
        raise
    for name in senders:
        backends[f"channel.{name}"] = StillAsked(gateway, cast(registry.Sender, channels[name]))
    for name, channel in channels.items():
        check = getattr(channel, "invitation_address", None)
        if callable(check):
            gateway.addressers[name] = cast(registry.Addresser, channel).invitation_address
    forwarder = _forwarder(config, store, backends, clock)
    closers: list[Callable[[], Awaitable[None]]] = [b.close for b in backends.values()]
    closers.append(store.close)
    checks: _Checks = {}
    for name, channel in channels.items():  # optional: whether a channel works now
        health = getattr(channel, "health", None)
        if callable(health):
            checks[name] = cast(registry.Health, channel).health
    metrics.add_source(lambda: _live_counters(gateway, forwarder))
    metrics.add_source(lambda: _health_gauges(forwarder, checks))
    metrics.add_source(lambda: _cache_gauges(gateway))
    for channel in channels.values():  # optional: a channel's own counters
        families = getattr(channel, "metric_families", None)
        if callable(families):
            metrics.add_source(families)

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        status = 500
        try:
            if request.path.startswith("/api/"):
                check_token(request, token)
            with body_deadline(request):
                response = await handler(request)
            status = response.status
            return response
        except BodyTimeout:
            status = 408
            return body_timed_out()
        except web.HTTPException as exc:
            status = exc.status
            if status >= 400 and exc.content_type != JSON and request.path.startswith("/api/"):
                # aiohttp's own refusals (413 body too large, 404, 405) are plain text: the
                # API answers every error as {"error": reason}.
                headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
                return web.json_response(
                    {"error": exc.text or exc.reason}, status=status, headers=headers
                )
            raise
        except ConnectionResetError:
            # The client hung up before its request was whole: nothing failed here, and there
            # is nobody to answer. Counted as 499 (nginx's "client closed request").
            status = 499
            return web.Response(status=400, text="the request was cut short")
        except asyncio.CancelledError:
            status = 499  # aiohttp cancels the handler of a client that went away
            raise
        except Exception:
            log.exception("request failed", extra=fields(route=route))
            status = 500
            return web.json_response({"error": "internal error; please retry"}, status=500)
        finally:
            elapsed = time.perf_counter() - started
            metrics.observe_request(route, status, elapsed)

    app = web.Application(client_max_size=config.max_body, middlewares=[observe])
    app[METRICS] = metrics
    app[GATEWAY] = gateway
    app[FORWARDER] = forwarder
    app[CHANNEL_HEALTH] = checks
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_routes([erasure_route(gateway)])
    for channel in channels.values():
        app.router.add_routes(channel.routes())
    keep = Keep(config.keep_delivered, config.keep_responses)
    ready = fields(
        surveys=sorted(surveys),
        channels=sorted(factories),
        db=str(config.database),
        http=f"http://{config.host}:{config.port}",
    )
    running = _running(gateway, forwarder, list(channels.values()), closers, keep, ready)
    app.cleanup_ctx.append(running)
    return app


def _spec(config: Config, name: str) -> Mapping[str, Any]:
    """A channel's config block; the top-level `speech:` block (speech models by language) is
    shared by every channel that hears voice, unless the channel's own block sets one."""
    spec = config.channels[name]
    if config.speech and "speech" not in spec:
        return {**spec, "speech": config.speech}
    return spec


def _check_quiet_channels(config: Config, quiet: QuietHours, senders: frozenset[str]) -> None:
    """A name that is no channel is a typo: refused. A channel that is not enabled, or does not
    send its own messages (its prompts go back in the request's answer), never holds anything
    back: said at start-up, since the operator expects it to."""
    unknown = unknown_quiet_channel(quiet)
    if unknown:
        raise ConfigError(f"{config.path}: {unknown}")
    idle = sorted(quiet.channels - senders)
    if idle and "channels" in config.quiet_hours:
        log.warning(
            "quiet hours hold nothing back on these channels: not enabled, or their prompts go"
            " back in the request's answer",
            extra=fields(channels=idle, holding=sorted(quiet.channels & senders)),
        )


class StillAsked:
    """A sending channel as the forwarder's backend: a message whose question is no longer
    the open one (Gateway.still_asks) is dropped, not sent; anything else goes to the channel."""

    def __init__(self, gateway: Gateway, channel: registry.Sender) -> None:
        self.gateway, self.channel, self.name = gateway, channel, channel.name

    async def deliver(self, event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        if await self.gateway.still_asks(data):
            later = await self.gateway.quiet_until(data)
            if later is not None:  # queued before the night, kept back (an outage) until in it
                raise DeliveryError("quiet hours", retryable=True, not_before=later)
            await self.channel.deliver(event)
            return
        log.info(
            "prompt not sent: its response has moved on since (answered, ended or replaced)",
            extra=fields(channel=self.name, response_id=data.get("response_id")),
        )

    async def close(self) -> None:
        await self.channel.close()


async def _open_core(
    config: Config, surveys: dict[str, Survey], senders: frozenset[str], clock: Clock
) -> tuple[Store, Gateway]:
    try:
        quiet = QuietHours.from_config(config.quiet_hours)
    except QuietHoursError as exc:
        raise ConfigError(f"{config.path}: {exc}") from None
    if quiet is not None:
        _check_quiet_channels(config, quiet, senders)
    routes: dict[str, frozenset[str] | None] = {
        name: event_types(spec) for name, spec in config.backends.items()
    }
    routes.update({f"channel.{name}": frozenset({f"outbound.{name}"}) for name in senders})
    store = await Store.open(
        config.database, backends=routes, clock=clock, writer_process=config.writer_process
    )
    secret = config.secret or await store.meta_set_if_absent("secret", secrets.token_hex(32))
    gateway = Gateway(
        store,
        surveys,
        secret=secret.encode("utf-8"),
        clock=clock,
        new_id=IdFactory(clock),
        senders=senders,
        quiet=quiet,
    )
    return store, gateway


def _forwarder(
    config: Config, store: Store, backends: dict[str, Backend], clock: Clock
) -> Forwarder:
    retry = config.retry
    policy = RetryPolicy(
        base=float(retry.get("base", 1.0)),
        cap=float(retry.get("cap", 300.0)),
        horizon=duration(retry.get("horizon", "3d")),
    )
    forwarder = Forwarder(
        store, backends, clock=clock, policy=policy, poll_interval=float(retry.get("poll", 1.0))
    )
    store.on_commit = forwarder.wake
    return forwarder


def _running(
    gateway: Gateway,
    forwarder: Forwarder,
    channels: list[registry.Channel],
    closers: list[Callable[[], Awaitable[None]]],
    keep: Keep,
    ready: Mapping[str, Any],
) -> Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]:
    """Start the forwarder, the sweeps and every channel; `seda ready` (with `ready`, the log
    fields) only once all have started; stop them in reverse on the way out."""

    @contextlib.asynccontextmanager
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        forwarder.start()
        sweeper = asyncio.create_task(_sweep_expired(gateway))
        pruner = None
        if keep.delivered is not None or keep.responses is not None:
            pruner = asyncio.create_task(_prune(gateway, keep))
        started: list[registry.Channel] = []
        try:
            for channel in channels:
                await channel.start()
                started.append(channel)
            log.info("seda ready", extra=ready)
            yield
        finally:
            for channel in reversed(started):
                await channel.stop()
            for task in (sweeper, pruner):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await forwarder.stop()
            for close in closers:
                await close()
            log.info("seda stopped")

    return lifecycle


# Seda's garbage is freed by reference counting; the cycle collector only catches the rare
# cycle. At Python's default of a young collection every 700 allocations, the objects of the
# replies in flight (each waits ~20 ms for its commit) were collected young again and again and
# promoted until they reached the oldest generation, where they triggered full collections that
# walk every cached session and respondent. Measured with gc.callbacks and CPU time in one run of
# bench/ingest.py (42,600 requests): 1,348 young, 123 middle and 11 full collections, 1.28 s of
# CPU (30 µs per request), the full ones 56-75 ms each (the reply p99); at 20,000 (47,600
# requests): 103, 9 and 1, 0.09 s. The cost: cyclic garbage waits for 20,000 allocations.
GC_YOUNG = 20_000


async def freeze_heap(app: web.Application) -> None:
    """Move what start-up allocated (modules, surveys, config) out of the collector's sight:
    a full collection then walks only what requests created (measured: 60-66 ms -> 29-33 ms
    per full collection, which otherwise showed up as the p99 of replies). Then collect the
    youngest generation every GC_YOUNG allocations instead of Python's 700: see GC_YOUNG. For
    `seda run`, the one app of its process; not for tests, which build many."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])


@dataclass(frozen=True)
class Keep:
    """How long the store keeps what is past use (None: forever); see store_retention.py."""

    delivered: timedelta | None  # delivered outbox rows (outbox.keep_delivered)
    responses: timedelta | None  # finished responses, receipts, message ids (retention.responses)


async def _prune(gateway: Gateway, keep: Keep) -> None:
    """Every PRUNE_SECONDS, delete what is past its retention, PRUNE_BATCH rows at a time."""
    retention = gateway.store.retention
    kinds: list[tuple[str, timedelta, Callable[[datetime, int], Awaitable[int]]]] = []
    if keep.delivered is not None:
        kinds.append(("outbox rows", keep.delivered, retention.prune_delivered))

    async def prune_responses(before: datetime, limit: int) -> int:
        """Responses, and then the files their answers name (call recordings)."""
        files: list[dict[str, Any]] = []
        count = await retention.prune_responses(before, limit, files)
        for keeper in gateway.file_keepers if files else ():
            await keeper(files)
        return count

    if keep.responses is not None:
        kinds += [
            ("responses", keep.responses, prune_responses),
            ("receipts", keep.responses, retention.prune_receipts),
            ("message ids", keep.responses, retention.prune_message_ids),
        ]
    while True:
        await asyncio.sleep(PRUNE_SECONDS)
        for kind, age, prune in kinds:
            deleted = 0
            try:
                while True:
                    batch = await prune(gateway.clock() - age, PRUNE_BATCH)
                    deleted += batch
                    if batch < PRUNE_BATCH:
                        break
                    await asyncio.sleep(0)  # let replies' commits in between batches
            except Exception:
                log.exception("pruning failed", extra=fields(kind=kind))
            if deleted:
                log.info("pruned", extra=fields(kind=kind, rows=deleted, older_than=str(age)))


async def _sweep_expired(gateway: Gateway) -> None:
    """Close expired responses and send due reminders, every SWEEP_SECONDS."""
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        try:
            while await gateway.expire_due() > 0:
                pass
        except Exception:
            log.exception("expiry sweep failed")
        try:
            await gateway.remind_due(limit=1000)  # the rest at the next sweep
        except Exception:
            log.exception("reminder sweep failed")


def _live_counters(gateway: Gateway, forwarder: Forwarder) -> Iterable[Metric]:
    yield counter_family(
        "seda_answers",
        "Answers recorded by channel and survey",
        ["channel", "survey"],
        {k: float(v) for k, v in gateway.answers_recorded.items()},
    )
    yield counter_family(
        "seda_delivery_failures",
        "Failed delivery attempts by backend",
        ["backend"],
        {(k,): float(v) for k, v in forwarder.failures.items()},
    )
    yield counter_family(
        "seda_deliveries",
        "Events delivered by backend",
        ["backend"],
        {(k,): float(v) for k, v in forwarder.delivered.items()},
    )


def _cache_gauges(gateway: Gateway) -> Iterable[Metric]:
    sizes: dict[tuple[str, ...], float] = {(k,): float(v) for k, v in gateway.cache_sizes().items()}
    yield gauge_family("seda_cache_entries", "Entries in the in-memory caches", ["cache"], sizes)


async def _healthz(request: web.Request) -> web.Response:
    """503 when the store does not answer a read, so that a load balancer stops sending
    requests that could not be stored. Otherwise 200, with status "degraded" when a channel
    says it does not work (such as the voice pool gone) or a backend fails or was disabled by
    its receiver (410): answers are still taken and kept, and go out once that is put right."""
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT):
            disabled = await request.app[GATEWAY].store.disabled_backends()
    except Exception:  # a closed store, a lost or hung database: each means the same here
        down = {"status": "unavailable", "store": "the database does not answer"}
        return web.json_response(down, status=503)
    failing = request.app[FORWARDER].failing()
    channels = _channel_health(request.app[CHANNEL_HEALTH])
    troubled = failing or disabled or any(c["status"] != "ok" for c in channels.values())
    body: dict[str, Any] = {
        "status": "degraded" if troubled else "ok",
        "store": "ok",
        "backends_disabled": sorted(disabled),
        "backends_failing": {name: since.isoformat() for name, since in sorted(failing.items())},
        "channels": channels,
    }
    return web.json_response(body)


def _channel_health(checks: _Checks) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for name, check in sorted(checks.items()):
        try:
            found[name] = dict(check())
        except Exception:  # a fault in a check must not hide the others: say it
            log.exception("channel health check failed", extra=fields(channel=name))
            found[name] = {"status": "unknown"}
    return found


def _health_gauges(forwarder: Forwarder, checks: _Checks) -> Iterable[Metric]:
    failing = forwarder.failing()
    yield gauge_family(
        "seda_backend_failing",
        "1 while a backend's deliveries fail and are retried (a delivery ends it)",
        ["backend"],
        {(name,): float(name in failing) for name in forwarder.delivered},
    )
    yield gauge_family(
        "seda_channel_up",
        "1 while a channel says it works (only channels that can tell: see /healthz)",
        ["channel"],
        {
            (name,): float(status["status"] == "ok")
            for name, status in _channel_health(checks).items()
        },
    )


async def _metrics(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    now = gateway.clock()
    stats = await gateway.store.outbox_stats(now)
    dead = await gateway.store.dead_count()
    metrics = request.app[METRICS]
    metrics.set_outbox(stats, dead)
    return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})


def default_config_path() -> Path:
    """config/gateway.yaml under the working directory."""
    return Path("config/gateway.yaml")
