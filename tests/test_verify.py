"""verify() against real QStash tokens, an independent signer (PyJWT) and one broken check at
a time. Each failure case must be refused for the reason it names."""
import base64
import hashlib
import hmac
import json

import jwt  # PyJWT: an independent signer and decoder
import pytest

from conftest import KEY, NEXT, SIGNED_VECTORS, VECTORS
from lambda_function import SignatureError, verify
from signed_webhooks.qstash import check_claims
from signer import body_hash, sign_qstash

URL = "https://abc123.lambda-url.us-east-1.on.aws/jobs"
BODY = b'{"job": 1}'
T0 = 1_790_000_000
SUB_MISMATCH = "claim sub"  # how a URL mismatch's reason starts


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def pyjwt_token(key=KEY, content=BODY, url=URL, now=T0, algorithm="HS256", headers=None, **claims):
    """A QStash-shaped token minted by PyJWT, not by our signer."""
    payload = {"aud": "", "body": body_hash(content), "exp": now + 300, "iat": now,
               "iss": "Upstash", "jti": "jwt_pyjwt", "nbf": now, "sub": url}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def hand_token(header, claims, key=KEY):
    """Raw JSON text for header and claims, HMAC-SHA256 signed: for shapes no library mints."""
    signed = b64url(header.encode()) + "." + b64url(claims.encode())
    return signed + "." + b64url(hmac.new(key.encode(), signed.encode(), hashlib.sha256).digest())


def reason(token, body=BODY, url=URL, now=T0 + 10, key=KEY, **kw):
    with pytest.raises(SignatureError) as info:
        verify(token, key, body, url, now=now, **kw)
    return str(info.value)


# --- Real QStash tokens -------------------------------------------------------------------

@pytest.mark.parametrize("v", SIGNED_VECTORS, ids=lambda v: v["name"])
def test_real_token_verifies_and_returns_its_claims(v):
    claims = verify(v["token"], v["current_signing_key"], v["body"], v["url"],
                    now=v["claims"]["iat"] + 10)
    assert claims == v["claims"]


@pytest.mark.parametrize("v", SIGNED_VECTORS, ids=lambda v: v["name"])
def test_real_token_verifies_when_the_next_key_is_the_one_that_signed(v):
    keys = (v["next_signing_key"], v["current_signing_key"])  # current wrong, next right
    assert verify(v["token"], keys, v["body"], v["url"], now=v["claims"]["iat"] + 10)


@pytest.mark.parametrize("v", SIGNED_VECTORS, ids=lambda v: v["name"])
def test_real_token_is_refused_with_the_other_key_alone(v):
    with pytest.raises(SignatureError, match="signature does not match"):
        verify(v["token"], v["next_signing_key"], v["body"], v["url"], now=v["claims"]["iat"])


@pytest.mark.parametrize("v", SIGNED_VECTORS, ids=lambda v: v["name"])
def test_real_token_is_refused_as_expired_at_todays_date(v):
    with pytest.raises(SignatureError, match="expired"):
        verify(v["token"], (v["next_signing_key"], v["current_signing_key"]), v["body"],
                      v["url"])


@pytest.mark.parametrize("v", SIGNED_VECTORS, ids=lambda v: v["name"])
def test_real_token_with_its_body_changed_by_one_byte_is_refused(v):
    body = (v["body"] or "") + " "
    with pytest.raises(SignatureError, match="body hash"):
        verify(v["token"], v["current_signing_key"], body, v["url"], now=v["claims"]["iat"])


def test_go_zero_time_nbf_of_a_real_token_passes_the_time_checks():
    """QStash has sent nbf = Go's zero time since 2024; its body is unpublished, so the claim
    checks must get past exp/nbf/iat/sub and stop exactly at the body hash."""
    v = next(v for v in VECTORS if v["name"] == "nbf-zero")
    claims = jwt.decode(v["token"], options={"verify_signature": False})
    assert claims["nbf"] == -62135596800
    with pytest.raises(SignatureError, match="body hash"):
        check_claims(claims, b"unpublished", v["url"], 5, claims["iat"] + 10)


