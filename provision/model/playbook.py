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


_ROTATE = (
    "always (the default): a new key whenever the certificate is issued again; never: keep "
    "the key unless the key itself is the problem (missing, damaged, another type or size)."
)


class RsaKey(Strict):
    """An RSA key pair."""

    type: Literal["rsa"]
    """rsa: an RSA key, which every client accepts."""
    size: Literal[2048, 3072, 4096] = 2048
    """The modulus in bits; 2048 by default (`provision lint` asks for 3072 or more)."""
    rotate: Rotate = Field(default="always", description=_ROTATE)

    @property
    def label(self) -> str:
        return f"rsa-{self.size}"


class EcdsaKey(Strict):
    """An ECDSA key pair: smaller and faster than RSA at the same strength."""

    type: Literal["ecdsa"]
    """ecdsa: an elliptic-curve key."""
    curve: Literal["p256", "p384"] = "p256"
    """The NIST curve: p256 (the default) or p384."""
    rotate: Rotate = Field(default="always", description=_ROTATE)

    @property
    def label(self) -> str:
        return f"ecdsa-{self.curve}"


class Ed25519Key(Strict):
    """An Ed25519 key pair (most browsers do not accept Ed25519 certificates yet)."""

    type: Literal["ed25519"]
    """ed25519: an Edwards-curve key."""
    rotate: Rotate = Field(default="always", description=_ROTATE)

    @property
    def label(self) -> str:
        return "ed25519"


KeySpec = Annotated[RsaKey | EcdsaKey | Ed25519Key, Field(discriminator="type")]


class Subject(Strict):
    """The distinguished name a certificate is issued to; every part is optional."""

    common_name: str | None = Field(default=None, min_length=1, max_length=64)
    """CN: usually the host's FQDN. Clients check `names`, not this."""
    organization: str | None = Field(default=None, min_length=1, max_length=64)
    """O: the organisation."""
    organizational_unit: str | None = Field(default=None, min_length=1, max_length=64)
    """OU: the department."""
    locality: str | None = Field(default=None, min_length=1, max_length=128)
    """L: the city."""
    state: str | None = Field(default=None, min_length=1, max_length=128)
    """ST: the state or province."""
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    """C: the two-letter ISO 3166 country code, in capitals (US, DE)."""


class SecretRef(Strict):
    """Where a password comes from: an environment variable or a file, never the playbook."""

    env: str | None = None
    """The environment variable holding the password (set where provision runs)."""
    file: str | None = None
    """A file holding the password (a trailing newline is not part of it), relative to the
    playbook's folder."""

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' or 'file'")
        return self


Password = SecretRef | SecretStr


class SelfSignedSource(Strict):
    """Issued on each host's behalf and signed with its own key."""

    type: Literal["self-signed"]
    """self-signed: the certificate is its own root (write it as the DER root clients trust)."""


class CaSource(Strict):
    """Issued by an internal CA of the playbook (`authorities`)."""

    type: Literal["ca"]
    """ca: signed by one of the playbook's authorities."""
    authority: Identifier
    """The `name` of the authority that signs it."""


class ProvidedSource(Strict):
    """Issued by a third-party CA and supplied as files on the controller: provision checks
    them (key, chain to a root, names, validity) and installs them; it never issues them."""

    type: Literal["provided"]
    """provided: files a CA issued, supplied on the controller."""
    certificate: str
    """The certificate file (PEM, DER, PKCS#7 or PKCS#12), relative to the playbook's folder;
    may hold the chain and the key too. May be a template (files/{{ host.name }}.cer). Without
    `key`, it is the file the CA's answer to `provision csr` is saved as."""
    key: str | None = None
    """The private key file. Leave it out to keep the key on the host: `provision csr` writes
    a request for the CA, and apply installs the certificate once it is saved."""
    chain: str | None = None
    """A file of intermediate certificates, when `certificate` does not hold them."""
    root: str | None = None
    """The root CA's certificate, when neither `certificate` nor `chain` holds it."""
    password: Password | None = None
    """The password of the supplied files (an encrypted key or a PKCS#12): {env: VAR} or
    {file: PATH}."""


