"""Configuration of the Stigmer callback: environment loading, validation and key redaction.

Everything is validated when a :class:`StigmerConfig` is built, whether by
:meth:`StigmerConfig.from_env` or directly, so a misconfiguration fails at start-up
with a :class:`~otel_stigmer.exceptions.ConfigError` that names the environment
variable, the bad value (never the API key) and the fix.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from otel_stigmer.exceptions import ConfigError

__all__ = [
    "ALIAS_API_KEY",
    "ALIAS_ENDPOINT",
    "ENV_ALLOW_INSECURE",
    "ENV_ALLOW_PROXY",
    "ENV_API_KEY",
    "ENV_API_KEY_FILE",
    "ENV_CA_FILE",
    "ENV_ENDPOINT",
    "ENV_GRPC_TRACE",
    "ENV_MAX_BATCH_SIZE",
    "ENV_MAX_QUEUE_BYTES",
    "ENV_MAX_QUEUE_SIZE",
    "ENV_PROTOCOL",
    "ENV_SENDER",
    "ENV_SPOOL_PATH",
    "ENV_TIMEOUT",
    "ENV_USE_TLS",
    "PROTOCOLS",
    "PROXY_VARIABLES",
    "SENDERS",
    "StigmerConfig",
    "check_grpc_tracing",
    "is_loopback_host",
    "parse_bool",
    "parse_endpoint",
]

#: Receiver address as ``host:port`` (``[::1]:9090`` for IPv6). Required.
ENV_ENDPOINT = "STIGMER_SERVICE_ENDPOINT"
#: API key sent as ``authorization: Bearer <key>``. Required unless a key file is given.
ENV_API_KEY = "STIGMER_SERVICE_API_KEY"
#: ``true`` (default) for TLS, ``false`` for plaintext.
ENV_USE_TLS = "STIGMER_SERVICE_USE_TLS"
#: Path of a file holding the API key; re-read when the receiver rejects the key.
ENV_API_KEY_FILE = "STIGMER_SERVICE_API_KEY_FILE"
#: Path of a PEM CA bundle that replaces the system roots (private CAs).
ENV_CA_FILE = "STIGMER_SERVICE_CA_FILE"
#: Timeout of one callback, in seconds (a float). Default 10.
ENV_TIMEOUT = "STIGMER_SERVICE_TIMEOUT"
#: ``true`` permits sending the key in plaintext to a host that is not loopback.
ENV_ALLOW_INSECURE = "STIGMER_SERVICE_ALLOW_INSECURE"
#: ``true`` lets the callback go through the proxy of ``https_proxy``/``grpc_proxy`` (TLS only).
ENV_ALLOW_PROXY = "STIGMER_SERVICE_ALLOW_PROXY"
#: Path of the SQLite file of the durable spool; unset keeps events in memory only.
ENV_SPOOL_PATH = "STIGMER_SPOOL_PATH"
#: Events held in memory by the delivery pipeline. Default 100000.
ENV_MAX_QUEUE_SIZE = "STIGMER_MAX_QUEUE_SIZE"
#: Bytes held in memory by each of the pipeline's two queues. Default 67108864 (64 MiB).
ENV_MAX_QUEUE_BYTES = "STIGMER_MAX_QUEUE_BYTES"
#: Events per ``report_progress_batch`` call. Default 500.
ENV_MAX_BATCH_SIZE = "STIGMER_MAX_BATCH_SIZE"
#: gRPC core's tracer list; refused while a key is in use (it prints the key).
ENV_GRPC_TRACE = "GRPC_TRACE"
#: Wire protocol: ``progress`` (``report_progress``, default) or ``status`` (``updateStatus``).
ENV_PROTOCOL = "STIGMER_PROTOCOL"
#: The values of :data:`ENV_PROTOCOL`.
PROTOCOLS = ("progress", "status")
#: Where mapping and sending run: ``thread`` (a background thread, default) or ``process``
#: (a child process of its own, so the sender does not share the application's GIL).
ENV_SENDER = "STIGMER_SENDER"
#: The values of :data:`ENV_SENDER`.
SENDERS = ("thread", "process")
#: Upstream name of :data:`ENV_ENDPOINT`, read only when the primary variable is unset.
ALIAS_ENDPOINT = "STIGMER_BACKEND_ENDPOINT"
#: Upstream name of :data:`ENV_API_KEY`, read only when the primary variable is unset.
ALIAS_API_KEY = "STIGMER_API_KEY"

#: The variables through which gRPC and urllib would pick a proxy.
PROXY_VARIABLES = (
    "grpc_proxy",
    "https_proxy",
    "http_proxy",
    "GRPC_PROXY",
    "HTTPS_PROXY",
    "HTTP_PROXY",
)

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_ACCEPTED_BOOLS = "true/false, 1/0, yes/no or on/off"
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_-]{1,63})*\.?$"
)
# Visible ASCII: what a gRPC header value may carry, minus spaces, which no real key holds.
_KEY_CHARS = re.compile(r"^[\x21-\x7e]+$")
_PEM_MARKER = b"-----BEGIN CERTIFICATE-----"
_MAX_KEY_FILE_BYTES = 64 * 1024


def _fail(variable: str, value: object, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{variable}={value!r}: {problem}. Fix: {fix}.")


def parse_bool(variable: str, value: str) -> bool:
    """Parse a boolean environment value.

    Args:
        variable: Name of the variable, for the error message.
        value: ``true/false``, ``1/0``, ``yes/no`` or ``on/off``, case-insensitive.

    Raises:
        ConfigError: For any other value.
    """
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _fail(variable, value, "not a boolean", f"use one of {_ACCEPTED_BOOLS}")


def parse_endpoint(variable: str, value: str) -> tuple[str, int]:
    """Split ``host:port`` (or ``[ipv6]:port``) into a host without brackets and a port.

    Raises:
        ConfigError: When the value is a URL, lacks a port, has a bad host or a port
            outside 1-65535.
    """
    example = "stigmer.example.com:443, 127.0.0.1:9090 or [::1]:9090"
    text = value.strip()
    if not text:
        raise _fail(variable, value, "empty endpoint", f"set host:port, e.g. {example}")
    if "://" in text:
        bare = text.split("://", 1)[1].split("/", 1)[0]
        raise _fail(
            variable,
            value,
            "a URL, not host:port",
            f"drop the scheme and path, e.g. {bare or 'host:443'}; "
            f"TLS is chosen by {ENV_USE_TLS}, not by the scheme",
        )
    if any(ch in text for ch in "/?#@ \t"):
        raise _fail(variable, value, "not host:port", f"use host:port only, e.g. {example}")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise _fail(
                variable, value, "bracketed IPv6 address without a port", "write [::1]:9090"
            )
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _fail(
                variable, value, f"{host!r} is not an IPv6 address", "write [::1]:9090"
            ) from None
    else:
        if text.count(":") > 1:
            raise _fail(variable, value, "IPv6 address without brackets", "write it as [::1]:9090")
        host, sep, port_text = text.partition(":")
        if not sep:
            raise _fail(variable, value, "missing port", f"add the port, e.g. {text}:443")
        if not _HOSTNAME.match(host):
            raise _fail(variable, value, f"{host!r} is not a valid host name", f"use {example}")
    if not port_text.isdigit() or not port_text.isascii():
        raise _fail(variable, value, f"port {port_text!r} is not a number", f"use {example}")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise _fail(variable, value, f"port {port} is out of range", "use a port in 1-65535")
    return host, port


def is_loopback_host(host: str) -> bool:
    """Return whether ``host`` is ``localhost``, in 127.0.0.0/8 or ``::1`` (no DNS lookup).

    Only names that never reach DNS count: exactly ``localhost`` (answered from the hosts
    file) and address literals. ``localhost.`` and ``127.0.0.1.`` are fully qualified DNS
    names and ``app.localhost`` is an ordinary DNS name, so none of them is loopback.
    """
    name = host.lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _check_key(variable: str, key: str) -> None:
    # The key itself never goes into the message, not even in part.
    if not key:
        raise ConfigError(
            f"{variable} is empty. Fix: set it to the API key issued by the Stigmer Service."
        )
    if not _KEY_CHARS.match(key):
        raise ConfigError(
            f"{variable} holds a character that cannot be sent in a gRPC header "
            "(whitespace, a control character or non-ASCII; the value is not shown). "
            "Fix: set the key exactly as issued, without quotes, spaces or line breaks."
        )


def _read_key_file(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise _fail(
            ENV_API_KEY_FILE,
            path,
            f"cannot read the API key file ({exc.strerror or type(exc).__name__})",
            "point it at a readable file that holds the key",
        ) from None
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise _fail(
            ENV_API_KEY_FILE, path, "file is too large to be an API key", "store only the key"
        )
    try:
        # Editors and `echo` add a trailing newline; secret mounts may add surrounding blanks.
        key = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ConfigError(
            f"{ENV_API_KEY_FILE}={path!r}: the file holds non-ASCII bytes (not shown). "
            "Fix: store only the key, as plain text."
        ) from None
    if not key:
        raise _fail(
            ENV_API_KEY_FILE, path, "the API key file is empty", "write the key into the file"
        )
    _check_key(f"The API key in {ENV_API_KEY_FILE}={path!r}", key)
    return key


def _read_ca_file(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise _fail(
            ENV_CA_FILE,
            path,
            f"cannot read the CA bundle ({exc.strerror or type(exc).__name__})",
            "point it at a readable PEM file of CA certificates, or unset it to use system roots",
        ) from None
    if _PEM_MARKER not in data:
        raise _fail(
            ENV_CA_FILE,
            path,
            "not a PEM certificate bundle (no '-----BEGIN CERTIFICATE-----' line)",
            "convert it to PEM, e.g. openssl x509 -inform der -in ca.der -out ca.pem",
        )
    return data


def _check_spool_path(path: str) -> None:
    if os.path.isdir(path):
        raise _fail(
            ENV_SPOOL_PATH,
            path,
            "is a directory",
            "give a file path inside it, e.g. <dir>/stigmer-spool.db",
        )
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise _fail(
            ENV_SPOOL_PATH,
            path,
            f"the directory {parent!r} does not exist",
            "create the directory or choose another path",
        )
    if not os.access(parent, os.W_OK):
        raise _fail(
            ENV_SPOOL_PATH,
            path,
            f"the directory {parent!r} is not writable",
            "choose a writable location",
        )
    # SQLite opens a file it may not write read-only, without a word; every write would
    # then fail at run time. Opening for writing is the one check that binds root too
    # (a read-only mount) and the sidecar files SQLite writes next to it.
    for candidate in (path, f"{path}-wal", f"{path}-shm"):
        if not os.path.exists(candidate):
            continue
        try:
            os.close(os.open(candidate, os.O_RDWR))
        except OSError as exc:
            raise _fail(
                ENV_SPOOL_PATH,
                path,
                f"{candidate!r} can be read but not written ({exc.strerror})",
                "make the file writable by this process (chmod u+w, or chown it to this "
                "user), or point the variable at a new file in a writable directory",
            ) from None


def check_grpc_tracing(environ: Mapping[str, str] | None = None) -> None:
    """Refuse gRPC's own tracing, which prints call metadata, the API key included.

    ``GRPC_TRACE`` makes gRPC core print every header it sends or receives, and so the
    ``authorization: Bearer <key>`` of each call, to stderr. ``GRPC_VERBOSITY=debug``
    alone prints no header and is allowed.

    Raises:
        ConfigError: When ``GRPC_TRACE`` is set to anything but blank or ``none``.
    """
    env = os.environ if environ is None else environ
    value = env.get(ENV_GRPC_TRACE, "").strip()
    if value and value.lower() != "none":
        raise _fail(
            ENV_GRPC_TRACE,
            value,
            "gRPC tracing prints the 'authorization' header of every call, so the API key "
            "would be written to stderr and to any log that collects it",
            f"unset {ENV_GRPC_TRACE} (GRPC_VERBOSITY=debug alone is safe); to diagnose the "
            "connection run `otel-stigmer doctor`, or trace with a throw-away key",
        )


def _check_positive_int(variable: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(variable, value, "not a positive integer", "use a whole number of at least 1")


#: The smallest byte bound: one event may serialize to 512 KiB.
MIN_QUEUE_BYTES = 1024 * 1024


def _check_queue_bytes(value: object) -> None:
    _check_positive_int(ENV_MAX_QUEUE_BYTES, value)
    assert isinstance(value, int)
    if value < MIN_QUEUE_BYTES:
        raise _fail(
            ENV_MAX_QUEUE_BYTES,
            value,
            "below 1 MiB (one event may take 512 KiB)",
            f"use at least {MIN_QUEUE_BYTES} bytes",
        )


def _parse_int(variable: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise _fail(
            variable, text, "not a whole number", "use a whole number of at least 1"
        ) from None


def _parse_float(variable: str, text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise _fail(
            variable, text, "not a number", "give seconds as a number, e.g. 10 or 2.5"
        ) from None


def _text(_variable: str, value: str) -> str:
    return value.strip()


def _lower_text(_variable: str, value: str) -> str:
    return value.strip().lower()


#: Optional variables read by :meth:`StigmerConfig.from_env`: variable, field, parser.
_OPTIONAL_VARIABLES: tuple[tuple[str, str, Callable[[str, str], object]], ...] = (
    (ENV_USE_TLS, "use_tls", parse_bool),
    (ENV_ALLOW_INSECURE, "allow_insecure", parse_bool),
    (ENV_ALLOW_PROXY, "allow_proxy", parse_bool),
    (ENV_CA_FILE, "ca_file", _text),
    (ENV_TIMEOUT, "timeout", _parse_float),
    (ENV_SPOOL_PATH, "spool_path", _text),
    (ENV_MAX_QUEUE_SIZE, "max_queue_size", _parse_int),
    (ENV_MAX_QUEUE_BYTES, "max_queue_bytes", _parse_int),
    (ENV_MAX_BATCH_SIZE, "max_batch_size", _parse_int),
    (ENV_PROTOCOL, "protocol", _lower_text),
    (ENV_SENDER, "sender", _lower_text),
)


def _get(environ: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """Return (name, value) of the first variable set to a non-blank value."""
    for name in names:
        value = environ.get(name)
        if value is not None and value.strip():
            return name, value
    return None


@dataclass(frozen=True)
class StigmerConfig:
    """Where and how to reach the Stigmer Service.

    Construction validates every field and raises
    :class:`~otel_stigmer.exceptions.ConfigError` naming the matching environment
    variable. ``repr()`` and ``str()`` never show the API key.

    Attributes:
        endpoint: ``host:port`` of the receiver; ``[::1]:9090`` for IPv6.
        api_key: The bearer key; ``""`` when ``api_key_file`` is given instead.
        use_tls: Use TLS (the default); plaintext needs a loopback host or ``allow_insecure``.
        ca_file: PEM CA bundle that replaces the system roots; TLS only.
        timeout: Seconds allowed for one callback.
        api_key_file: File holding the key, re-read when the receiver rejects the key.
        allow_insecure: Permit plaintext to a host that is not loopback.
        spool_path: SQLite file of the durable spool, or ``None``.
        max_queue_size: Events held in memory by the delivery pipeline.
        max_queue_bytes: Bytes held by each of the pipeline's two queues (the input
            queue's estimated from the spans' text); at least 1 MiB.
        max_batch_size: Events per ``report_progress_batch`` call.
        allow_proxy: Let gRPC use the proxy named by ``grpc_proxy`` / ``https_proxy``;
            TLS only, so the proxy carries an encrypted tunnel to the real endpoint. Off,
            the proxy variables are ignored and the callback connects directly.
        protocol: ``progress`` to send events with ``report_progress`` (the Stigmer
            Service), ``status`` to send each execution's status with ``updateStatus``
            (the open-source Stigmer server).
        sender: ``thread`` to map and send on a background thread of this process (the
            default), ``process`` to do it in a child process started with this
            interpreter, fed by a pipe (see "When to use the process sender" in the docs).
    """

    endpoint: str
    api_key: str = field(repr=False)
    use_tls: bool = True
    ca_file: str | None = None
    timeout: float = 10.0
    api_key_file: str | None = None
    allow_insecure: bool = False
    spool_path: str | None = None
    max_queue_size: int = 100_000
    max_queue_bytes: int = 64 * 1024 * 1024
    max_batch_size: int = 500
    allow_proxy: bool = False
    protocol: str = "progress"
    sender: str = "thread"
    _host: str = field(init=False, repr=False, compare=False, default="")
    _port: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        host, port = parse_endpoint(ENV_ENDPOINT, self.endpoint)
        object.__setattr__(self, "_host", host)
        object.__setattr__(self, "_port", port)
        self._check_key_source()
        # gRPC reads its tracing variable from the real environment, however the config came.
        check_grpc_tracing()
        if not isinstance(self.timeout, (int, float)) or isinstance(self.timeout, bool):
            raise _fail(ENV_TIMEOUT, self.timeout, "not a number", "give seconds, e.g. 10")
        if not math.isfinite(self.timeout) or self.timeout <= 0:
            raise _fail(
                ENV_TIMEOUT,
                self.timeout,
                "must be a finite number of seconds above 0",
                "use e.g. 10 or 2.5",
            )
        if self.ca_file is not None:
            if not self.use_tls:
                raise _fail(
                    ENV_CA_FILE,
                    self.ca_file,
                    f"a CA bundle is set but TLS is off ({ENV_USE_TLS}=false)",
                    f"set {ENV_USE_TLS}=true, or unset {ENV_CA_FILE}",
                )
            _read_ca_file(self.ca_file)
        if not self.use_tls and not self.allow_insecure and not is_loopback_host(host):
            raise ConfigError(
                f"{ENV_USE_TLS}=false with {ENV_ENDPOINT}={self.endpoint!r}: the API key would "
                f"travel in plaintext to {host!r}, which is not a loopback address, where anyone "
                f"on the network path can read it. Fix: set {ENV_USE_TLS}=true, or, only on a "
                f"network you trust (e.g. a service mesh that encrypts traffic), set "
                f"{ENV_ALLOW_INSECURE}=true."
            )
        if self.allow_proxy and not self.use_tls:
            raise _fail(
                ENV_ALLOW_PROXY,
                "true",
                f"a proxy would see the API key, because TLS is off ({ENV_USE_TLS}=false)",
                f"set {ENV_USE_TLS}=true to tunnel TLS through the proxy, or unset "
                f"{ENV_ALLOW_PROXY} to connect directly",
            )
        if self.spool_path is not None:
            _check_spool_path(self.spool_path)
        _check_positive_int(ENV_MAX_QUEUE_SIZE, self.max_queue_size)
        _check_queue_bytes(self.max_queue_bytes)
        _check_positive_int(ENV_MAX_BATCH_SIZE, self.max_batch_size)
        if self.protocol not in PROTOCOLS:
            raise _fail(
                ENV_PROTOCOL,
                self.protocol,
                "unknown protocol",
                "use progress (report_progress, the Stigmer Service; the default) or status "
                "(updateStatus, the open-source Stigmer server)",
            )
        if self.sender not in SENDERS:
            raise _fail(
                ENV_SENDER,
                self.sender,
                "unknown sender",
                "use thread (a background thread of this process; the default) or process "
                "(a child process of its own)",
            )

    def _check_key_source(self) -> None:
        if self.api_key_file is not None:
            if self.api_key:
                raise ConfigError(
                    f"Both {ENV_API_KEY} (or {ALIAS_API_KEY}) and "
                    f"{ENV_API_KEY_FILE}={self.api_key_file!r} are set, so the key to use is "
                    "ambiguous. Fix: unset one of them."
                )
            _read_key_file(self.api_key_file)
            return
        if not self.api_key:
            raise ConfigError(
                f"{ENV_API_KEY} is not set. Fix: set {ENV_API_KEY} to the API key issued by the "
                f"Stigmer Service, or {ENV_API_KEY_FILE} to a file that holds it."
            )
        _check_key(ENV_API_KEY, self.api_key)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StigmerConfig:
        """Build a config from environment variables (``os.environ`` by default).

        Unset and blank variables are treated alike. ``STIGMER_BACKEND_ENDPOINT`` and
        ``STIGMER_API_KEY`` are read only when their primary variable is unset.

        Raises:
            ConfigError: When a variable is missing or invalid.
        """
        env = os.environ if environ is None else environ
        found = _get(env, ENV_ENDPOINT, ALIAS_ENDPOINT)
        if found is None:
            raise ConfigError(
                f"{ENV_ENDPOINT} is not set. Fix: set it to the receiver's host:port, e.g. "
                f"{ENV_ENDPOINT}=stigmer.example.com:443 (the upstream name {ALIAS_ENDPOINT} "
                "is accepted too)."
            )
        endpoint_var, endpoint = found
        parse_endpoint(endpoint_var, endpoint)

        key_found = _get(env, ENV_API_KEY, ALIAS_API_KEY)
        key_file = _get(env, ENV_API_KEY_FILE)
        api_key = ""
        if key_found is not None:
            key_var, raw_key = key_found
            if key_file is not None:
                raise ConfigError(
                    f"Both {key_var} and {ENV_API_KEY_FILE}={key_file[1]!r} are set, so the key "
                    "to use is ambiguous. Fix: unset one of them."
                )
            # Surrounding blanks come from copy-paste or a trailing newline, never from a key.
            api_key = raw_key.strip()
            _check_key(key_var, api_key)

        values: dict[str, object] = {"endpoint": endpoint.strip(), "api_key": api_key}
        if key_file is not None:
            values["api_key_file"] = key_file[1].strip()
        for variable, name, parse in _OPTIONAL_VARIABLES:
            if (item := _get(env, variable)) is not None:
                values[name] = parse(*item)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def host(self) -> str:
        """The receiver's host, without IPv6 brackets."""
        return self._host

    @property
    def port(self) -> int:
        """The receiver's port."""
        return self._port

    def authority(self) -> str:
        """Return ``host:port`` as gRPC expects it, with brackets around an IPv6 host."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{host}:{self._port}"

    def read_api_key(self) -> str:
        """Return the API key, re-reading ``api_key_file`` when set (so a rotated key is seen).

        Raises:
            ConfigError: When the key file has become unreadable, empty or invalid.
        """
        if self.api_key_file is not None:
            return _read_key_file(self.api_key_file)
        return self.api_key

    def read_ca_bundle(self) -> bytes | None:
        """Return the PEM bytes of ``ca_file``, or ``None`` to use the system roots.

        Raises:
            ConfigError: When the file has become unreadable or is not PEM.
        """
        return None if self.ca_file is None else _read_ca_file(self.ca_file)

    def __repr__(self) -> str:
        shown = []
        for item in dataclasses.fields(self):
            if item.name.startswith("_"):
                continue
            value = getattr(self, item.name)
            if item.name == "api_key":
                shown.append(f"api_key={'***' if value else '<unset>'!r}")
            else:
                shown.append(f"{item.name}={value!r}")
        return f"StigmerConfig({', '.join(shown)})"

    __str__ = __repr__