def test_go_zero_time_nbf_accepted_end_to_end():
    token = pyjwt_token(nbf=-62135596800)
    assert verify(token, KEY, BODY, URL, now=T0 + 10)["nbf"] == -62135596800


# --- Independent signers ------------------------------------------------------------------

def test_pyjwt_minted_token_is_accepted():
    assert verify(pyjwt_token(), KEY, BODY, URL, now=T0 + 10)["sub"] == URL


def test_unpadded_body_hash_as_minted_by_sdk_tests_is_accepted():
    unpadded = body_hash(BODY).rstrip("=")
    assert verify(pyjwt_token(body=unpadded), KEY, BODY, URL, now=T0 + 10)["body"] == unpadded


def test_our_signer_is_accepted_by_pyjwt_and_by_the_official_sdk():
    from qstash import Receiver
    token = sign_qstash(KEY, BODY, URL)
    claims = jwt.decode(token, KEY, algorithms=["HS256"], issuer="Upstash",
                        options={"verify_aud": False})
    assert claims["body"] == base64.urlsafe_b64encode(hashlib.sha256(BODY).digest()).decode()
    Receiver(current_signing_key=KEY, next_signing_key=NEXT).verify(
        signature=token, body=BODY.decode(), url=URL)
    assert list(json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==")).keys()) == [
        "aud", "body", "exp", "iat", "iss", "jti", "nbf", "sub"]  # QStash's claim order


@pytest.mark.parametrize("body", [None, b"", ""])
def test_missing_body_is_the_empty_body_and_its_hash_is_always_checked(body):
    token = pyjwt_token(content=b"")
    assert verify(token, KEY, body, URL, now=T0 + 10)
    assert "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU=" == body_hash(b"")
    with pytest.raises(SignatureError, match="body hash"):
        verify(pyjwt_token(content=b"x"), KEY, body, URL, now=T0 + 10)


def test_str_body_is_utf8_encoded():
    text = "h\u00e9llo \U0001f44b"
    assert verify(pyjwt_token(content=text.encode()), KEY, text, URL, now=T0 + 10)


# --- One check failing at a time ----------------------------------------------------------

def test_tampered_header_segment():
    token = pyjwt_token()
    header = b64url(b'{"alg":"HS256","typ":"JWS"}')
    assert "signature does not match" in reason(header + token[token.index("."):])


def test_tampered_claims_segment():
    head, _, sig = pyjwt_token().split(".")
    other = pyjwt_token(url="https://evil.example/").split(".")[1]
    assert "signature does not match" in reason(f"{head}.{other}.{sig}")


def test_tampered_signature():
    token = pyjwt_token()
    flipped = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]
    assert "signature does not match" in reason(flipped)


def test_signature_must_be_canonical_unpadded_base64url():
    token = pyjwt_token()
    assert "not canonical" in reason(token + "=")
    head, claims, sig = token.split(".")
    assert "not canonical" in reason(f"{head}.{claims}.{sig[:20]}!{sig[20:]}")
    std = sig.replace("-", "+").replace("_", "/")
    assert std == sig or "not canonical" in reason(f"{head}.{claims}.{std}")
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(sig[-1])
    twin = sig[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last ^ 1]
    assert "not canonical" in reason(f"{head}.{claims}.{twin}")  # same 256 bits, other spelling


def test_body_changed():
    assert "body hash" in reason(pyjwt_token(), body=b'{"job": 2}')


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_hmac_algorithms_are_refused_even_when_correctly_signed(alg):
    token = pyjwt_token(algorithm=alg)
    jwt.decode(token, KEY, algorithms=[alg],  # valid, by PyJWT's account
               options={"verify_aud": False, "verify_exp": False})
    assert "alg" in reason(token)


