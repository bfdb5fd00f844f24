"""The `seda` command: run, validate, simulate, outbox, erase, backup, models."""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from gateway import engine, logs, outbox_cli, registry
from gateway.config import Config, ConfigError, load, load_lenient
from gateway.flows.loader import Problem, SurveyError, load_surveys, validate_paths
from gateway.ids import IdFactory, system_clock
from gateway.model import Inbound, Outbound, Respondent
from gateway.store_schema import StoreError

DEFAULT_CONFIG = Path("config/gateway.yaml")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `seda` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except ConfigError as exc:
        print(f"seda: configuration error:\n{exc}", file=sys.stderr)
        return 2
    except StoreError as exc:  # a database from a newer Seda, or not a Seda database
        print(f"seda: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:  # not a database at all, a file SQLite cannot open
        print(f"seda: cannot use the database: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seda", description="Seda: voice-of-customer gateway")
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="gateway YAML (config/gateway.yaml)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start every enabled channel")
    run.set_defaults(handler=_run)

    validate = sub.add_parser(
        "validate", help="check the configuration and survey files; every error at once"
    )
    validate.add_argument("paths", nargs="*", type=Path, help="files or folders (config/flows)")
    validate.set_defaults(handler=_validate)

    simulate = sub.add_parser("simulate", help="answer a survey in the terminal")
    simulate.add_argument("survey", help="survey id")
    simulate.add_argument("--lang", default=None, help="language (the survey's first by default)")
    simulate.add_argument("--flows", type=Path, default=None, help="folder of survey files")
    simulate.set_defaults(handler=_simulate)

    outbox = sub.add_parser("outbox", help="inspect, retry and replay deliveries")
    outbox_cli.add_arguments(outbox)
    outbox.set_defaults(handler=_outbox)

    erase = sub.add_parser(
        "erase", help="forget everything held about a respondent (asks the running Seda)"
    )
    erase.add_argument("address", help="the respondent's address: tel:+98..., mailto:...")
    erase.set_defaults(handler=_erase)

    backup = sub.add_parser(
        "backup", help="copy the database as of one commit, safe while Seda runs"
    )
    backup.add_argument(
        "destination", type=Path, help="a new file for the copy, or a folder to make one in"
    )
    backup.set_defaults(handler=_backup)

    models = sub.add_parser("models", help="speech recognition models (Vosk) by language")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    install = models_sub.add_parser("install", help="install a Vosk model for a language")
    install.add_argument("language", help="language code: fa, ar, en, ko...")
    install.add_argument("source", help="a model folder, a model .zip or an https URL of one")
    install.add_argument("--sha256", default=None, help="refuse a .zip or download without it")
    install.add_argument("--replace", action="store_true", help="replace an installed model")
    install.set_defaults(handler=_models_install)
    listing = models_sub.add_parser("list", help="configured and installed models")
    listing.set_defaults(handler=_models_list)
    verify = models_sub.add_parser(
        "verify", help="check that models are intact and load in Vosk (exit 1 if one is not)"
    )
    verify.add_argument("languages", nargs="*", metavar="LANG", help="these only (default: all)")
    verify.set_defaults(handler=_models_verify)
    remove = models_sub.add_parser("remove", help="remove an installed model")
    remove.add_argument("language", metavar="LANG", help="language code of the model")
    remove.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    remove.add_argument(
        "--force", action="store_true", help="remove it even if gateway.yaml still names it"
    )
    remove.set_defaults(handler=_models_remove)
    _config_after_commands(parser)
    return parser


