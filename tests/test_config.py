"""StigmerConfig: environment loading, validation rules and key redaction."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from otel_stigmer.config import (
    ALIAS_API_KEY,
    ALIAS_ENDPOINT,
    ENV_ALLOW_INSECURE,
    ENV_API_KEY,
    ENV_API_KEY_FILE,
    ENV_CA_FILE,
    ENV_ENDPOINT,
    ENV_MAX_BATCH_SIZE,
    ENV_MAX_QUEUE_BYTES,
    ENV_MAX_QUEUE_SIZE,
    ENV_SPOOL_PATH,
    ENV_TIMEOUT,
    ENV_USE_TLS,
    StigmerConfig,
    is_loopback_host,
    parse_bool,
)
from otel_stigmer.exceptions import ConfigError

CANARY = "canary-KEY-8d1f0c2e-do-not-log"
PEM = b"-----BEGIN CERTIFICATE-----\nMIIBdummy\n-----END CERTIFICATE-----\n"  # shape only


def _env(**extra: str) -> dict[str, str]:
    env = {ENV_ENDPOINT: "localhost:9090", ENV_API_KEY: CANARY, ENV_USE_TLS: "false"}
    env.update(extra)
    return env


def test_seed_local_settings_load() -> None:
    """The seed's local-testing variables give a plaintext loopback config."""
    config = StigmerConfig.from_env(
        {ENV_ENDPOINT: "localhost:9090", ENV_API_KEY: "test-key", ENV_USE_TLS: "false"}
    )
    assert (config.host, config.port, config.use_tls) == ("localhost", 9090, False)
    assert config.read_api_key() == "test-key"
    assert config.timeout == 10.0
    assert (config.max_queue_size, config.max_batch_size) == (100_000, 500)


def test_tls_is_the_default() -> None:
    """Without STIGMER_SERVICE_USE_TLS the config uses TLS."""
    config = StigmerConfig.from_env(
        {ENV_ENDPOINT: "stigmer-prod-api.planton.live:443", ENV_API_KEY: CANARY}
    )
    assert config.use_tls is True
    assert config.authority() == "stigmer-prod-api.planton.live:443"


def test_ipv6_endpoint_is_split_without_brackets() -> None:
    """``[::1]:9090`` parses to host ``::1`` and port 9090, and is loopback."""
    config = StigmerConfig.from_env(_env(**{ENV_ENDPOINT: "[::1]:9090"}))
    assert (config.host, config.port) == ("::1", 9090)
    assert config.authority() == "[::1]:9090"