class Eab(Strict):
    """External account binding: the key identifier and HMAC key a CA hands out (ZeroSSL,
    Google, step-ca with EAB), for CAs that refuse accounts without one."""

    kid: str = Field(min_length=1)
    """The key identifier the CA gave."""
    hmac_key: SecretRef
    """The base64url HMAC key: {env: VAR} or {file: PATH}, never in the playbook."""


class DnsHook(Strict):
    """Commands run on the controller to publish and remove a DNS-01 TXT record. They see
    PROVISION_ACME_NAME (_acme-challenge.NAME.), PROVISION_ACME_VALUE (the TXT value),
    PROVISION_ACME_DOMAIN, and lego's and certbot's names for the same (CERTBOT_DOMAIN,
    CERTBOT_VALIDATION)."""

    set: str = Field(min_length=1)
    """A shell command that publishes the record."""
    clear: str = Field(min_length=1)
    """A shell command that removes it."""


class AcmeSource(Strict):
    """Issued by an ACME (RFC 8555) CA: Let's Encrypt, step-ca, Pebble."""

    type: Literal["acme"]
    """acme: ordered from an ACME CA at apply time."""
    directory: str = Field(pattern=r"^https://[^\s]+$")
    """The CA's directory URL (https)."""
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    """The account's contact e-mail."""
    accept_terms: bool = False
    """You accept the CA's terms of service (required by most CAs)."""
    eab: Eab | None = None
    """External account binding, for CAs that require one."""
    challenge: Literal["http-01", "dns-01"] = "dns-01"
    """How names are proven: dns-01 (a TXT record set by `dns_hook`) or http-01 (a file the
    sites that bind the certificate serve under /.well-known/acme-challenge/)."""
    http_port: int = Field(default=80, ge=1, le=65535)
    """http-01: the port the CA fetches the challenge from on each name. Every public CA uses
    80; only a test CA (Pebble) can be told another. The sites that bind the certificate
    serve the challenge on their http bindings of this port, and get one when they have none."""
    dns_hook: DnsHook | None = None
    """The commands that set and clear the TXT record (dns-01)."""
    resolvers: list[str] = Field(default_factory=list)
    """ADDRESS:PORT of the DNS servers that must see the TXT record before the CA is asked
    to look (dns-01); the system's resolvers when left out."""
    propagation_timeout: int = Field(default=120, ge=0, le=3600)
    """How long to wait, in seconds, for the record to be visible; 0: do not look (the hook
    waits for its DNS itself)."""
    ca_bundle: str | None = None
    """A PEM file of the roots the directory's TLS certificate chains to, relative to the
    playbook's folder (a private CA's directory); REQUESTS_CA_BUNDLE is honoured too."""
    account_dir: str | None = None
    """The controller folder of the account key (0600), relative to the playbook's folder;
    default acme/HOST-OF-DIRECTORY."""
    profile: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$")
    """A certificate profile the CA's directory offers (meta.profiles), such as Let's
    Encrypt's `tlsserver` or `shortlived`; the CA's default when left out."""
    preferred_chain: str | None = Field(default=None, min_length=1)
    """The common name of the issuer at the top of the chain to install, chosen among the
    chains the CA offers (certbot's --preferred-chain); the CA's default when none matches."""

    @model_validator(mode="after")
    def _challenge_needs(self) -> AcmeSource:
        if self.challenge == "dns-01" and self.dns_hook is None:
            raise ValueError("challenge dns-01 needs 'dns_hook' {set: COMMAND, clear: COMMAND}")
        return self


Source = Annotated[
    SelfSignedSource | CaSource | ProvidedSource | AcmeSource, Field(discriminator="type")
]

