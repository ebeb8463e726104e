"""What a playbook says: certificates, their sources and outputs, and the sites that use them.

A playbook is validated once per host, after its Jinja2 strings were evaluated for that host,
so every field here holds final values.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from provision.model.base import Strict
from provision.model.names import CertificateName


def _no_nul(value: str) -> str:
    if "\0" in value:
        raise ValueError("holds a NUL byte, which no path can")
    return value


# A path on a host (or the controller): any text a file system accepts.
HostPath = Annotated[str, Field(min_length=1), AfterValidator(_no_nul)]


def _file_mode(value: Any) -> int:
    """``"0644"`` (the way Ansible users write modes) or a number of permission bits. YAML
    reads an unquoted ``0644`` as the octal number it means; ``644`` it reads as decimal."""
    if isinstance(value, str) and re.fullmatch(r"0?[0-7]{3}", value):
        mode = int(value, 8)
    elif isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        raise ValueError("is not a file mode (write it as a quoted octal string, such as '0644')")
    if not 0 <= mode <= 0o777:
        raise ValueError("must hold permission bits only (0000 to 0777: no setuid, setgid, sticky)")
    if mode & 0o002:
        raise ValueError(f"({mode:04o}) would let anyone on the host rewrite it")
    return mode


# A file or folder mode on a host: permission bits, never world-writable.
FileMode = Annotated[
    int,
    BeforeValidator(_file_mode),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": "^0?[0-7]{3}$"},
                {"type": "integer", "minimum": 0, "maximum": 511},
            ]
        }
    ),
]

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
Rotate = Literal["always", "never"]


class RsaKey(Strict):
    type: Literal["rsa"]
    size: Literal[2048, 3072, 4096] = 2048
    rotate: Rotate = "always"

    @property
    def label(self) -> str:
        return f"rsa-{self.size}"


class EcdsaKey(Strict):
    type: Literal["ecdsa"]
    curve: Literal["p256", "p384"] = "p256"
    rotate: Rotate = "always"

    @property
    def label(self) -> str:
        return f"ecdsa-{self.curve}"


class Ed25519Key(Strict):
    type: Literal["ed25519"]
    rotate: Rotate = "always"

    @property
    def label(self) -> str:
        return "ed25519"


KeySpec = Annotated[RsaKey | EcdsaKey | Ed25519Key, Field(discriminator="type")]


class Subject(Strict):
    common_name: str | None = Field(default=None, min_length=1, max_length=64)
    organization: str | None = Field(default=None, min_length=1, max_length=64)
    organizational_unit: str | None = Field(default=None, min_length=1, max_length=64)
    locality: str | None = Field(default=None, min_length=1, max_length=128)
    state: str | None = Field(default=None, min_length=1, max_length=128)
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")


class SecretRef(Strict):
    """Where a password comes from: an environment variable or a file, never the playbook."""

    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' or 'file'")
        return self


Password = SecretRef | SecretStr


class SelfSignedSource(Strict):
    type: Literal["self-signed"]


class CaSource(Strict):
    type: Literal["ca"]
    authority: Identifier


class ProvidedSource(Strict):
    type: Literal["provided"]
    certificate: str
    key: str | None = None
    chain: str | None = None
    root: str | None = None
    password: Password | None = None


Source = Annotated[SelfSignedSource | CaSource | ProvidedSource, Field(discriminator="type")]

Format = Literal["der", "pem", "pkcs7", "pkcs12"]
Content = Literal["certificate", "chain", "fullchain", "root", "key"]

# Which contents each encoding can carry; DER holds one object, PKCS#7 only certificates.
_CONTENTS_BY_FORMAT: dict[str, set[str]] = {
    "der": {"certificate", "root", "key"},
    "pem": {"certificate", "chain", "fullchain", "root", "key"},
    "pkcs7": {"certificate", "chain", "fullchain", "root"},
}


class Output(Strict):
    file: str = Field(min_length=1)
    format: Format
    content: Content | None = None
    password: Password | None = None
    friendly_name: str | None = None
    profile: Literal["modern", "legacy"] = "modern"

    @field_validator("file")
    @classmethod
    def _inside_certificates_dir(cls, value: str) -> str:
        if "\0" in value:
            raise ValueError("holds a NUL byte, which no file name can")
        # The same rule for every host, POSIX or Windows: relative in both spellings, no
        # ``..`` by either separator, no drive (``C:x`` is relative to a drive's own folder).
        # Kept with "/" between parts; the host's path flavour spells it when joining.
        if value.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", value):
            raise ValueError("escapes the certificates directory (use a relative name)")
        parts = [part for part in re.split(r"[/\\]", value) if part not in ("", ".")]
        if ".." in parts:
            raise ValueError("escapes the certificates directory (use a relative name)")
        normal = "/".join(parts)
        if normal == "" or normal.startswith("."):
            raise ValueError("is not a file name")
        return normal

    @model_validator(mode="after")
    def _content_fits_format(self) -> Output:
        if self.format == "pkcs12":
            if self.content is not None:
                raise ValueError(
                    "a pkcs12 output always holds key, certificate and chain; leave out 'content'"
                )
            if self.password is None:
                raise ValueError("a pkcs12 output needs a 'password' ({env: VAR} or {file: PATH})")
            return self
        if self.content is None:
            raise ValueError(f"a {self.format} output needs a 'content'")
        if self.content not in _CONTENTS_BY_FORMAT[self.format]:
            allowed = ", ".join(sorted(_CONTENTS_BY_FORMAT[self.format]))
            raise ValueError(
                f"format {self.format} cannot hold content {self.content!r} (allowed: {allowed})"
            )
        if self.password is not None:
            raise ValueError("only pkcs12 outputs take a 'password'")
        return self

    @property
    def holds_key(self) -> bool:
        return self.format == "pkcs12" or self.content == "key"

    @property
    def is_key_file(self) -> bool:
        return self.content == "key"

    @property
    def holds_leaf(self) -> bool:
        return self.format == "pkcs12" or self.content in ("certificate", "fullchain")


class Certificate(Strict):
    name: Identifier
    source: Source
    key: KeySpec = Field(default_factory=lambda: RsaKey(type="rsa"))
    subject: Subject | None = None
    names: list[CertificateName] = Field(default_factory=list)
    # renew_before_days comes first so that validity_days' own check can see it, and an
    # error points at the validity_days line.
    renew_before_days: int = Field(default=30, ge=0)
    validity_days: int | None = Field(default=None, ge=1, le=36500)
    outputs: list[Output] = Field(min_length=1)

    @field_validator("source", mode="before")
    @classmethod
    def _source_shorthand(cls, value: Any) -> Any:
        # `source: self-signed` reads better than `source: {type: self-signed}`.
        return {"type": value} if isinstance(value, str) else value

    @field_validator("validity_days")
    @classmethod
    def _longer_than_renewal(cls, value: int | None, info: ValidationInfo) -> int | None:
        renew = info.data.get("renew_before_days")
        if value is not None and renew is not None and value <= renew:
            raise ValueError(
                f"validity_days ({value}) must be longer than renew_before_days ({renew}), "
                "or it would be renewed on every run"
            )
        return value

    @field_validator("names")
    @classmethod
    def _unique_names(cls, names: list[str]) -> list[str]:
        # Keep the first mention of each name: a playbook may list the same IP twice
        # (host.address and 127.0.0.1 on a loopback host) without meaning anything by it.
        return list(dict.fromkeys(names))

    @model_validator(mode="after")
    def _coherent(self) -> Certificate:
        issued_here = not isinstance(self.source, ProvidedSource)
        if issued_here:
            if self.validity_days is None:
                raise ValueError("'validity_days' is required for a certificate issued here")
            if self.subject is None and not self.names:
                raise ValueError("give a 'subject' or 'names' (a certificate must name something)")
        if (
            isinstance(self.source, ProvidedSource)
            and self.source.key is None
            and not any(o.content == "key" for o in self.outputs)
        ):
            raise ValueError(
                "a provided certificate without 'key' needs an output with "
                "content: key, where `provision csr` keeps the host's key"
            )
        files = [o.file for o in self.outputs]
        duplicates = sorted({f for f in files if files.count(f) > 1})
        if duplicates:
            raise ValueError(f"two outputs write the same file: {', '.join(duplicates)}")
        if not any(o.holds_key for o in self.outputs):
            raise ValueError(
                "outputs must include the private key (content: key, or format: pkcs12), "
                "so the certificate can be checked and renewed"
            )
        if not any(self._carries_leaf(o) for o in self.outputs):
            raise ValueError(
                "outputs must include the certificate (content: certificate or fullchain, "
                "or format: pkcs12)"
            )
        return self

    def _carries_leaf(self, output: Output) -> bool:
        # For a self-signed certificate the root is the certificate itself.
        self_signed = isinstance(self.source, SelfSignedSource)
        return output.holds_leaf or (self_signed and output.content == "root")


def _listen_address(value: str) -> str:
    """``*`` (every address) or one IP address: the only text that reaches a `listen` line."""
    if value in ("*", ""):
        return "*"
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError("is not an IP address or *") from None


class Binding(Strict):
    protocol: Literal["https", "http"] = "https"
    address: Annotated[str, AfterValidator(_listen_address)] = "*"
    port: int = Field(ge=1, le=65535)
    host: CertificateName | None = None
    certificate: Identifier | None = None
    redirect_to_https: bool = False

    @model_validator(mode="after")
    def _fits_protocol(self) -> Binding:
        if self.protocol == "https" and self.certificate is None:
            raise ValueError("an https binding needs a 'certificate'")
        if self.protocol == "http" and self.certificate is not None:
            raise ValueError("an http binding takes no 'certificate'")
        if self.protocol == "https" and self.redirect_to_https:
            raise ValueError("'redirect_to_https' is for http bindings")
        return self


class VirtualDirectory(Strict):
    path: str = Field(pattern=r"^/[^\s;{}\"'#]*$")
    application: str | None = None
    physical_path: HostPath | None = None
    proxy_to: str | None = Field(default=None, pattern=r"^https?://[^\s;{}\"']+$")

    @model_validator(mode="after")
    def _one_target(self) -> VirtualDirectory:
        if (self.physical_path is None) == (self.proxy_to is None):
            raise ValueError("give exactly one of 'physical_path' or 'proxy_to'")
        return self


class Verify(Strict):
    """After apply, connect to each name and check the served certificate (issue: bindings
    not updated after a renewal is what operators complain about most)."""

    # `provision verify` checks every site; these narrow what it checks of this one.

    # default: every name a client may use for each https binding (provision/coverage.py)
    names: list[CertificateName] | None = Field(default=None, min_length=1)
    # default: every https binding; with `names`, the first https binding's port
    port: int | None = Field(default=None, ge=1, le=65535)
    address: str | None = None  # default: the binding's own address, else the host's


def _known_servers(schema: dict[str, Any]) -> None:
    # The schema's enum is the registry's list, so a new server module shows up in editors.
    from provision.servers.registry import names

    schema["enum"] = names()


class Site(Strict):
    name: str = Field(min_length=1)
    # One of the servers in provision/servers/ (servers/registry.py), checked below.
    server: str = Field(default="nginx", json_schema_extra=_known_servers)
    config: HostPath
    template: HostPath | None = None
    bindings: list[Binding] = Field(min_length=1)
    virtual_directories: list[VirtualDirectory] = Field(default_factory=list)
    reload: bool = True
    test_command: str | None = None
    reload_command: str | None = None
    verify: Verify | None = None
    # The mode of the rendered config and its companions on the host, brought back when it
    # drifts (a config anyone can rewrite is a config anyone controls).
    mode: FileMode = 0o644

    @field_validator("server")
    @classmethod
    def _known_server(cls, value: str) -> str:
        from provision.servers.registry import names

        known = names()
        if value not in known:
            raise ValueError(f"is not a web server provision knows (known: {', '.join(known)})")
        return value

    @model_validator(mode="after")
    def _server_rules(self) -> Site:
        # What this site's server alone refuses (an IIS site name's characters, ...).
        from provision.servers.registry import server

        server(self.server).check_site(self)
        return self

    @field_validator("bindings")
    @classmethod
    def _bindings_do_not_clash(cls, bindings: list[Binding]) -> list[Binding]:
        # What the web server would refuse at reload time, refused here with a line number.
        seen: dict[tuple[str, int], Binding] = {}
        default: set[tuple[str, int]] = set()
        for binding in bindings:
            socket = (binding.address, binding.port)
            other = seen.setdefault(socket, binding)
            if other.protocol != binding.protocol:
                raise ValueError(f"http and https cannot share {binding.address}:{binding.port}")
            if binding.host is None:
                if socket in default:
                    raise ValueError(
                        f"two bindings on {binding.address}:{binding.port} have no "
                        "host; give each a host (SNI name)"
                    )
                default.add(socket)
        return bindings

    @field_validator("virtual_directories")
    @classmethod
    def _unique_paths(cls, directories: list[VirtualDirectory]) -> list[VirtualDirectory]:
        seen: set[str] = set()
        for directory in directories:
            normal = directory.path.rstrip("/") or "/"
            if normal in seen:
                raise ValueError(f"two virtual directories have the path {normal}")
            seen.add(normal)
        return directories

    @field_validator("verify", mode="before")
    @classmethod
    def _verify_shorthand(cls, value: Any) -> Any:
        # `verify: true` asks for the defaults; `verify: false` for none.
        if value is True:
            return {}
        return None if value is False else value

    @property
    def companion_suffixes(self) -> tuple[str, ...]:
        """Files written beside the main config, named by replacing its extension (IIS has
        its PowerShell script beside the site XML)."""
        from provision.servers.registry import server

        return tuple(server(self.server).companions)


class Authority(Strict):
    """An internal CA kept in a folder of the controller (key 0600, certificate, serial)."""

    name: Identifier
    dir: str = Field(min_length=1)
    create: bool = False
    subject: Subject
    key: KeySpec = Field(default_factory=lambda: EcdsaKey(type="ecdsa", curve="p384"))
    validity_days: int = Field(default=3650, ge=1, le=36500)
    path_length: int | None = Field(default=None, ge=0)


BatchSize = Annotated[int, Field(ge=1)] | Annotated[str, Field(pattern=r"^\d+(\.\d+)?%$")]


class Playbook(Strict):
    name: str = Field(min_length=1)
    hosts: str = "all"
    certificates_dir: HostPath
    # Other playbooks (by name) this one shares its certificates directories with: each owns
    # its own outputs there (plan/state.py). Without it a directory has one owner.
    shared_with: list[str] = Field(default_factory=list)
    # Playbooks (by name) this one replaces in their certificates directories: it becomes the
    # owner, and their outputs it no longer writes are removed (the switch from a self-signed
    # playbook to an internal CA's, say). The replaced playbook is then refused there.
    takes_over: list[str] = Field(default_factory=list)
    # How many backup folders to keep; at least one: a replaced file is never lost.
    backups: int = Field(default=5, ge=1, le=100)
    # Rolling runs: hosts in batches of this size (a number, a percentage, or a list such as
    # [1, "10%", "50%"] whose last size repeats), and the failure rate that stops the run.
    serial: BatchSize | list[BatchSize] | None = None
    max_fail_percentage: float | None = Field(default=None, ge=0, le=100)
    authorities: list[Authority] = Field(default_factory=list)
    certificates: list[Certificate] = Field(default_factory=list)
    sites: list[Site] = Field(default_factory=list)

    def certificate(self, name: str) -> Certificate:
        return next(c for c in self.certificates if c.name == name)
