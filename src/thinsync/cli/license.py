"""`thinsync license show|install|issue|keygen`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from thinsync.cli.client import Api, CliError
from thinsync.cli.output import emit_json, show_object
from thinsync.cli.remote import remote
from thinsync.licensing.document import MODES, public_key_text, sign


@click.group("license", help="Show or install the licence; issue licences with your own key.")
def license_group() -> None:
    pass


@license_group.command("show", help="Show the installed licence and its state.")
@remote
def show(api: Api, as_json: bool) -> None:
    status = api.request("GET", "/api/v1/license")
    if as_json:
        emit_json(status)
    else:
        show_object(status)


@license_group.command("install", help="Install a signed licence file (it replicates to the partner).")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@remote
def install(api: Api, as_json: bool, file: str) -> None:
    try:
        document = json.loads(Path(file).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CliError(f"{file} is not a licence file (not JSON): {exc}", 2) from exc
    status = api.request("PUT", "/api/v1/license", json=document)
    if as_json:
        emit_json(status)
    else:
        click.echo(f"licence {status.get('id')} installed: {status.get('mode')}, state {status.get('state')}")


@license_group.command("keygen", help="Make an issuer key pair: the private key file, and the public key to trust.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="where to write the private key (PEM)")
def keygen(out: str) -> None:
    key = Ed25519PrivateKey.generate()
    path = Path(out)
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    path.chmod(0o600)
    click.echo(
        f"private key written to {out}; trust this public key on the servers "
        f"(setting license_issuer_keys):\n{public_key_text(key.public_key())}"
    )


@license_group.command("issue", help="Sign a licence with an issuer's private key (for sites that issue their own).")
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--mode", type=click.Choice(MODES), required=True)
@click.option("--terminals", type=click.IntRange(0, 1_000_000), help="licensed terminals (unlimited when left out)")
@click.option("--installation-id", "ids", multiple=True, help="a server's node id (repeat for both servers)")
@click.option("--days", type=click.IntRange(1, 36500), help="valid for this many days (no expiry when left out)")
@click.option("--max-version", default="", help="the highest thinsync version it covers")
@click.option("--customer", default="")
@click.option("--id", "licence_id", help="licence id (random when left out)")
@click.option("--out", type=click.Path(dir_okay=False), help="write here instead of standard output")
def issue(
    key_file: str,
    mode: str,
    terminals: int | None,
    ids: tuple[str, ...],
    days: int | None,
    max_version: str,
    customer: str,
    licence_id: str | None,
    out: str | None,
) -> None:
    import secrets

    key = load_pem_private_key(Path(key_file).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise CliError(f"{key_file} is not an Ed25519 private key", 2)
    now = datetime.now(UTC).replace(microsecond=0)
    fields = {
        "id": licence_id or secrets.token_hex(6),
        "mode": mode,
        "terminals": terminals,
        "installation_ids": list(ids),
        "issued": now.isoformat(),
        "expires": (now + timedelta(days=days)).isoformat() if days else None,
        "max_version": max_version,
        "customer": customer,
    }
    text = json.dumps(sign(key, fields), indent=2, sort_keys=True)
    if out:
        Path(out).write_text(text + "\n", encoding="utf-8")
        click.echo(f"licence {fields['id']} written to {out}")
    else:
        click.echo(text)