def _config_after_commands(parser: argparse.ArgumentParser) -> None:
    """`seda run --config X` as well as `seda --config X run`: every command takes it too
    (SUPPRESS: not given there, the one before the command stands)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                command.add_argument(
                    "--config", type=Path, default=argparse.SUPPRESS, help="gateway YAML"
                )
                _config_after_commands(command)


def _run(args: argparse.Namespace) -> int:
    from gateway import launch
    from gateway.config_check import check_file

    lines, config, surveys = check_file(args.config)
    if lines or surveys or config is None:  # as `seda validate` says them, before anything
        raise ConfigError("\n".join(lines + surveys))
    logs.setup(config.log_level)
    try:
        _serve(config)
    except ConfigError as exc:  # a channel's block, a survey: found while building the app
        raise ConfigError("\n".join(config.locate(line) for line in str(exc).split("\n"))) from None
    except launch.NotStarted as exc:
        print(f"seda: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:  # no database, or one it may not write (nor its folder)
        print(
            f"seda: cannot use the database: {exc} ({config.database}; Seda writes it and, in"
            f" its folder, {config.database.name}-wal and -shm)",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:  # the database's folder cannot be made or written, a full disk
        where = f"{exc.filename}: " if exc.filename else ""
        print(
            f"seda: not started: {where}{exc.strerror or exc} (database: {config.database})",
            file=sys.stderr,
        )
        return 1
    return 0


def _serve(config: Config) -> None:
    """Listen, lock the database, build the app and serve until a signal stops it."""
    from aiohttp import web

    from gateway import launch
    from gateway.server import create_app, freeze_heap

    sockets = launch.listen(config.host, config.port)
    try:
        with launch.exclusive(config.database) as start:

            async def app() -> web.Application:
                built = await create_app(config)
                built.on_startup.append(freeze_heap)
                built.on_startup.append(launch.stop_on_hangup)
                start.built = True
                return built

            web.run_app(app(), sock=sockets, print=None, access_log=None, shutdown_timeout=10)
    finally:
        for sock in sockets:  # a start that failed never handed them to a server
            sock.close()


def _validate(args: argparse.Namespace) -> int:
    lines, config = _config_lines(args.config)
    flows = [config.flows] if config is not None else [] if lines else [Path("config/flows")]
    paths = args.paths or flows  # none: where the surveys are is not known
    problems = validate_paths(paths)
    problems += _channel_checks(config, paths)
    for line in lines:
        print(line)
    for problem in problems:
        print(problem)
    errors = len(lines) + sum(1 for p in problems if p.severity == "error")
    warnings = len(lines) + len(problems) - errors
    print(f"{errors} error(s), {warnings} warning(s)", file=sys.stderr)
    return 1 if errors else 0


def _config_lines(path: Path) -> tuple[list[str], Config | None]:
    """The configuration's problems, as `seda run` would refuse it (none for a missing
    config/gateway.yaml: surveys can be checked without one)."""
    from gateway.config_check import check_file

    if path is DEFAULT_CONFIG and not path.exists():
        return [], None
    lines, config, _ = check_file(path)
    return lines, config


def _channel_checks(config: Config | None, paths: Sequence[Path]) -> list[Problem]:
    """Warnings from enabled channels that check surveys against their limits (SMS parts)."""
    if config is None:
        return []
    found: list[Problem] = []
    for name, spec in config.channels.items():
        try:
            check = getattr(registry.load(name), "check_surveys", None)
        except registry.UnknownChannel:
            continue
        if callable(check):
            found += check(spec, paths)
    return found


def _flows(config_path: Path) -> Path:
    """The `flows` folder of the configuration, which `seda run` loads (config/flows without
    one); the surveys need no secret, so unset variables do not matter here."""
    return load_lenient(config_path).flows if config_path.exists() else Path("config/flows")


def _simulate(args: argparse.Namespace) -> int:
    flows = args.flows or _flows(args.config)
    try:
        surveys = load_surveys(flows)
    except SurveyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    survey = surveys.get(args.survey)
    if survey is None:
        known = ", ".join(sorted(surveys)) or "none"
        print(f"seda: no survey {args.survey!r} in {flows} (there: {known})", file=sys.stderr)
        return 1
    if args.lang is not None and args.lang not in survey.languages:
        languages = ", ".join(survey.languages)
        print(
            f"seda: survey {survey.id} has no language {args.lang!r} ({languages})", file=sys.stderr
        )
        return 1
    return simulate(survey, args.lang, sys.stdin, sys.stdout)


def simulate(survey_obj: object, language: str | None, stdin: TextIO, stdout: TextIO) -> int:
    """Run a survey against typed replies; prints prompts and the answers as JSON lines."""
    from gateway.flows.model import Survey

    assert isinstance(survey_obj, Survey)
    survey = survey_obj
    clock = system_clock
    new_id = IdFactory(clock)
    address = "api:simulator"
    respondent = Respondent(id="r_simulator", addresses=(address,))
    start = Inbound("start", "api", "simulator", address, clock(), language=language)
    try:
        step = engine.start(survey, start, respondent, clock(), new_id)
    except engine.EngineError as exc:
        print(f"seda: {exc}", file=sys.stderr)
        return 1
    _show(step.outbound, stdout)
    session = step.session
    while session is not None and session.status == "open":
        stdout.write("> ")
        stdout.flush()
        line = stdin.readline()
        if not line:
            step = engine.abandon(survey, session, respondent, clock(), new_id, "ended")
            stdout.write("\n(abandoned)\n")
            return 0
        reply = Inbound("reply", "api", "simulator", address, clock(), text=line.rstrip("\n"))
        step = engine.step(survey, session, reply, respondent, clock(), new_id)
        for answer in step.answers:
            stdout.write(json.dumps(answer.to_json(), ensure_ascii=False) + "\n")
        _show(step.outbound, stdout)
        session = step.session
    stdout.write(f"({session.status if session else 'ended'})\n")
    return 0


def _show(outbound: Sequence[Outbound], stdout: TextIO) -> None:
    for item in outbound:
        stdout.write(f"[{item.kind}] {item.text}\n")
        for code, label, key in item.choices:
            stdout.write(f"   {key or '-'}: {label} ({code})\n")


def _speech_spec(path: Path) -> dict[str, object]:
    return load(path).speech if path.exists() else {}


def _models_install(args: argparse.Namespace) -> int:
    from asr_models.install import InstallError, run_install

    spec = _speech_spec(args.config)
    try:
        message = run_install(
            args.language, args.source, spec, Path.cwd(), sha256=args.sha256, replace=args.replace
        )
    except InstallError as exc:
        print(f"seda: {exc}", file=sys.stderr)
        return 1
    print(message)
    return 0


def _models_list(args: argparse.Namespace) -> int:
    from asr_models.install import run_list

    for line in run_list(_speech_spec(args.config), Path.cwd()):
        print(line)
    return 0


def _models_verify(args: argparse.Namespace) -> int:
    from asr_models.manage import run_verify

    lines, code = run_verify(_speech_spec(args.config), Path.cwd(), args.languages)
    for line in lines:
        print(line)
    return code


def _models_remove(args: argparse.Namespace) -> int:
    from asr_models.install import models_dir
    from asr_models.manage import ModelsError, remove

    data = _config_data(args.config)
    speech = data.get("speech") or {}

    def confirm(question: str) -> bool:
        if args.yes:
            return True
        if not sys.stdin.isatty():
            raise ModelsError("not removed: stdin is not a terminal to ask on; add --yes")
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")

    try:
        message = remove(
            args.language,
            models_dir(speech, Path.cwd()),
            data,
            force=args.force,
            confirm=confirm,
        )
    except ModelsError as exc:
        print(f"seda: {exc}", file=sys.stderr)
        return 1
    print(message)
    return 0


def _config_data(path: Path) -> dict[str, object]:
    """The configuration as data for the models commands; secrets need not be set for them."""
    if not path.exists():
        return {}
    return load_lenient(path).data  # perhaps only secrets unset here: models read none


def _erase(args: argparse.Namespace) -> int:
    """POST the address to the running Seda's erasure API (it alone can also drop what it
    holds in memory); print what was deleted."""
    import urllib.error
    import urllib.request

    config = load(args.config)
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    url = f"http://{host}:{config.port}/api/v1/respondents/erase"
    headers = {"Content-Type": "application/json"}
    if config.api_token:
        headers["Authorization"] = f"Bearer {config.api_token}"
    body = json.dumps({"respondent": args.address}).encode()
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            erased = json.load(resp)
            print(json.dumps(erased, indent=2))
            if erased.get("warning"):
                print(f"seda: warning: {erased['warning']}", file=sys.stderr)
            if not erased.get("responses"):
                print(_nothing_held(args.address), file=sys.stderr)
            return 0
    except urllib.error.HTTPError as exc:
        reason = exc.read().decode("utf-8", "replace")
        print(f"seda: not erased: HTTP {exc.code} {reason}", file=sys.stderr)
    except OSError as exc:
        print(
            f"seda: not erased: Seda does not answer at {url} ({exc}); start it with `seda run`",
            file=sys.stderr,
        )
    return 1


def _nothing_held(address: str) -> str:
    """Said when an erasure found no response, so that an operator who mistyped the address
    does not take the answer for a deletion."""
    return (
        f"seda: nothing was held under {address!r} or another spelling of it (see the"
        " README's HTTP API section: erasing a respondent)"
    )


def _outbox(args: argparse.Namespace) -> int:
    from gateway.backends import event_types
    from gateway.store import Store

    config: Config = load_lenient(args.config)  # the outbox needs no secret
    if not config.database.exists():
        # Opening would make an empty database there and report an empty, healthy outbox.
        print(
            f"seda: no database at {config.database} (the `database` of {args.config}, relative"
            " to the working directory): run from Seda's folder or give --config",
            file=sys.stderr,
        )
        return 1

    async def go() -> int:
        routes = {name: event_types(spec) for name, spec in config.backends.items()}
        store = await Store.open(config.database, backends=routes, clock=system_clock)
        try:
            return await outbox_cli.run(args, store)
        finally:
            await store.close()

    return asyncio.run(go())


def _backup(args: argparse.Namespace) -> int:
    from gateway.backup import BackupError, backup

    config = load_lenient(args.config)  # a backup needs no secret
    destination: Path = args.destination
    if destination.is_dir():  # `seda backup /backups/` from cron: a new name in that folder
        stamp = system_clock().strftime("%Y%m%dT%H%M%SZ")
        destination = destination / f"{config.database.stem}-{stamp}.db"
    try:
        done = backup(config.database, destination)
    except BackupError as exc:
        print(f"seda: not backed up: {exc}", file=sys.stderr)
        return 1
    print(
        f"backed up {config.database} to {done.path} in {done.seconds:.1f} s:"
        f" {done.sessions} sessions, {done.answers} answers, {done.outbox} outbox rows,"
        f" schema version {done.schema_version}, {done.size / 1e6:.1f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