Format = Literal["der", "pem", "pkcs7", "pkcs12"]
# certificate: the leaf; chain: the intermediates; fullchain: leaf and intermediates (what a
# web server sends); fullpath: leaf, intermediates and root (Windows' "include all
# certificates in the certification path"); root: the root; key: the private key.
Content = Literal["certificate", "chain", "fullchain", "fullpath", "root", "key"]

# Which contents each encoding can carry; DER holds one object, PKCS#7 only certificates.
_CONTENTS_BY_FORMAT: dict[str, set[str]] = {
    "der": {"certificate", "root", "key"},
    "pem": {"certificate", "chain", "fullchain", "fullpath", "root", "key"},
    "pkcs7": {"certificate", "chain", "fullchain", "fullpath", "root"},
}


class Output(Strict):
    """One file written into the certificates directory."""

    file: str = Field(min_length=1)
    """The file's name, relative to `certificates_dir` (folders allowed; no .. and no
    absolute path)."""
    format: Format
    """The encoding: der, pem, pkcs7 (.p7b) or pkcs12 (.pfx, which holds key, certificate and
    chain together)."""
    content: Content | None = None
    """What the file holds, such as certificate, fullchain (the certificate and its chain) or
    key; not for pkcs12, which holds everything. Which contents each format can carry is
    checked at validation."""
    password: Password | None = None
    """The password of a pkcs12 output (required there, refused elsewhere): {env: VAR} or
    {file: PATH}."""
    friendly_name: str | None = None
    """The name Windows shows for a pkcs12 output's certificate."""
    profile: Literal["modern", "legacy"] = "modern"
    """A pkcs12 output's encryption: modern (AES-256, SHA-256) or legacy (3DES, SHA-1) for
    Windows Server 2016 and older."""

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
        return self.format == "pkcs12" or self.content in ("certificate", "fullchain", "fullpath")


class Certificate(Strict):
    """A certificate and its key, issued or installed on each host, and the files written."""

    name: Identifier
    """The certificate's name: sites bind it by this name (letters, digits, . _ -)."""
    source: Source
    """Where it comes from: self-signed, ca (an internal CA of the playbook), provided (files
    a third-party CA issued) or acme (ordered from an ACME CA)."""
    key: KeySpec = Field(default_factory=lambda: RsaKey(type="rsa"))
    """The key pair: {type: rsa, size: ...}, {type: ecdsa, curve: ...} or {type: ed25519}; RSA
    2048 when left out."""
    subject: Subject | None = None
    """The subject's distinguished name."""
    names: list[CertificateName] = Field(default_factory=list)
    """The DNS names (a wildcard as the whole leftmost label) and IP addresses it covers,
    written as subject alternative names; clients check these."""
    # renew_before_days comes first so that validity_days' own check can see it, and an
    # error points at the validity_days line.
    renew_before_days: int = Field(default=30, ge=0)
    """Renew this many days before it expires (default 30)."""
    validity_days: int | None = Field(default=None, ge=1, le=36500)
    """How long a certificate issued here is valid, in days; longer than renew_before_days.
    Required for self-signed and ca sources; a provided certificate has its own."""
    outputs: list[Output] = Field(min_length=1)
    """The files written; they must include the private key and the certificate."""

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
        issued_here = isinstance(self.source, SelfSignedSource | CaSource)
        if issued_here:
            if self.validity_days is None:
                raise ValueError("'validity_days' is required for a certificate issued here")
            if self.subject is None and not self.names:
                raise ValueError("give a 'subject' or 'names' (a certificate must name something)")
        if isinstance(self.source, AcmeSource) and not self.names:
            raise ValueError("an acme certificate needs 'names' (the names the CA validates)")
        if isinstance(self.source, AcmeSource) and self.key.type == "ed25519":
            raise ValueError("ACME CAs do not issue for ed25519 keys; use rsa or ecdsa")
        if isinstance(self.source, AcmeSource) and any(o.content == "root" for o in self.outputs):
            raise ValueError(
                "an acme certificate has no root output: the CA sends the chain, not its root"
            )
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
                "outputs must include the certificate (content: certificate, fullchain or "
                "fullpath, or format: pkcs12)"
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
    """An address and port the site listens on, and for https the certificate it serves."""

    protocol: Literal["https", "http"] = "https"
    """https (the default) or http."""
    address: Annotated[str, AfterValidator(_listen_address)] = "*"
    """The IP address to listen on; * (the default) for every address."""
    port: int = Field(ge=1, le=65535)
    """The TCP port."""
    host: CertificateName | None = None
    """The host name this binding answers (SNI for https); without it, every name no other
    binding of the address and port claims."""
    certificate: Identifier | None = None
    """The `name` of the certificate an https binding serves (http bindings take none)."""
    redirect_to_https: bool = False
    """For an http binding: answer every request with a permanent redirect to https."""

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
    """A URL path of the site, served from a folder on the host or proxied to a backend."""

    path: str = Field(pattern=r"^/[^\s;{}\"'#]*$")
    """The URL path, starting with / (/ itself is the site's root). nginx, Apache and HAProxy
    match it in the case written unless the site sets case_insensitive_paths; IIS ignores
    case."""
    application: str | None = None
    """What is served there, as a comment in the config."""
    physical_path: HostPath | None = None
    """The folder on the host served at `path` (give this or proxy_to). IIS makes it an
    application."""
    proxy_to: str | None = Field(default=None, pattern=r"^https?://[^\s;{}\"']+$")
    """An http:// or https:// URL requests under `path` are passed to, the path replaced by
    the URL's (give this or physical_path)."""

    @model_validator(mode="after")
    def _one_target(self) -> VirtualDirectory:
        if (self.physical_path is None) == (self.proxy_to is None):
            raise ValueError("give exactly one of 'physical_path' or 'proxy_to'")
        return self