def test_alg_none_is_refused():
    token = pyjwt_token(algorithm="none", key=None)
    assert "alg 'none'" in reason(token)
    assert "alg 'none'" in reason(token + "AAAA")


@pytest.mark.parametrize("header", ['{"typ":"JWT"}', '{"alg":"hs256"}', '{"alg":["HS256"]}',
                                    '{"alg":"HS256","alg":"none"}', '[]', 'null', '{"alg":'])
def test_odd_headers_are_refused(header):
    claims = json.dumps({"body": body_hash(BODY), "exp": T0 + 300, "iss": "Upstash",
                         "sub": URL})
    assert reason(hand_token(header, claims))


def test_crit_header_is_refused_even_when_signed():
    assert "crit" in reason(pyjwt_token(headers={"crit": ["exp"], "exp": 1}))


def test_duplicate_claim_keys_only_matter_after_the_mac():
    """Claims are parsed only once the MAC has verified; a forger cannot get that far."""
    claims = ('{"body":"%s","exp":%d,"iss":"Upstash","sub":"https://evil.example/","sub":"%s"}'
              % (body_hash(BODY), T0 + 300, URL))
    forged = hand_token('{"alg":"HS256"}', claims, key="sig_NotTheKey")
    assert "signature does not match" in reason(forged)


def test_wrong_issuer():
    assert "iss" in reason(pyjwt_token(iss="Upstash2"))
    assert "iss" in reason(pyjwt_token(iss=None))


def test_expiry_boundary_with_tolerance():
    token = pyjwt_token()  # exp = T0 + 300
    assert verify(token, KEY, BODY, URL, now=T0 + 300 + 4.999, clock_tolerance=5)
    assert "expired" in reason(token, now=T0 + 300 + 5, clock_tolerance=5)
    assert "expired" in reason(token, now=T0 + 300, clock_tolerance=0)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_not_yet_valid(claim):
    token = pyjwt_token(**{claim: T0 + 60})
    assert f"claim {claim}" in reason(token, now=T0, clock_tolerance=5)
    assert verify(token, KEY, BODY, URL, now=T0 + 55, clock_tolerance=5)


def test_wrong_url_names_both_urls():
    message = reason(pyjwt_token(), url="https://abc123.lambda-url.us-east-1.on.aws/other")
    assert URL in message and "/other" in message


@pytest.mark.parametrize("signed_for, request_url", [
    (URL, URL + "/"), (URL + "/", URL),
    ("https://abc123.lambda-url.us-east-1.on.aws/", "https://abc123.lambda-url.us-east-1.on.aws"),
])
def test_one_trailing_slash_is_tolerated(signed_for, request_url):
    assert verify(pyjwt_token(url=signed_for), KEY, BODY, request_url, now=T0 + 10)


@pytest.mark.parametrize("request_url", [URL + "//", URL + "/x", URL.upper(), URL + "?a=1",
                                         URL.replace("https", "http"), URL + "#frag"])
def test_any_other_url_difference_is_refused(request_url):
    assert SUB_MISMATCH in reason(pyjwt_token(), url=request_url)


def test_query_string_is_part_of_the_url():
    token = pyjwt_token(url=URL + "?tenant=7")
    assert verify(token, KEY, BODY, URL + "?tenant=7", now=T0 + 10)
    assert SUB_MISMATCH in reason(token, url=URL)
    assert SUB_MISMATCH in reason(token, url=URL + "?tenant=8")
    assert SUB_MISMATCH in reason(token, url=URL + "?tenant=7/")


def test_url_none_skips_only_the_subject_check():
    token = pyjwt_token(url="https://anything.example/")
    assert verify(token, KEY, BODY, None, now=T0 + 10)
    assert "body hash" in reason(token, url=None, body=b"other")


