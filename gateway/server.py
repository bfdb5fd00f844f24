"""The aiohttp application: health, metrics, and every enabled channel's routes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from aiohttp import web
from prometheus_client.core import Metric

from gateway import registry
from gateway.api import check_token
from gateway.backends import Backend, build_backend, event_types
from gateway.config import Config, ConfigError, duration
from gateway.flows.loader import SurveyError, load_surveys
from gateway.flows.model import Survey
from gateway.forwarder import Forwarder, RetryPolicy
from gateway.ids import Clock, IdFactory, system_clock
from gateway.logs import fields
from gateway.metrics import CONTENT_TYPE, Metrics, counter_family
from gateway.quiet import QuietHours, QuietHoursError
from gateway.router import Gateway
from gateway.store import Store

log = logging.getLogger("seda.server")

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
FORWARDER: web.AppKey[Forwarder] = web.AppKey("forwarder", Forwarder)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SWEEP_SECONDS = 30.0
PRUNE_SECONDS = 600.0  # how often delivered outbox rows past their retention are deleted
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
        backends: dict[str, Backend] = {
            name: build_backend(name, spec, clock=clock) for name, spec in config.backends.items()
        }
    except BaseException:
        await store.close()  # a bad channel or backend section: leave nothing open
        raise
    for name in senders:
        backends[f"channel.{name}"] = cast(registry.Sender, channels[name])
    forwarder = _forwarder(config, store, backends, clock)
    closers: list[Callable[[], Awaitable[None]]] = [b.close for b in backends.values()]
    closers.append(store.close)
    metrics.add_source(lambda: _live_counters(gateway, forwarder))
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
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
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
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    for channel in channels.values():
        app.router.add_routes(channel.routes())
    keep = config.keep_delivered
    app.cleanup_ctx.append(_running(gateway, forwarder, list(channels.values()), closers, keep))
    log.info(
        "seda ready",
        extra=fields(surveys=sorted(surveys), channels=sorted(factories), db=str(config.database)),
    )
    return app


def _spec(config: Config, name: str) -> Mapping[str, Any]:
    """A channel's config block; the top-level `speech:` block (speech models by language) is
    shared by every channel that hears voice, unless the channel's own block sets one."""
    spec = config.channels[name]
    if config.speech and "speech" not in spec:
        return {**spec, "speech": config.speech}
    return spec


async def _open_core(
    config: Config, surveys: dict[str, Survey], senders: frozenset[str], clock: Clock
) -> tuple[Store, Gateway]:
    try:
        quiet = QuietHours.from_config(config.quiet_hours)
    except QuietHoursError as exc:
        raise ConfigError(f"{config.path}: {exc}") from None
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
    for name, spec in config.backends.items():
        if spec["type"] == "webhook" and not spec.get("secret"):
            log.warning(
                "webhook backend has no secret: deliveries are unsigned", extra=fields(backend=name)
            )
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
    keep_delivered: timedelta | None,
) -> Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        forwarder.start()
        sweeper = asyncio.create_task(_sweep_expired(gateway))
        pruner = None
        if keep_delivered is not None:
            pruner = asyncio.create_task(_prune_outbox(gateway, keep_delivered))
        started: list[registry.Channel] = []
        try:
            for channel in channels:
                await channel.start()
                started.append(channel)
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


async def freeze_heap(app: web.Application) -> None:
    """Move what start-up allocated (modules, surveys, config) out of the collector's sight:
    a full collection then walks only what requests created (measured: 60-66 ms -> 29-33 ms
    per full collection, which otherwise showed up as the p99 of replies). For `seda run`,
    the one app of its process; not for tests, which build many."""
    gc.collect()
    gc.freeze()


async def _prune_outbox(gateway: Gateway, keep: timedelta) -> None:
    """Delete delivered outbox rows older than `keep`, every PRUNE_SECONDS, in batches."""
    while True:
        await asyncio.sleep(PRUNE_SECONDS)
        deleted = 0
        try:
            while True:
                batch = await gateway.store.prune_delivered(gateway.clock() - keep, PRUNE_BATCH)
                deleted += batch
                if batch < PRUNE_BATCH:
                    break
                await asyncio.sleep(0)  # let replies' commits in between batches
        except Exception:
            log.exception("outbox pruning failed")
        if deleted:
            log.info("outbox pruned", extra=fields(rows=deleted, older_than=str(keep)))


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


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


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
