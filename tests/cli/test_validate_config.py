"""`seda validate` checks the whole configuration as `seda run` would use it: every mistake at
once, each at its line and column, and `seda run` refuses the same file with the same lines
before it starts anything."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from gateway import registry
from tests.conftest import ROOT

FLOWS = ROOT / "config/flows"


def seda(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--config", "gateway.yaml", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **env},
        timeout=60,
    )


def config(tmp_path: Path, channels: str, head: str = "") -> Path:
    """A gateway.yaml of the example flows, with these lines under `channels:` (line 5 on)."""
    path = tmp_path / "gateway.yaml"
    path.write_text(
        f"flows: {FLOWS}\nserver: {{port: 0}}\ndatabase: var/seda.db\n{head}channels:\n{channels}",
        "utf-8",
    )
    return path


def refused_alike(tmp_path: Path, expected: list[str], **env: str) -> None:
    """validate: exactly these lines on stdout, exit 1; run: the same lines, exit 2, nothing
    made; no secret in either."""
    checked = seda(tmp_path, "validate", **env)
    said = [line for line in checked.stdout.splitlines() if not line.startswith(str(FLOWS))]
    assert said == expected, checked.stdout + checked.stderr  # (the surveys' warnings aside)
    assert checked.returncode == 1
    assert f"{len(expected)} error(s)" in checked.stderr
    started = seda(tmp_path, "run", **env)
    assert started.returncode == 2, started.stderr
    assert started.stderr.splitlines() == ["seda: configuration error:", *expected]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gateway.yaml"]  # no var/, no db
    for output in (checked, started):
        assert "s3cr3t" not in output.stdout + output.stderr


SMS_AND_TELEGRAM = """\
  sms:
    lines:
      main: {provider: twilo, number: '+15550001111'}
      second:
        provider: twilio
        number: '+15550002222'
        account_sid: AC123
        auth_tokn: s3cr3t-value
  telegram:
    bots:
      shop: {token: '123:s3cr3t', mode: poling}
"""


def test_every_channel_mistake_at_once_by_validate_and_run(tmp_path: Path) -> None:
    """validate checked surveys only (exit 0 here); run said the first mistake, and the unknown
    key never."""
    config(tmp_path, SMS_AND_TELEGRAM)
    providers = "twilio, vonage, plivo, kannel, jasmin, generic, kavenegar, smsir, ghasedak"
    refused_alike(
        tmp_path,
        [
            f"gateway.yaml:7:14: channels.sms.lines.main.provider must be one of {providers},"
            " melipayamak",
            "gateway.yaml:8:7: channels.sms.lines.second: auth_token is required for twilio",
            "gateway.yaml:12:9: channels.sms.lines.second.auth_tokn: unknown key"
            " (did you mean 'auth_token'?)",
            "gateway.yaml:15:35: channels.telegram.bots.shop.mode: webhook or polling",
        ],
    )


def test_an_unknown_key_is_refused_where_it_would_be_ignored(tmp_path: Path) -> None:
    """A misspelt optional key (the line's country, the email port) started as if absent."""
    config(
        tmp_path,
        """\
  sms:
    lines:
      main: {provider: twilio, number: '+15550001111', account_sid: AC1, auth_token: s3cr3t,
             contry: '98'}
    default_lin: main
  email:
    reply_domain: reply.example.com
    token_secret: s3cr3t-s3cr3t-s3cr3t
    from: Surveys <surveys@example.com>
    relay: {host: 127.0.0.1}
    prot: 2526
  api: {enabled: true, token: x}
""",
    )
    refused_alike(
        tmp_path,
        [
            "gateway.yaml:8:14: channels.sms.lines.main.contry: unknown key"
            " (did you mean 'country'?)",
            "gateway.yaml:9:5: channels.sms.default_lin: unknown key"
            " (did you mean 'default_line'?)",
            "gateway.yaml:15:5: channels.email.prot: unknown key (did you mean 'port'?)",
            "gateway.yaml:16:24: channels.api.token: unknown key",
        ],
    )


def test_unset_variables_are_all_named_never_a_value(tmp_path: Path) -> None:
    """run named the first unset variable only; validate ignored them."""
    config(
        tmp_path,
        """\
  whatsapp:
    lines:
      shop:
        phone_number_id: '1234'
        access_token: ${WA_TOKEN}
        app_secret: ${WA_SECRET}
        verify_token: s3cr3t-verify
        graph_bse: http://127.0.0.1:9
""",
        head="api: {token: '${SEDA_API_TOKEN}'}\n",
    )
    refused_alike(
        tmp_path,
        [
            "gateway.yaml:4:7: api.token: environment variable SEDA_API_TOKEN is not set"
            " (and has no default)",
            "gateway.yaml:10:9: channels.whatsapp.lines.shop.access_token: environment variable"
            " WA_TOKEN is not set (and has no default)",
            "gateway.yaml:11:9: channels.whatsapp.lines.shop.app_secret: environment variable"
            " WA_SECRET is not set (and has no default)",
            "gateway.yaml:13:9: channels.whatsapp.lines.shop.graph_bse: unknown key"
            " (did you mean 'graph_base'?)",
        ],
    )


def test_a_port_out_of_range_and_a_bad_line_name(tmp_path: Path) -> None:
    config(
        tmp_path,
        """\
  ivr: {default_survey: post_call_nps, sip: {host: 127.0.0.1, port: 70000}}
  whatsapp:
    lines:
      "shop line": {phone_number_id: '1', access_token: s3cr3t, app_secret: s3cr3t,
                    verify_token: s3cr3t}
""",
    )
    refused_alike(
        tmp_path,
        [
            "gateway.yaml:5:63: channels.ivr.sip.port must be between 1 and 65535",
            "gateway.yaml:7:5: channels.whatsapp.lines: name 'shop line' must be 1-64 letters,"
            " digits, _ or -",
        ],
    )


def test_a_good_configuration_passes_and_the_shipped_default_too(tmp_path: Path) -> None:
    config(
        tmp_path,
        """\
  api: {enabled: true}
  sms:
    lines:
      main: {provider: kannel, number: '+15550001111', token: s3cr3t, username: u,
             password: s3cr3t, smsc: gsm1}
      ir: {provider: kavenegar, number: '3000', api_key: s3cr3t, poll_interval: 5}
""",
    )
    done = seda(tmp_path, "validate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gateway.yaml" not in done.stdout and "0 error(s)" in done.stderr
    shipped = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "validate"],
        capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, timeout=60,
    )  # fmt: skip
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr


def test_every_channel_checks_its_own_settings() -> None:
    """A channel without check_settings would have its whole block reported as unknown keys
    never, and its mistakes found only by `seda run`."""
    for name in registry.CHANNELS:
        assert registry.checks_settings(registry.load(name)), name


def test_a_sip_host_that_is_not_this_machine_is_refused_in_a_line(tmp_path: Path) -> None:
    """The voice channel's README block names a SIP address of its own network: copied as it
    is, `seda run` ended in a traceback (KamailioError: Cannot assign requested address)."""
    config(tmp_path, "  ivr: {default_survey: post_call_nps, sip: {host: 192.0.2.1, port: 5060}}\n")
    assert seda(tmp_path, "validate").returncode == 0  # the machine's addresses: known at start
    started = seda(tmp_path, "run")
    assert started.returncode == 2, started.stderr
    assert "Traceback" not in started.stderr
    assert started.stderr.splitlines()[-2:] == [
        "seda: configuration error:",
        "gateway.yaml:5:46: channels.ivr.sip.host: 192.0.2.1 is not an address of this machine"
        " (Cannot assign requested address): give one it has (`ip -brief address`)",
    ]


def test_a_voice_pool_that_cannot_start_is_said_without_a_traceback(tmp_path: Path) -> None:
    """The voice channel's README block names a speech model folder that a new machine does
    not have: the pool said so clearly, then `seda run` ended in a RuntimeError traceback."""
    free = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    config(
        tmp_path,
        f"  ivr: {{default_survey: post_call_nps, sip: {{host: 127.0.0.1, port: {port}}},"
        " speech: {models: {fa: var/models/fa}}}\n",
    )
    started = seda(tmp_path, "run")
    assert started.returncode == 1, started.stderr
    assert "Traceback" not in started.stderr, started.stderr
    assert "speech model for 'fa': " in started.stderr  # the pool's own words, as before
    assert started.stderr.splitlines()[-1] == (
        "seda: the voice pool exited with status 2 (see its log lines above)"
    )
    assert "seda ready" not in started.stderr  # ready means every channel started


def test_a_misspelt_backend_setting_is_refused(tmp_path: Path) -> None:
    """The schema takes any key in a backend (each type has its own): `timout` and `event`
    were ignored, and every event went to the file."""
    config(
        tmp_path,
        "  api: {enabled: true}\n",
        head="backends:\n"
        "  crm: {type: webhook, url: 'http://127.0.0.1:9/hook', timout: 5}\n"
        "  file: {type: jsonl, path: var/answers.jsonl, event: [answer.recorded]}\n",
    )
    refused_alike(
        tmp_path,
        [
            "gateway.yaml:5:56: backends.crm.timout: unknown key (did you mean 'timeout'?)",
            "gateway.yaml:6:48: backends.file.event: unknown key (did you mean 'events'?)",
        ],
    )


def test_a_configuration_that_cannot_be_read_is_said_once(tmp_path: Path) -> None:
    """Not also `config/flows: no such file or directory`: where the surveys are is unknown."""
    (tmp_path / "gateway.yaml").write_text("channels:\n  sms: [a\n", "utf-8")
    done = seda(tmp_path, "validate")
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "gateway.yaml:3:1: not valid YAML: expected ',' or ']', but got '<stream end>'"
        " (while parsing a flow sequence)"
    ]