@pytest.mark.parametrize("claims, expected", [
    ({"exp": None}, "claim exp is missing"),
    ({"exp": "1790000300"}, "claim exp is not a number"),
    ({"exp": True}, "claim exp is not a number"),
    ({"exp": [1]}, "claim exp is not a number"),
    ({"nbf": "0"}, "claim nbf is not a number"),
    ({"iat": {}}, "claim iat is not a number"),
    ({"sub": 5}, "claim sub"),
    ({"sub": None}, "claim sub"),
    ({"body": ["x"]}, "claim body"),
    ({"body": None}, "claim body"),
])
def test_claims_of_the_wrong_type_are_a_signature_error(claims, expected):
    assert expected in reason(pyjwt_token(**claims))


def test_non_string_issuer_is_refused():
    claims = json.dumps({"body": body_hash(BODY), "exp": T0 + 300, "iss": 1, "sub": URL})
    assert "claim iss" in reason(hand_token('{"alg":"HS256"}', claims))


def test_explicit_null_time_claim_is_refused():
    claims = json.dumps({"body": body_hash(BODY), "exp": T0 + 300, "iss": "Upstash",
                         "nbf": None, "sub": URL})
    assert "claim nbf" in reason(hand_token('{"alg":"HS256"}', claims))


@pytest.mark.parametrize("text", ["Infinity", "NaN", "1e999", "-Infinity"])
def test_non_finite_exp_is_refused(text):
    claims = '{"body":"%s","exp":%s,"iss":"Upstash","sub":"%s"}' % (body_hash(BODY), text, URL)
    assert reason(hand_token('{"alg":"HS256"}', claims))


@pytest.mark.parametrize("token", [None, b"a.b.c", 17, "", "a.b", "a.b.c.d", "\u00e9.b.c",
                                   "x" * 9000, "%%%.e30.sig"])
def test_malformed_tokens_are_a_signature_error(token):
    assert reason(token)


def test_claims_that_are_not_an_object():
    assert "not one JSON object" in reason(hand_token('{"alg":"HS256"}', "[1,2]"))
    assert "not one JSON object" in reason(hand_token('{"alg":"HS256"}', "{} {}"))


@pytest.mark.parametrize("length", [0, 1, 31, 63, 64, 65, 127, 300])
def test_mac_is_bit_identical_to_the_standard_library_hmac(length):
    import os
    from signed_webhooks import qstash
    for trial in range(20):
        key = os.urandom(length).hex()[:length] + "\u00e9" * (trial % 2)
        message = os.urandom(trial * 37)
        assert qstash._mac(key, message) == hmac.digest(key.encode(), message, "sha256")


# --- Bounds, at their exact edge ------------------------------------------------------------

def sized_token(length):
    """A genuine PyJWT token of exactly `length` characters (a padding claim sized to fit)."""
    for pad in range(length):
        token = pyjwt_token(pad="p" * pad)
        if len(token) >= length:
            assert len(token) == length, "no token is exactly %d characters" % length
            return token
    raise AssertionError("unreachable")


def test_the_token_size_cap_is_8192_characters_exactly():
    """The cap (README, SECURITY.md: 8192 characters, before any decoding): a genuine token
    of exactly 8192 characters verifies, one of 8193 is refused by the cap alone."""
    at_cap = sized_token(8192)
    assert verify(at_cap, KEY, BODY, URL, now=T0 + 10)["sub"] == URL
    over = sized_token(8193)
    assert reason(over) == "token is not an ASCII string of at most 8192 chars"


def test_a_refused_alg_is_named_by_its_first_16_characters_only():
    """The header is read before the MAC, so its alg is the caller's text: the reason (and
    the log line) holds 16 characters of it, however long it is."""
    alg = "HS256" + "abcdefghijklmnopqrstuvwxyz"
    claims = json.dumps({"body": body_hash(BODY), "exp": T0 + 300, "iss": "Upstash", "sub": URL})
    message = reason(hand_token(json.dumps({"alg": alg}), claims))
    assert message == "header alg 'HS256abcdefghijk' is not HS256"