class Verify(Strict):
    """After apply, connect to each name and check the served certificate (issue: bindings
    not updated after a renewal is what operators complain about most)."""

    # `provision verify` checks every site; these narrow what it checks of this one.
    names: list[CertificateName] | None = Field(default=None, min_length=1)
    """The names to connect as (SNI); default: every name a client may use for each https
    binding (the binding's host, its address, the certificate's names)."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """The port to connect to; default: every https binding's port (with `names`, the first
    https binding's)."""
    address: str | None = None
    """The address to connect to; default: the binding's own address, else the host's
    inventory address."""


def _known_servers(schema: dict[str, Any]) -> None:
    # The schema's enum is the registry's list, so a new server module shows up in editors.
    from provision.servers.registry import names

    schema["enum"] = names()


class Site(Strict):
    """A web server's site on each host: its config file, bindings and virtual directories."""

    name: str = Field(min_length=1)
    """The site's name (IIS: the site in IIS Manager; Default Web Site is IIS's own)."""
    # One of the servers in provision/servers/ (servers/registry.py), checked below.
    server: str = Field(default="nginx", json_schema_extra=_known_servers)
    """The web server: nginx (the default), apache, iis or haproxy."""
    config: HostPath
    """The file on the host the site's configuration is rendered to (files the server needs
    beside it take the same name with their own extension)."""
    template: HostPath | None = None
    """A Jinja2 template replacing the server's default: a name under templates/ beside the
    playbook (or its parent), or a path."""
    bindings: list[Binding] = Field(min_length=1)
    """The addresses and ports the site listens on."""
    virtual_directories: list[VirtualDirectory] = Field(default_factory=list)
    """The URL paths the site serves."""
    case_insensitive_paths: bool = False
    """Serve each virtual directory whatever the case of the request's path (/ccmadmin/ as
    /CCMAdmin/), as IIS always does; for nginx and Apache sites."""
    reload: bool = True
    """After writing the config or a certificate it uses: test the config, then reload the
    server (false: write files only)."""
    test_command: str | None = None
    """The command that checks the config before a reload (default: the server's own, such as
    nginx -t); a failure restores the previous files."""
    reload_command: str | None = None
    """The command that reloads the server (default: the server's own, such as
    nginx -s reload)."""
    verify: Verify | None = None
    """After apply, connect over TLS and check that every name is served the certificate
    just written: true for the defaults, or {names, port, address}."""
    # The mode of the rendered config and its companions on the host, brought back when it
    # drifts (a config anyone can rewrite is a config anyone controls).
    mode: FileMode = 0o644
    """The permission bits of the rendered files ('0644' by default; never world-writable)."""

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

        kind = server(self.server)
        if self.case_insensitive_paths and not (
            kind.paths_ignore_case or kind.case_insensitive_option
        ):
            raise ValueError(
                f"case_insensitive_paths is for nginx and Apache sites: {self.server} matches "
                "paths as written, and its templates cannot serve them in any case"
            )
        if self.case_insensitive_paths or kind.paths_ignore_case:
            _unique_ignoring_case(self.virtual_directories)
        kind.check_site(self)
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