def test_aliases_apply_only_when_primary_unset() -> None:
    """The upstream names are read when the primary variables are unset or blank."""
    env = {ALIAS_ENDPOINT: "127.0.0.1:7000", ALIAS_API_KEY: "alias-key", ENV_USE_TLS: "0"}
    config = StigmerConfig.from_env(env)
    assert (config.endpoint, config.read_api_key()) == ("127.0.0.1:7000", "alias-key")
    env.update({ENV_ENDPOINT: "localhost:9090", ENV_API_KEY: "primary-key"})
    config = StigmerConfig.from_env(env)
    assert (config.endpoint, config.read_api_key()) == ("localhost:9090", "primary-key")
    env[ENV_ENDPOINT] = "  "
    assert StigmerConfig.from_env(env).endpoint == "127.0.0.1:7000"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        (" yes ", True),
        ("On", True),
        ("1", True),
        ("false", False),
        ("No", False),
        ("off", False),
        ("0", False),
    ],
)
def test_boolean_spellings(text: str, expected: bool) -> None:
    """Booleans accept true/false, 1/0, yes/no, on/off in any case."""
    assert parse_bool(ENV_USE_TLS, text) is expected


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("example.com", False),
        ("localhost.example.com", False),
        ("::2", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    """Loopback means localhost, 127.0.0.0/8 or ::1, without a DNS lookup."""
    assert is_loopback_host(host) is loopback


def test_key_file_is_read_stripped_and_reread(tmp_path: Path) -> None:
    """A key file's trailing newline is dropped and a rotated key is seen on the next read."""
    key_file = tmp_path / "key"
    key_file.write_text(CANARY + "\n")
    env = _env(**{ENV_API_KEY_FILE: str(key_file)})
    del env[ENV_API_KEY]
    config = StigmerConfig.from_env(env)
    assert config.api_key == ""
    assert config.read_api_key() == CANARY
    key_file.write_text("rotated-key\r\n")
    assert config.read_api_key() == "rotated-key"


def test_env_key_surrounding_whitespace_is_stripped() -> None:
    """A key pasted with a trailing newline works as the bare key."""
    config = StigmerConfig.from_env(_env(**{ENV_API_KEY: f"  {CANARY}\n"}))
    assert config.read_api_key() == CANARY


def test_optional_settings_are_parsed(tmp_path: Path) -> None:
    """Timeout, CA file, spool path, sizes and allow-insecure are read from the environment."""
    ca = tmp_path / "ca.pem"
    ca.write_bytes(PEM)
    config = StigmerConfig.from_env(
        {
            ENV_ENDPOINT: "stigmer.internal:8443",
            ENV_API_KEY: CANARY,
            ENV_CA_FILE: str(ca),
            ENV_TIMEOUT: "2.5",
            ENV_SPOOL_PATH: str(tmp_path / "spool.db"),
            ENV_MAX_QUEUE_SIZE: "1000",
            ENV_MAX_BATCH_SIZE: "50",
            ENV_MAX_QUEUE_BYTES: "8388608",
        }
    )
    assert config.max_queue_bytes == 8 * 1024 * 1024
    assert config.ca_file == str(ca)
    assert config.read_ca_bundle() == PEM
    assert (config.timeout, config.max_queue_size, config.max_batch_size) == (2.5, 1000, 50)
    assert config.spool_path == str(tmp_path / "spool.db")
    insecure = StigmerConfig.from_env(
        _env(**{ENV_ENDPOINT: "10.1.2.3:9090", ENV_ALLOW_INSECURE: "true"})
    )
    assert insecure.allow_insecure is True
    assert insecure.use_tls is False


def test_repr_and_str_hide_the_key(tmp_path: Path) -> None:
    """repr() and str() show '***' or '<unset>' and never the key."""
    config = StigmerConfig.from_env(_env())
    for text in (repr(config), str(config), f"{config}", f"{config!r}"):
        assert CANARY not in text
        assert "api_key='***'" in text
        assert "endpoint='localhost:9090'" in text
    key_file = tmp_path / "key"
    key_file.write_text(CANARY)
    from_file = StigmerConfig("localhost:1", "", use_tls=False, api_key_file=str(key_file))
    assert "api_key='<unset>'" in repr(from_file)
    assert CANARY not in repr(from_file)


def test_direct_construction_validates() -> None:
    """Building the dataclass directly runs the same checks as from_env."""
    with pytest.raises(ConfigError, match=ENV_TIMEOUT):
        StigmerConfig("localhost:9090", CANARY, use_tls=False, timeout=0)
    with pytest.raises(ConfigError, match=ENV_MAX_BATCH_SIZE):
        StigmerConfig("localhost:9090", CANARY, use_tls=False, max_batch_size=True)
    config = StigmerConfig("localhost:9090", CANARY, use_tls=False)
    assert dataclasses.replace(config, timeout=3.0).timeout == 3.0
    assert config == StigmerConfig("localhost:9090", CANARY, use_tls=False)


def _write_files(tmp: Path) -> None:
    (tmp / "ca.der").write_bytes(b"\x30\x82\x01\x0a")
    (tmp / "empty.key").write_text("\n")
    (tmp / "ca.pem").write_bytes(PEM)
    (tmp / "ctl.key").write_text(CANARY[:5] + "\x07" + CANARY[5:])


def _bad_configs(tmp: Path) -> list[tuple[str, dict[str, str | None], list[str]]]:
    """(case id, env overrides (None deletes), fragments the message must contain).

    Pure: paths point into ``tmp``; :func:`_write_files` creates the files a case reads.
    """
    not_pem = tmp / "ca.der"
    empty_key = tmp / "empty.key"
    ca = tmp / "ca.pem"
    control_key = tmp / "ctl.key"
    return [
        ("missing endpoint", {ENV_ENDPOINT: None}, [ENV_ENDPOINT, "not set", ALIAS_ENDPOINT]),
        ("missing key", {ENV_API_KEY: None}, [ENV_API_KEY, "not set", ENV_API_KEY_FILE]),
        ("no port", {ENV_ENDPOINT: "localhost"}, [ENV_ENDPOINT, "'localhost'", "missing port"]),
        (
            "url scheme",
            {ENV_ENDPOINT: "https://stigmer.example.com:443/api"},
            [ENV_ENDPOINT, "a URL", "stigmer.example.com:443", ENV_USE_TLS],
        ),
        ("port not a number", {ENV_ENDPOINT: "localhost:http"}, ["'http' is not a number"]),
        ("port zero", {ENV_ENDPOINT: "localhost:0"}, [ENV_ENDPOINT, "out of range", "1-65535"]),
        ("port too big", {ENV_ENDPOINT: "localhost:65536"}, ["port 65536 is out of range"]),
        ("bare ipv6", {ENV_ENDPOINT: "::1:9090"}, ["without brackets", "[::1]:9090"]),
        ("bad ipv6", {ENV_ENDPOINT: "[::zz]:9090"}, ["not an IPv6 address"]),
        ("bad host", {ENV_ENDPOINT: "bad_host!:9090"}, ["not a valid host name"]),
        ("tls maybe", {ENV_USE_TLS: "maybe"}, [ENV_USE_TLS, "'maybe'", "true/false", "on/off"]),
        ("insecure maybe", {ENV_ALLOW_INSECURE: "sure"}, [ENV_ALLOW_INSECURE, "'sure'"]),
        (
            "plaintext to remote host",
            {ENV_ENDPOINT: "stigmer.example.com:9090"},
            [ENV_USE_TLS, "plaintext", "'stigmer.example.com'", ENV_ALLOW_INSECURE],
        ),
        ("negative timeout", {ENV_TIMEOUT: "-1"}, [ENV_TIMEOUT, "-1.0", "above 0"]),
        ("zero timeout", {ENV_TIMEOUT: "0"}, [ENV_TIMEOUT, "above 0"]),
        ("nan timeout", {ENV_TIMEOUT: "nan"}, [ENV_TIMEOUT, "finite"]),
        ("word timeout", {ENV_TIMEOUT: "ten"}, [ENV_TIMEOUT, "'ten'", "not a number"]),
        (
            "ca file missing",
            {ENV_USE_TLS: "true", ENV_CA_FILE: str(tmp / "nope.pem")},
            [ENV_CA_FILE, "nope.pem", "cannot read", "No such file"],
        ),
        (
            "ca file not pem",
            {ENV_USE_TLS: "true", ENV_CA_FILE: str(not_pem)},
            [ENV_CA_FILE, "not a PEM", "openssl"],
        ),
        (
            "ca file without tls",
            {ENV_CA_FILE: str(ca)},
            [ENV_CA_FILE, "TLS is off", f"{ENV_USE_TLS}=true"],
        ),
        (
            "key and key file",
            {ENV_API_KEY_FILE: str(empty_key)},
            [ENV_API_KEY, ENV_API_KEY_FILE, "ambiguous", "unset one"],
        ),
        (
            "key file missing",
            {ENV_API_KEY: None, ENV_API_KEY_FILE: str(tmp / "nokey")},
            [ENV_API_KEY_FILE, "cannot read", "No such file"],
        ),
        (
            "key file empty",
            {ENV_API_KEY: None, ENV_API_KEY_FILE: str(empty_key)},
            [ENV_API_KEY_FILE, "is empty"],
        ),
        (
            "key file control char",
            {ENV_API_KEY: None, ENV_API_KEY_FILE: str(control_key)},
            [ENV_API_KEY_FILE, "control character", "not shown"],
        ),
        (
            "key inner whitespace",
            {ENV_API_KEY: CANARY[:5] + " " + CANARY[5:]},
            [ENV_API_KEY, "whitespace", "not shown"],
        ),
        (
            "key non-ascii",
            {ENV_API_KEY: CANARY + "\u00e9"},
            [ENV_API_KEY, "non-ASCII", "not shown"],
        ),
        (
            "alias key control char",
            {ENV_API_KEY: None, ALIAS_API_KEY: CANARY + "\x00x"},
            [ALIAS_API_KEY, "control character"],
        ),
        ("queue size zero", {ENV_MAX_QUEUE_SIZE: "0"}, [ENV_MAX_QUEUE_SIZE, "positive integer"]),
        ("batch size word", {ENV_MAX_BATCH_SIZE: "many"}, [ENV_MAX_BATCH_SIZE, "'many'"]),
        ("queue bytes word", {ENV_MAX_QUEUE_BYTES: "64M"}, [ENV_MAX_QUEUE_BYTES, "whole number"]),
        ("queue bytes small", {ENV_MAX_QUEUE_BYTES: "4096"}, [ENV_MAX_QUEUE_BYTES, "1 MiB"]),
        ("batch size float", {ENV_MAX_BATCH_SIZE: "1.5"}, [ENV_MAX_BATCH_SIZE, "whole number"]),
        (
            "spool dir missing",
            {ENV_SPOOL_PATH: str(tmp / "no" / "spool.db")},
            [ENV_SPOOL_PATH, "does not exist"],
        ),
        ("spool is a directory", {ENV_SPOOL_PATH: str(tmp)}, [ENV_SPOOL_PATH, "is a directory"]),
        (
            "alias endpoint bad",
            {ENV_ENDPOINT: None, ALIAS_ENDPOINT: "grpc://x:1"},
            [ALIAS_ENDPOINT, "a URL"],
        ),
    ]


_CASE_IDS = [case[0] for case in _bad_configs(Path("unused"))]


@pytest.mark.parametrize("case_id", _CASE_IDS)
def test_bad_configuration_catalogue(case_id: str, tmp_path: Path) -> None:
    """Each bad configuration raises ConfigError naming the variable and fix, never the key."""
    _write_files(tmp_path)
    cases = {case[0]: case for case in _bad_configs(tmp_path)}
    _, overrides, fragments = cases[case_id]
    env: dict[str, str] = _env()
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    with pytest.raises(ConfigError) as info:
        StigmerConfig.from_env(env)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from {message!r}"
    assert CANARY not in message
    assert CANARY[:12] not in message
    assert "Fix:" in message or "fix" in message.lower()


def test_catalogue_is_large_enough() -> None:
    """The catalogue covers at least twelve distinct bad configurations."""
    assert len(set(_CASE_IDS)) >= 12


def test_config_error_is_a_value_error() -> None:
    """ConfigError is a ValueError, so generic input validation handlers catch it."""
    with pytest.raises(ValueError, match=ENV_ENDPOINT):
        StigmerConfig.from_env({})


def test_unreadable_key_file_on_reread_raises_config_error(tmp_path: Path) -> None:
    """read_api_key reports a key file that disappeared after start-up."""
    key_file = tmp_path / "key"
    key_file.write_text(CANARY)
    config = StigmerConfig("localhost:9090", "", use_tls=False, api_key_file=str(key_file))
    key_file.unlink()
    with pytest.raises(ConfigError, match="cannot read the API key file"):
        config.read_api_key()