def test_a_value_of_the_wrong_type_is_said_and_the_next_line_checked(tmp_path: Path) -> None:
    config(
        tmp_path,
        """\
  sms:
    lines:
      ir: {provider: smsir, number: '3000', api_key: s3cr3t, page_size: [1, 2]}
      kv: {provider: kavenegar, number: '3000', api_key: s3cr3t, poll_interval: soon}
""",
    )
    refused_alike(
        tmp_path,
        [
            "gateway.yaml:7:7: channels.sms.lines.ir: a setting of this smsir line: int() argument"
            " must be a string, a bytes-like object or a real number, not 'list'",
            "gateway.yaml:8:66: channels.sms.lines.kv.poll_interval: a number of seconds above 0",
        ],
    )


def test_every_mistake_in_the_email_block_at_once(tmp_path: Path) -> None:
    """validate and run said the reply domain only; fixed, the relay's TLS mode; then the
    unknown key (said beside a mistake only when it was a near miss)."""
    config(
        tmp_path,
        """\
  email:
    reply_domain: not a domain
    token_secret: s3cr3t-s3cr3t-s3cr3t
    from: Surveys <surveys@example.com>
    relay: {host: 127.0.0.1, tls: ssl}
    colour: blue
""",
    )
    refused_alike(
        tmp_path,
        [
            "gateway.yaml:6:5: channels.email.reply_domain: 'not a domain' is not a domain name",
            "gateway.yaml:9:30: channels.email.relay.tls: starttls, implicit or none",
            "gateway.yaml:10:5: channels.email.colour: unknown key",
        ],
    )


def test_every_mistake_in_the_telegram_block_at_once(tmp_path: Path) -> None:
    """validate and run said the first bot's mode only; then the second bot's secret; then
    the voice block."""
    config(
        tmp_path,
        """\
  telegram:
    bots:
      shop: {token: '123:s3cr3t', mode: poling}
      desk: {token: '456:s3cr3t', secret: has space}
    voice: {min_confidence: 2}
""",
    )
    refused_alike(
        tmp_path,
        [
            "gateway.yaml:7:35: channels.telegram.bots.shop.mode: webhook or polling",
            "gateway.yaml:8:35: channels.telegram.bots.desk.secret: required for webhooks,"
            " 1-256 characters of A-Z, a-z, 0-9, _ and -",
            "gateway.yaml:9:13: channels.telegram.voice.min_confidence: a number from 0 to 1",
        ],
    )


def test_every_mistake_in_the_whatsapp_block_at_once(tmp_path: Path) -> None:
    """validate and run said the Graph address only; then the missing secret; then the
    timeout, which was read after every line."""
    config(
        tmp_path,
        """\
  whatsapp:
    timeout: -1
    lines:
      shop:
        phone_number_id: '1234'
        access_token: s3cr3t
        verify_token: s3cr3t-verify
        graph_base: ftp://graph.example
""",
    )
    refused_alike(
        tmp_path,
        [
            "gateway.yaml:6:5: channels.whatsapp.timeout: a number of seconds (0 or more) is"
            " required",
            "gateway.yaml:8:7: channels.whatsapp.lines.shop.app_secret: a non-empty string is"
            " required",
            "gateway.yaml:12:9: channels.whatsapp.lines.shop.graph_base: an http(s) URL",
        ],
    )


def test_every_mistake_in_the_ivr_block_at_once(tmp_path: Path) -> None:
    """validate and run said the number of workers only; then the recordings' days; and the
    survey that is not there only once the rest was right (at no key)."""
    config(
        tmp_path,
        """\
  ivr:
    default_survey: post_call_nsp
    workers: 0
    recordings: {keep_days: 0}
""",
    )
    refused_alike(
        tmp_path,
        [
            "gateway.yaml:6:5: channels.ivr.default_survey: no survey 'post_call_nsp' (surveys:"
            " issue_resolved, post_call_nps, ticket_csat)",
            "gateway.yaml:7:5: channels.ivr.workers must be between 1 and 64",
            "gateway.yaml:8:18: channels.ivr.recordings.keep_days must be between 1 and 36500",
        ],
    )


def test_correct_blocks_of_every_channel_give_no_error(tmp_path: Path) -> None:
    """The four blocks above, corrected: nothing said, exit 0 (nothing over-reported)."""
    config(
        tmp_path,
        """\
  email:
    reply_domain: reply.example.com
    token_secret: s3cr3t-s3cr3t-s3cr3t
    from: Surveys <surveys@example.com>
    relay: {host: 127.0.0.1, tls: none, port: 25}
  telegram:
    bots:
      shop: {token: '123:s3cr3t', mode: polling}
      desk: {token: '456:s3cr3t', secret: no-space}
    voice: {min_confidence: 0.5}
  whatsapp:
    timeout: 5
    lines:
      shop: {phone_number_id: '1234', access_token: s3cr3t, app_secret: s3cr3t,
             verify_token: s3cr3t-verify, graph_base: 'http://127.0.0.1:9'}
  ivr:
    default_survey: post_call_nps
    workers: 1
    recordings: {keep_days: 30}
""",
    )
    done = seda(tmp_path, "validate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gateway.yaml" not in done.stdout and "0 error(s)" in done.stderr