def _unique_ignoring_case(directories: list[VirtualDirectory]) -> None:
    """Where paths match in any case, /CCMAdmin and /ccmadmin are one directory: two of them
    would make requests for either go to whichever the server happened to check first."""
    seen: dict[str, str] = {}
    for directory in directories:
        normal = directory.path.rstrip("/") or "/"
        other = seen.setdefault(normal.casefold(), normal)
        if other != normal:
            raise ValueError(
                f"virtual directories {other} and {normal} differ only in case, which makes "
                "them one where paths match in any case (IIS, or case_insensitive_paths)"
            )


class AuthorityCrl(Strict):
    """Where an internal CA publishes its certificate revocation list, and what its leaves
    say about it."""

    dir: str = Field(min_length=1)
    """The folder on the controller the CRL is written to, as `crl.der` and `crl.pem`
    (relative to the playbook's folder); serve or copy it from there."""
    url: str | None = Field(default=None, pattern=r"^(https?|ldap)://\S+$")
    """The CRL distribution point the leaves issued from now on carry (http(s) or ldap URL);
    none: leaves name no distribution point."""
    next_update_days: int = Field(default=7, ge=1, le=365)
    """How long each CRL is current (its nextUpdate, in days; default 7); apply republishes
    it when half of that has passed."""
    host_dir: HostPath | None = None
    """A folder on each host of the playbook the CRL is copied to, as `crl.der` and
    `crl.pem` (for a web server or proxy that checks revocation), absolute or relative to the
    certificates directory; none: the controller only."""


class Authority(Strict):
    """An internal CA kept in a folder of the controller (key 0600, certificate, serial)."""

    name: Identifier
    """The authority's name: a certificate's `source: {type: ca, authority: NAME}` names it."""
    dir: str = Field(min_length=1)
    """The CA's folder on the controller, relative to the playbook's folder; keep it out of
    version control (it holds the CA's key)."""
    create: bool = False
    """Create the CA in `dir` on the first apply when it is not there (false: it must exist)."""
    subject: Subject
    """The CA certificate's distinguished name."""
    key: KeySpec = Field(default_factory=lambda: EcdsaKey(type="ecdsa", curve="p384"))
    """The CA's key pair; ECDSA P-384 when left out."""
    validity_days: int = Field(default=3650, ge=1, le=36500)
    """How long the CA certificate created here is valid, in days (default 3650)."""
    path_length: int | None = Field(default=None, ge=0)
    """How many CAs may stand below this one (basic constraints pathLen); none: no limit."""
    crl: AuthorityCrl | None = None
    """Publish a certificate revocation list (replaced and revoked leaves), and name it in
    the leaves issued; none: no CRL."""