def test_time_claims_are_refused_from_1e16_in_magnitude():
    """A time claim is a number below 1e16 in magnitude; 1e16 itself is refused."""
    assert verify(pyjwt_token(exp=10**16 - 1), KEY, BODY, URL, now=T0 + 10)
    assert reason(pyjwt_token(exp=10**16)) == "claim exp is not a number"
    assert reason(pyjwt_token(nbf=-10**16)) == "claim nbf is not a number"
    assert reason(pyjwt_token(iat=1e16)) == "claim iat is not a number"


@pytest.mark.parametrize("now", [T0 + 10, 0.5, -0.5])
def test_nbf_and_iat_are_optional_and_an_absent_one_is_no_bound(now):
    """Without nbf and iat only exp bounds the token's life, at any clock: an absent claim is
    not read as the epoch (which would make the token not yet valid before 1970)."""
    token = pyjwt_token(nbf=None, iat=None, exp=T0 + 300)
    assert verify(token, KEY, BODY, URL, now=now, clock_tolerance=0)["exp"] == T0 + 300
    assert "claim nbf" in reason(pyjwt_token(nbf=T0 + 60, iat=None), now=T0, clock_tolerance=0)
    assert "claim iat" in reason(pyjwt_token(nbf=None, iat=T0 + 60), now=T0, clock_tolerance=0)


def test_a_wrong_url_names_four_of_the_urls_configured_at_most():
    """The reason lists the URLs the token could have named, the first four only, so a long
    QSTASH_DESTINATION_URL list cannot make the log line grow without bound."""
    urls = ["https://h%d.example/p" % index for index in range(6)]
    message = reason(pyjwt_token(), url=urls)
    assert [url in message for url in urls] == [True, True, True, True, False, False]


@pytest.mark.parametrize("sub", ["https://h.example:99999/?key=secret", "http://[::1/?key=secret",
                                 "h.example/path?key=secret"])
def test_a_signed_sub_that_is_not_a_url_is_named_as_such(sub):
    """A sub that urlsplit refuses (a port out of range, a bracket left open) or that has no
    scheme is shown as `(not a URL)`: neither its query nor anything else of it is logged."""
    message = reason(pyjwt_token(url=sub))
    assert message.startswith("claim sub (not a URL) is not this request's URL "), message
    assert "secret" not in message


@pytest.mark.parametrize("signed_for", [URL + "/?a=1&b=2", URL + "?b=2&a=1"])
def test_a_rest_query_url_tolerates_a_trailing_slash_on_the_path(signed_for):
    """REST hands over the query parsed (DestinationURL): the path may differ by its trailing
    slash, as for a URL without query; the query is still compared."""
    from signed_webhooks.qstash import DestinationURL
    arrived = DestinationURL(URL, [("a", "1"), ("b", "2")])
    assert verify(pyjwt_token(url=signed_for), KEY, BODY, arrived, now=T0 + 10)
    assert SUB_MISMATCH in reason(pyjwt_token(url=URL + "/?a=1"), url=arrived)


def test_mac_pads_are_derived_once_per_key_and_kept_for_nine_keys_at_most(monkeypatch):
    """A key's pads are hashed once and then reused (the next key costs a copy, not a key
    setup); at most 9 keys' pads are kept, and a tenth key starts the cache over."""
    from signed_webhooks import qstash
    monkeypatch.setattr(qstash, "_key_pads", {})
    keys = ["sig_CacheTestKey%02d_abcdefgh" % index for index in range(10)]
    for key in keys[:9]:
        qstash._mac(key, b"m")
    held = dict(qstash._key_pads)
    assert list(held) == keys[:9]
    for key in keys[:9]:  # used again: the same pads, not derived anew
        assert qstash._mac(key, b"m") == hmac.digest(key.encode(), b"m", "sha256")
        assert qstash._key_pads[key] is held[key]
    qstash._mac(keys[9], b"m")
    assert list(qstash._key_pads) == [keys[9]]
