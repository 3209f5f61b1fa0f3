"""Licence documents: signing and parsing round trip, every kind of bad file refused with a plain
BadLicense, and problems() for every rule (dates, installation ids, modes that need auto-sync,
the highest version covered)."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from thinsync.errors import Invalid
from thinsync.licensing import document as lic
from thinsync.licensing.document import BadLicense

NOW = datetime(2030, 6, 15, 12, 0, tzinfo=UTC)
ME, PARTNER, STRANGER = "node-me-0001", "node-partner-02", "node-stranger-3"
KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()
TRUSTED = [lic.public_key_text(KEY.public_key())]


def fields(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "LIC-1",
        "mode": "standard",
        "terminals": 5,
        "installation_ids": [ME],
        "issued": (NOW - timedelta(days=1)).isoformat(),
        "expires": (NOW + timedelta(days=30)).isoformat(),
        "max_version": "1.0",
        "customer": "Plant 7",
    }
    base.update(changes)
    return base


def signed(key: Ed25519PrivateKey = KEY, **changes: Any) -> dict[str, Any]:
    return lic.sign(key, fields(**changes))


def parsed(**changes: Any) -> lic.License:
    return lic.parse(signed(**changes), TRUSTED)


def refused(document: Any, *words: str, trusted: list[str] | None = None) -> str:
    with pytest.raises(BadLicense) as caught:
        lic.parse(document, TRUSTED if trusted is None else trusted)
    exc = caught.value
    assert isinstance(exc, Invalid) and exc.status == 422 and exc.code == "bad_license"
    message = exc.message
    assert 10 < len(message) < 300 and "Traceback" not in message, message
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
    return message


def problems(
    licence: lic.License,
    *,
    now: datetime = NOW,
    node: str = ME,
    peers: list[str] | None = None,
    auto_sync: bool = False,
    version: str = "0.9.3",
) -> list[str]:
    return lic.problems(licence, now, node, peers or [], auto_sync, version)


# ---------------------------------------------------------------------------- round trip


def test_sign_then_parse_gives_back_every_field() -> None:
    document = signed(mode="enterprise", terminals=40, installation_ids=[ME, PARTNER])
    assert document["format"] == "thinsync-license" and document["format_version"] == lic.FORMAT_VERSION
    assert document["issuer"] == TRUSTED[0]
    licence = lic.parse(document, TRUSTED)
    assert licence.id == "LIC-1"
    assert licence.mode == "enterprise"
    assert licence.terminals == 40
    assert licence.installation_ids == (ME, PARTNER)
    assert licence.issued == NOW - timedelta(days=1)
    assert licence.expires == NOW + timedelta(days=30)
    assert licence.max_version == "1.0"
    assert licence.customer == "Plant 7"
    assert licence.issuer == TRUSTED[0]
    assert licence.document == document
    view = licence.view()
    assert view["installation_ids"] == [ME, PARTNER] and view["expires"] == (NOW + timedelta(days=30)).isoformat()
    assert json.loads(json.dumps(view)) == view


def test_a_file_survives_json_text_and_key_order_changes() -> None:
    """The signature covers the canonical form: reformatting the file does not break it."""
    document = signed()
    text = json.dumps(document, indent=4)
    reordered = json.loads(text)
    reordered["license"] = dict(reversed(list(reordered["license"].items())))
    assert lic.parse(reordered, TRUSTED).id == "LIC-1"


def test_any_of_several_trusted_issuers_is_accepted() -> None:
    trusted = [lic.public_key_text(OTHER_KEY.public_key()), *TRUSTED]
    assert lic.parse(signed(), trusted).issuer == TRUSTED[0]
    assert lic.parse(signed(OTHER_KEY), trusted).issuer == trusted[0]


def test_no_expiry_unlimited_terminals_and_no_installation_ids_are_allowed() -> None:
    licence = parsed(expires=None, terminals=None, installation_ids=[])
    assert licence.expires is None and licence.terminals is None and licence.installation_ids == ()
    assert licence.view()["expires"] is None


def test_dates_without_a_zone_are_utc_and_z_is_understood() -> None:
    licence = parsed(issued="2030-06-01T00:00:00", expires="2030-07-01T00:00:00Z")
    assert licence.issued == datetime(2030, 6, 1, tzinfo=UTC)
    assert licence.expires == datetime(2030, 7, 1, tzinfo=UTC)


# ---------------------------------------------------------------------------- bad files


def test_a_changed_field_breaks_the_signature() -> None:
    document = signed(terminals=5)
    document["license"]["terminals"] = 500
    refused(document, "signature is not valid", "changed")


def test_a_signature_by_another_key_under_a_trusted_issuer_name_is_refused() -> None:
    document = signed(OTHER_KEY)
    document["issuer"] = TRUSTED[0]
    refused(document, "signature is not valid")


def test_a_signature_that_is_not_base64_is_refused() -> None:
    document = signed()
    document["signature"] = "not base64 at all!"
    refused(document, "signature is not valid")


def test_a_truncated_signature_is_refused() -> None:
    document = signed()
    raw = base64.b64decode(document["signature"])
    document["signature"] = base64.b64encode(raw[:20]).decode()
    refused(document, "signature is not valid")


def test_an_unknown_issuer_is_refused_and_named_as_such() -> None:
    refused(signed(OTHER_KEY), "unknown issuer", "license_issuer_keys")


def test_with_no_trusted_issuers_every_licence_is_from_an_unknown_issuer() -> None:
    refused(signed(), "unknown issuer", trusted=[])


@pytest.mark.parametrize(
    "document",
    [None, "text", 42, [], ["format", "thinsync-license"], {}, {"format": "something-else", "license": {}}],
    ids=["null", "string", "number", "empty-list", "list", "empty-object", "other-format"],
)
def test_something_that_is_not_a_licence_file_is_refused(document: Any) -> None:
    refused(document, "not a thinsync licence file")


@pytest.mark.parametrize("version", [2, 99])
def test_a_future_format_version_is_refused_saying_what_this_version_reads(version: int) -> None:
    document = signed()
    document["format_version"] = version
    message = refused(document, f"format version {version}", f"reads up to {lic.FORMAT_VERSION}")
    assert "signature" not in message


@pytest.mark.parametrize("version", [None, "1", 1.0, [1]], ids=["missing", "string", "float", "list"])
def test_a_format_version_that_is_not_a_whole_number_is_refused(version: Any) -> None:
    document = signed()
    if version is None:
        del document["format_version"]
    else:
        document["format_version"] = version
    refused(document, "format version")


@pytest.mark.parametrize("missing", ["license", "issuer", "signature"])
def test_an_incomplete_file_is_refused(missing: str) -> None:
    document = signed()
    del document[missing]
    refused(document, "incomplete", missing)


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("mode", "platinum", ("mode 'platinum'", "standard", "mirrored", "redundant", "enterprise")),
        ("mode", None, ("mode",)),
        ("terminals", -1, ("terminal count", "whole number")),
        ("terminals", "5", ("terminal count",)),
        ("terminals", 2.5, ("terminal count",)),
        ("terminals", True, ("terminal count",)),
        ("installation_ids", "node-me-0001", ("installation ids", "list")),
        ("installation_ids", [ME, 7], ("installation ids",)),
        ("issued", "yesterday", ("issue date", "yesterday", "not a date")),
        ("issued", None, ("issue date",)),
        ("expires", "2030-13-45", ("expiry date", "not a date")),
        ("expires", 12345, ("expiry date",)),
        ("max_version", "one point two", ("version",)),
    ],
    ids=lambda v: str(v) if not isinstance(v, tuple) else "",
)
def test_a_field_of_the_wrong_shape_is_refused_plainly(field: str, value: Any, words: tuple[str, ...]) -> None:
    # Properly signed: the shape checks, not the signature, must catch these.
    refused(signed(**{field: value}), *words)


def test_null_optional_fields_read_as_empty_not_as_the_word_none() -> None:
    licence = parsed(id="LIC-9", max_version=None, customer=None)
    assert licence.max_version == "" and licence.customer == ""
    assert problems(licence) == []


def test_bad_license_is_a_422_with_a_stable_code() -> None:
    assert BadLicense.status == 422 and BadLicense.code == "bad_license"


# ---------------------------------------------------------------------------- problems()


def test_a_current_licence_for_this_server_has_no_problems() -> None:
    assert problems(parsed()) == []


def test_not_yet_valid() -> None:
    licence = parsed(issued=(NOW + timedelta(days=3)).isoformat())
    found = problems(licence)
    assert (
        len(found) == 1 and "not valid before" in found[0] and (NOW + timedelta(days=3)).date().isoformat() in found[0]
    )
    assert problems(licence, now=NOW + timedelta(days=3, seconds=1)) == []


def test_expired_and_the_moment_of_expiry() -> None:
    licence = parsed()
    expires = NOW + timedelta(days=30)
    assert problems(licence, now=expires - timedelta(seconds=1)) == []
    for moment in (expires, expires + timedelta(days=400)):
        found = problems(licence, now=moment)
        assert len(found) == 1 and found[0] == f"the licence expired on {expires.date().isoformat()}"
    assert lic.expiry_start(licence, expires - timedelta(seconds=1)) is None
    assert lic.expiry_start(licence, expires + timedelta(days=2)) == expires


def test_without_an_expiry_it_never_expires() -> None:
    licence = parsed(expires=None)
    assert problems(licence, now=NOW + timedelta(days=36500)) == []
    assert lic.expiry_start(licence, NOW + timedelta(days=36500)) is None


def test_not_yet_valid_is_not_an_expiry_for_the_grace_period() -> None:
    licence = parsed(issued=(NOW + timedelta(days=3)).isoformat())
    assert lic.expiry_start(licence, NOW) is None


def test_a_licence_for_other_installations_names_them_and_this_server() -> None:
    found = problems(parsed(installation_ids=[STRANGER]))
    assert len(found) == 1
    assert STRANGER in found[0] and ME in found[0] and "not this server" in found[0]


def test_a_standard_licence_without_installation_ids_is_good_anywhere() -> None:
    assert problems(parsed(installation_ids=[]), node=STRANGER) == []


@pytest.mark.parametrize(
    ("max_version", "version", "ok"),
    [
        ("1.0", "0.9.3", True),
        ("1.0", "1.0", True),
        ("1.0", "1.0.0", True),  # "1.0" covers every 1.0.x release
        ("1.0", "1.0.17", True),
        ("1.0", "1.1", False),
        ("1.0", "1.1.0", False),
        ("1.0", "2", False),
        ("1", "1.9.9", True),
        ("1.0.5", "1.0.4", True),
        ("1.0.5", "1.0.5", True),
        ("1.0.5", "1.0.6", False),
        ("1.2", "1.10", False),  # numeric, not text, comparison
        ("1.10", "1.9", True),
        ("0.1", "0.1.0", True),
        ("", "99.0", True),
    ],
)
def test_the_highest_version_covered(max_version: str, version: str, ok: bool) -> None:
    found = problems(parsed(max_version=max_version), version=version)
    if ok:
        assert found == []
    else:
        assert len(found) == 1 and f"up to {max_version}; this is {version}" in found[0]


@pytest.mark.parametrize("mode", sorted(lic.NEEDS_SYNC))
def test_sync_modes_need_auto_sync_on(mode: str) -> None:
    licence = parsed(mode=mode, installation_ids=[ME, PARTNER])
    assert problems(licence, peers=[PARTNER], auto_sync=True) == []
    found = problems(licence, peers=[PARTNER], auto_sync=False)
    assert len(found) == 1 and found[0] == f"a {mode} licence requires automatic synchronization, which is off"


@pytest.mark.parametrize("mode", sorted(lic.NEEDS_SYNC))
@pytest.mark.parametrize("ids", [[], [ME], [ME, ME]], ids=["none", "only-me", "me-twice"])
def test_sync_modes_need_both_installation_ids(mode: str, ids: list[str]) -> None:
    found = problems(parsed(mode=mode, installation_ids=ids), peers=[PARTNER], auto_sync=True)
    assert len(found) == 1, found
    assert f"a {mode} licence must name both servers" in found[0]
    assert ME in found[0] and PARTNER in found[0]


@pytest.mark.parametrize("mode", sorted(lic.NEEDS_SYNC))
def test_sync_modes_must_name_the_actual_partner(mode: str) -> None:
    found = problems(parsed(mode=mode, installation_ids=[ME, STRANGER]), peers=[PARTNER], auto_sync=True)
    assert len(found) == 1 and "both servers" in found[0] and f"partner {PARTNER}" in found[0]


@pytest.mark.parametrize("mode", sorted(lic.NEEDS_SYNC))
def test_sync_modes_unpaired_and_one_id_report_both_problems(mode: str) -> None:
    found = problems(parsed(mode=mode, installation_ids=[ME]), auto_sync=False)
    assert len(found) == 2
    assert "requires automatic synchronization" in found[0]
    assert "must name both servers" in found[1] and "partner" not in found[1]


def test_a_standard_licence_does_not_need_auto_sync_or_a_partner() -> None:
    assert problems(parsed(mode="standard"), auto_sync=False) == []
    assert problems(parsed(mode="standard"), peers=[PARTNER], auto_sync=True) == []


def test_every_problem_is_reported_at_once() -> None:
    licence = parsed(
        mode="mirrored",
        installation_ids=[STRANGER],
        issued=(NOW + timedelta(days=1)).isoformat(),
        expires=(NOW - timedelta(days=1)).isoformat(),
        max_version="0.1",
    )
    found = problems(licence, peers=[PARTNER], auto_sync=False, version="0.2")
    joined = " | ".join(found)
    assert len(found) == 6, found
    for words in (
        "not valid before",
        "expired on",
        "not this server",
        "covers thinsync up to 0.1",
        "requires automatic synchronization",
        "must name both servers",
    ):
        assert words in joined


def test_parse_does_not_change_the_document() -> None:
    document = signed()
    before = copy.deepcopy(document)
    lic.parse(document, TRUSTED)
    assert document == before