class TrustRoot(Strict):
    """A root certificate to trust: exactly one of `authority` (an internal authority of this
    playbook), `file` (a root supplied as a PEM or DER file on the controller) or
    `self_signed_of` (the self-signed certificates of other hosts of the run)."""

    authority: Identifier | None = None
    """The name of an internal authority (`authorities[]`) whose certificate is the root."""
    file: str | None = None
    """A root certificate file on the controller (PEM, which may hold several roots, or DER),
    relative to the playbook's folder: a third party's root, or another tool's CA."""
    self_signed_of: str | None = Field(default=None, min_length=1)
    """An Ansible host pattern (a group, names, globs): the self-signed certificates those
    hosts of the run hold are roots (each host trusts its peers' own certificates)."""
    certificate: CertificateName | None = None
    """With `self_signed_of`: which certificate of those hosts (a self-signed one); every
    self-signed certificate they hold when left out."""

    @model_validator(mode="after")
    def _exactly_one(self) -> TrustRoot:
        given = [self.authority, self.file, self.self_signed_of]
        if sum(value is not None for value in given) != 1:
            raise ValueError("give exactly one of 'authority', 'file' or 'self_signed_of'")
        if self.certificate is not None and self.self_signed_of is None:
            raise ValueError("'certificate' goes with 'self_signed_of'")
        return self


class BundleStore(Strict):
    """A plain PEM bundle file, for applications that read one (curl --cacert, Python's
    SSL_CERT_FILE, a proxy's CA file)."""

    type: Literal["bundle"]
    """`bundle`: a PEM file of the roots, owned and rewritten whole by provision."""
    path: HostPath
    """The bundle's absolute path on the host; provision owns the file (it rewrites it)."""
    mode: FileMode = 0o644
    """The bundle's mode ("0644" by default: roots are public)."""


class DebianStore(Strict):
    """The system store of Debian and Ubuntu: one `.crt` file per root in
    `/usr/local/share/ca-certificates`, then `update-ca-certificates`."""

    type: Literal["debian"]
    """`debian`: files in the local certificates folder, then the update command."""
    dir: HostPath = "/usr/local/share/ca-certificates"
    """The folder of local roots (`/usr/local/share/ca-certificates` by default); each root
    provision adds is `provision-TRUST-FINGERPRINT.crt` there."""
    update_command: str = Field(default="update-ca-certificates", min_length=1)
    """The command run on the host after roots were added or removed
    (`update-ca-certificates` by default)."""


class RhelStore(Strict):
    """The system store of RHEL, Fedora and their kin: one file per root in
    `/etc/pki/ca-trust/source/anchors`, then `update-ca-trust extract`."""

    type: Literal["rhel"]
    """`rhel`: files in the anchors folder, then the update command."""
    dir: HostPath = "/etc/pki/ca-trust/source/anchors"
    """The anchors folder (`/etc/pki/ca-trust/source/anchors` by default); each root
    provision adds is `provision-TRUST-FINGERPRINT.crt` there."""
    update_command: str = Field(default="update-ca-trust extract", min_length=1)
    """The command run on the host after roots were added or removed
    (`update-ca-trust extract` by default)."""


class NssStore(Strict):
    """An NSS database (Firefox, Chromium and Thunderbird on Linux, `/etc/pki/nssdb`):
    roots added with `certutil -A -t C,,` and removed with `certutil -D`."""

    type: Literal["nss"]
    """`nss`: an NSS database in SQL format, changed with certutil."""
    database: HostPath
    """The database's folder on the host (`sql:` is added): `/etc/pki/nssdb`, or a user's
    `~/.pki/nssdb`."""
    certutil: str = Field(default="certutil", min_length=1)
    """The certutil program to run (`certutil` by default, from `libnss3-tools` or
    `nss-tools`)."""


class JavaStore(Strict):
    """A Java truststore: a PKCS#12 file of trusted certificates, written directly (no
    keytool on the host); entries provision did not add are kept."""

    type: Literal["java"]
    """`java`: a PKCS#12 truststore file."""
    path: HostPath
    """The truststore's absolute path on the host (the JVM's `javax.net.ssl.trustStore`)."""
    password: Password | None = None
    """The truststore's password ({env: VAR}, {file: PATH} or a vaulted value); `changeit`,
    what Java expects of a truststore, when left out."""
    mode: FileMode = 0o644
    """The truststore's mode ("0644" by default)."""


