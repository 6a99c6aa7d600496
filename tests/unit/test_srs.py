"""``protocol/srs.py``: SRS0/SRS1 rewriting and decoding, hash and age checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailserver.protocol.srs import SrsCodec, SrsError, is_srs

DAY = 86400.0
NOW = 20_000 * DAY + 3600  # a day number past 1024, so the stamp wraps
codec = SrsCodec(b"a secret of ours")


def test_srs0_round_trip_and_shape() -> None:
    rewritten = codec.forward("alice@origin.example", "fwd.example", NOW)
    local, domain = rewritten.split("@")
    assert domain == "fwd.example" and is_srs(local)
    kind, hash_, stamp, orig_domain, orig_local = local.split("=")
    assert (kind, len(hash_), len(stamp), orig_domain, orig_local) == (
        "SRS0", 4, 2, "origin.example", "alice")
    assert codec.reverse(rewritten, NOW) == "alice@origin.example"
    # A relay that lower-cased the whole address does not break it.
    assert codec.reverse(rewritten.lower(), NOW) == "alice@origin.example"


def test_null_reverse_path_stays_null() -> None:
    assert codec.forward("", "fwd.example", NOW) == ""


def test_age_limit_and_clock_skew() -> None:
    rewritten = codec.forward("bob@origin.example", "fwd.example", NOW)
    assert codec.reverse(rewritten, NOW + 21 * DAY) == "bob@origin.example"
    with pytest.raises(SrsError, match="expired"):
        codec.reverse(rewritten, NOW + 22 * DAY)
    assert codec.reverse(rewritten, NOW - DAY) == "bob@origin.example"  # stamped "tomorrow"


def test_forged_or_foreign_addresses_are_refused() -> None:
    rewritten = codec.forward("carol@origin.example", "fwd.example", NOW)
    local, _ = rewritten.split("@")
    forged = local.replace("carol", "mallory") + "@fwd.example"
    for bad in (forged, rewritten.replace(local.split("=")[1], "AAAA"),
                "SRS0=xxxx@fwd.example", "SRS0=abcd=ZZ=@fwd.example", "alice@fwd.example",
                "SRS1=abcd=hop@fwd.example"):
        with pytest.raises(SrsError):
            codec.reverse(bad, NOW)
    with pytest.raises(SrsError):
        SrsCodec(b"another secret").reverse(rewritten, NOW)


def test_srs1_chains_onto_a_previous_forwarder() -> None:
    first = SrsCodec(b"the first hop's secret")
    hop1 = first.forward("dave@origin.example", "first.example", NOW)
    hop2 = codec.forward(hop1, "fwd.example", NOW)
    assert hop2.startswith("SRS1=") and "=first.example==" in hop2
    # A bounce to us goes back to the first forwarder, which decodes the rest.
    back = codec.reverse(hop2, NOW)
    assert back == hop1
    assert first.reverse(back, NOW) == "dave@origin.example"
    # A third forwarder keeps the first hop.
    hop3 = SrsCodec(b"third").forward(hop2, "third.example", NOW)
    assert "=first.example==" in hop3 and SrsCodec(b"third").reverse(hop3, NOW) == hop1


def test_our_own_srs_address_is_not_rewritten_again() -> None:
    ours = codec.forward("erin@origin.example", "fwd.example", NOW)
    assert codec.forward(ours, "fwd.example", NOW) == ours


_LOCAL = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789.-_+=!#"),
                 min_size=1, max_size=30)
_DOMAIN = st.from_regex(r"[a-z0-9]{1,12}(\.[a-z0-9]{1,12}){1,3}", fullmatch=True)


@given(_LOCAL, _DOMAIN, st.floats(min_value=0, max_value=4e9))
def test_any_address_round_trips(local: str, domain: str, now: float) -> None:
    address = f"{local}@{domain}"
    rewritten = codec.forward(address, "fwd.example", now)
    if is_srs(local):
        return  # an SRS-looking sender: chained or kept, checked above
    assert codec.reverse(rewritten, now) == address


@given(st.text(max_size=80))
def test_reverse_never_crashes(text: str) -> None:
    try:
        codec.reverse(text + "@fwd.example", NOW)
    except SrsError:
        pass
