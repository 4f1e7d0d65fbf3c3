"""Forgery resistance: from valid signed requests, every tampering the attack engine knows,
and hypothesis's own choice of byte changes, truncations and extensions, must be refused."""
import hmac
import hashlib

from hypothesis import given, settings, strategies as st

import attack
from lambda_function import SignatureError, verify, verify_pusher

QSTASH_CLASSES = sorted(attack.qstash_mutations(attack.QStashCase(attack.seeded(0)),
                                                attack.seeded(0)))
PUSHER_CLASSES = sorted(attack.pusher_mutations(attack.PusherCase(attack.seeded(0)),
                                                attack.seeded(0)))


def refused_qstash(case, token, body, url):
    try:
        verify(token, case.keys, body, url, now=case.now)
    except SignatureError:
        return True
    return False


def refused_pusher(case, signature, body):
    try:
        verify_pusher(signature, case.secrets, body, now=case.now)
    except SignatureError:
        return True
    return False


@settings(max_examples=400)
@given(seed=st.integers(0, 2 ** 32), kind=st.sampled_from(QSTASH_CLASSES))
def test_every_qstash_tampering_class_is_refused(seed, kind):
    rng = attack.seeded(seed)
    case = attack.QStashCase(rng)
    assert verify(case.token, case.keys, case.body, case.url, now=case.now)  # the original
    variant = attack.qstash_mutations(case, rng).get(kind)
    if variant is not None:
        assert refused_qstash(case, *variant), kind


@settings(max_examples=300)
@given(seed=st.integers(0, 2 ** 32), data=st.data())
def test_any_single_character_change_in_the_token_is_refused(seed, data):
    case = attack.QStashCase(attack.seeded(seed))
    i = data.draw(st.integers(0, len(case.token) - 1))
    new = data.draw(st.characters().filter(lambda c: c != case.token[i]))
    assert refused_qstash(case, case.token[:i] + new + case.token[i + 1:], case.body, case.url)


@settings(max_examples=200)
@given(seed=st.integers(0, 2 ** 32), data=st.data())
def test_any_truncation_or_extension_of_the_token_is_refused(seed, data):
    case = attack.QStashCase(attack.seeded(seed))
    cut = data.draw(st.integers(0, len(case.token) - 1))
    suffix = data.draw(st.text(min_size=1, max_size=8))
    assert refused_qstash(case, case.token[:cut], case.body, case.url)
    assert refused_qstash(case, case.token + suffix, case.body, case.url)


@settings(max_examples=200)
@given(seed=st.integers(0, 2 ** 32), body=st.binary(max_size=300))
def test_any_other_body_is_refused(seed, body):
    case = attack.QStashCase(attack.seeded(seed))
    if body != case.body:
        assert refused_qstash(case, case.token, body, case.url)


@settings(max_examples=300)
@given(seed=st.integers(0, 2 ** 32), kind=st.sampled_from(PUSHER_CLASSES))
def test_every_pusher_tampering_class_is_refused(seed, kind):
    rng = attack.seeded(seed)
    case = attack.PusherCase(rng)
    assert verify_pusher(case.signature, case.secrets, case.body, now=case.now)
    assert refused_pusher(case, *attack.pusher_mutations(case, rng)[kind]), kind


@settings(max_examples=200)
@given(seed=st.integers(0, 2 ** 32), body=st.binary(max_size=400), data=st.data())
def test_pusher_signature_binds_body_and_secret(seed, body, data):
    case = attack.PusherCase(attack.seeded(seed))
    if body != case.body:
        assert refused_pusher(case, case.signature, body)
    secret = data.draw(st.text(min_size=1, max_size=40))
    if secret not in case.secrets:
        forged = hmac.new(secret.encode(), case.body, hashlib.sha256).hexdigest()
        assert refused_pusher(case, forged, case.body)


def test_the_engine_covers_what_the_issue_lists():
    for needed in ("byte change", "truncation", "extension", "padding added",
                   "standard base64 alphabet", "segment swap", "header swap",
                   "claim edit re-signed with a wrong key", "alg none",
                   "alg HS384 with the right key",
                   "alg HS512 with the right key", "alg RS256", "alg lowercase", "alg missing",
                   "duplicate keys in header", "duplicate keys in claims", "body change"):
        assert needed in QSTASH_CLASSES
    for needed in ("body byte change", "signed with another secret",
                   "signature hex in upper case", "signature truncation"):
        assert needed in PUSHER_CLASSES