class WindowsStore(Strict):
    """The Windows machine store `Cert:\\LocalMachine\\Root`: a rendered PowerShell script
    that imports the roots and removes those provision added and no longer lists, run on
    the Windows host as an IIS site's script is (docs/windows.md)."""

    type: Literal["windows"]
    """`windows`: a PowerShell script for the machine's Trusted Root store."""
    script: HostPath
    """Where the script is written on the host (an absolute path)."""


TrustStore = Annotated[
    BundleStore | DebianStore | RhelStore | NssStore | JavaStore | WindowsStore,
    Field(discriminator="type"),
]


class Trust(Strict):
    """Which roots go into which trust stores on the playbook's hosts."""

    name: Identifier
    """A name for this set of roots, as the plan shows it."""
    roots: list[TrustRoot] = Field(min_length=1)
    """The roots to trust."""
    stores: list[TrustStore] = Field(min_length=1)
    """The stores that hold them on each host."""


BatchSize = Annotated[int, Field(ge=1)] | Annotated[str, Field(pattern=r"^\d+(\.\d+)?%$")]


class Playbook(Strict):
    """Which hosts, the certificates they hold and the sites that serve them."""

    name: str = Field(min_length=1)
    """The playbook's name: recorded as the owner of each certificates directory it writes."""
    hosts: str = "all"
    """Which hosts of the inventory: an Ansible host pattern (a group, names, globs,
    !exclude, &intersect, comma lists); all by default."""
    certificates_dir: HostPath
    """The folder on each host the outputs are written to, with its backups and state."""
    # Whoever can write into it can plant files and links there (0750: the web server's
    # group may read, no one else may write).
    certificates_dir_mode: FileMode = 0o750
    """The certificates directory's mode ("0750" by default; never world-writable), brought
    back when it drifts."""
    # Other playbooks (by name) this one shares its certificates directories with: each owns
    # its own outputs there (plan/state.py). Without it a directory has one owner.
    shared_with: list[str] = Field(default_factory=list)
    """Other playbooks (by name) that write into the same certificates directories; both must
    list each other, and their files must differ."""
    # Playbooks (by name) this one replaces in their certificates directories: it becomes the
    # owner, and their outputs it no longer writes are removed (the switch from a self-signed
    # playbook to an internal CA's, say). The replaced playbook is then refused there.
    takes_over: list[str] = Field(default_factory=list)
    """Playbooks (by name) this one replaces in their certificates directories: it becomes
    the owner and removes their outputs it does not write."""
    # How many backup folders to keep; at least one: a replaced file is never lost.
    backups: int = Field(default=5, ge=1, le=100)
    """How many backups of replaced files to keep per host (1 to 100, default 5)."""
    # Rolling runs: hosts in batches of this size (a number, a percentage, or a list such as
    # [1, "10%", "50%"] whose last size repeats), and the failure rate that stops the run.
    serial: BatchSize | list[BatchSize] | None = None
    """Apply in batches of hosts: a number, a percentage ("25%"), or a list of them whose
    last size repeats ([1, "10%", "50%"]); all hosts at once when left out."""
    max_fail_percentage: float | None = Field(default=None, ge=0, le=100)
    """Stop the run when more than this percentage of a batch's hosts failed."""
    authorities: list[Authority] = Field(default_factory=list)
    """Internal CAs, kept on the controller, that sign `ca` certificates."""
    certificates: list[Certificate] = Field(default_factory=list)
    """The certificates each host holds."""
    sites: list[Site] = Field(default_factory=list)
    """The web-server sites each host serves."""
    trust: list[Trust] = Field(default_factory=list)
    """Roots to install in trust stores on each host: system stores, NSS databases, Java
    truststores, Windows, PEM bundles (docs/trust.md)."""

    def certificate(self, name: str) -> Certificate:
        return next(c for c in self.certificates if c.name == name)
