"""Valid signed requests, and every way of tampering with them that the forgery tests try.
Shared by the property tests (hypothesis) and `make stress` (100,000+ cases per provider)."""
import base64
import hashlib
import hmac
import json
import random
import string
import time

from signer import body_hash  # noqa: F401 (attack.body_hash is used by the tests)

B64URL = string.ascii_letters + string.digits + "-_"
GO_ZERO_TIME = -62135596800
DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def mint(key, claims, header=None, alg="HS256"):
    """A compact JWS over exactly the JSON texts given (str) or their compact dumps (dict)."""
    header = header if header is not None else {"alg": alg, "typ": "JWT"}
    texts = [h if isinstance(h, str) else json.dumps(h, separators=(",", ":"))
             for h in (header, claims)]
    signed = b64url(texts[0].encode()) + "." + b64url(texts[1].encode())
    digest = DIGESTS.get(alg, hashlib.sha256)
    return signed + "." + b64url(hmac.new(key.encode(), signed.encode(), digest).digest())


def random_key(rng):
    return "sig_" + "".join(rng.choice(string.ascii_letters + string.digits)
                            for _ in range(rng.randint(20, 40)))


def random_url(rng):
    host = rng.choice(["abc123.lambda-url.us-east-1.on.aws", "hooks.example.com",
                       "api.execute-api.eu-west-1.amazonaws.com"])
    path = "/" + "/".join(rng.choice(["q", "jobs", "prod", "a-b", "\u00e9t\u00e9"[:1] + "x"])
                          for _ in range(rng.randint(0, 3)))
    query = rng.choice(["", "?tenant=7", "?a=1&b=%20x", "?next=/home"])
    return "https://" + host + path + query


def random_body(rng, text_only=False):
    kind = rng.randint(0, 3)
    if kind == 0:
        return b""
    if kind == 1 or text_only:
        return json.dumps({"n": rng.randint(0, 10 ** 9), "s": "h\u00e9llo " * rng.randint(0, 5)},
                          ensure_ascii=False).encode()
    if kind == 2:
        return "".join(rng.choice(string.printable) for _ in range(rng.randint(1, 300))).encode()
    return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))


def qstash_claims(body, url, now, rng):
    iat = int(now) - rng.randint(0, 200)
    return {"aud": "", "body": body_hash(body), "exp": iat + 300, "iat": iat, "iss": "Upstash",
            "jti": "jwt_" + "".join(rng.choice(B64URL) for _ in range(24)),
            "nbf": rng.choice([iat, GO_ZERO_TIME]), "sub": url}


class QStashCase:
    """A valid request: the token verifies with `keys` for `body` and `url` at `now`."""

    def __init__(self, rng, now=None, text_only=False):
        self.now = time.time() if now is None else now
        self.keys = (random_key(rng), random_key(rng))
        self.signer = rng.choice(self.keys)
        self.body, self.url = random_body(rng, text_only), random_url(rng)
        self.claims = qstash_claims(self.body, self.url, self.now, rng)
        self.token = mint(self.signer, self.claims)


def _flip(text, rng, alphabet=None):
    """One character replaced by a different one (any character, or one from `alphabet`)."""
    i = rng.randrange(len(text))
    pool = alphabet or (string.printable + "\u00e9\u2028")
    new = rng.choice([c for c in pool if c != text[i]])
    return text[:i] + new + text[i + 1:]


def qstash_mutations(case, rng):
    """{class: (token, body, url)}: one tampered variant per class, each different from the
    valid request, none of them something the key holder signed."""
    head, claims_b64, sig = case.token.split(".")
    other_key = random_key(rng)
    edited = dict(case.claims, **rng.choice([{"sub": "https://evil.example/"},
                                             {"body": body_hash(b"other")},
                                             {"exp": case.claims["exp"] + 3600},
                                             {"iss": "Upstash2"}]))
    claims_text = json.dumps(case.claims, separators=(",", ":"))
    dup = rng.choice(['{"alg":"HS256","alg":"HS256","typ":"JWT"}', '{"alg":"none","alg":"HS256"}'])
    seg = rng.randrange(3)
    parts = [head, claims_b64, sig]
    std = [p.replace("-", "+").replace("_", "/") for p in parts]
    variants = {
        "byte change": (_flip(case.token, rng), case.body, case.url),
        "byte change in signature": (".".join([head, claims_b64, _flip(sig, rng, B64URL)]),
                                     case.body, case.url),
        "truncation": (case.token[:rng.randrange(len(case.token))], case.body, case.url),
        "extension": (case.token + "".join(rng.choice(B64URL + ".=") for _ in range(
            rng.randint(1, 6))), case.body, case.url),
        "padding added": (".".join(p + ("=" * rng.randint(1, 2) if i == seg else "")
                                   for i, p in enumerate(parts)), case.body, case.url),
        "standard base64 alphabet": (".".join(std[i] if i == seg else p
                                              for i, p in enumerate(parts))
                                     if std[seg] != parts[seg] else ".".join(
                                         [head, claims_b64, sig + "+"]), case.body, case.url),
        "segment swap": (rng.choice([".".join([claims_b64, head, sig]),
                                     ".".join([head, sig, claims_b64]),
                                     ".".join([sig, claims_b64, head])]), case.body, case.url),
        "header swap": (".".join([b64url(rng.choice(['{"typ":"JWT","alg":"HS256"}',
                                                     '{"alg":"HS256"}',
                                                     '{"alg":"HS256","typ":"JWT","kid":"1"}'])
                                         .encode()), claims_b64, sig]), case.body, case.url),
        "claim edit re-signed with a wrong key": (mint(other_key, edited), case.body, case.url),
        "alg none": (rng.choice([".".join([b64url(b'{"alg":"none","typ":"JWT"}'), claims_b64,
                                           ""]),
                                 ".".join([b64url(b'{"alg":"none"}'), claims_b64, sig])]),
                     case.body, case.url),
        "alg HS384 with the right key": (mint(case.signer, case.claims, alg="HS384"),
                                         case.body, case.url),
        "alg HS512 with the right key": (mint(case.signer, case.claims, alg="HS512"),
                                         case.body, case.url),
        "alg RS256": (mint(case.signer, case.claims, header={"alg": "RS256", "typ": "JWT"}),
                      case.body, case.url),
        "alg lowercase": (mint(case.signer, case.claims, header={"alg": "hs256", "typ": "JWT"}),
                          case.body, case.url),
        "alg missing": (mint(case.signer, case.claims, header={"typ": "JWT"}),
                        case.body, case.url),
        "duplicate keys in header": (".".join([b64url(dup.encode()), claims_b64, sig]),
                                     case.body, case.url),
        "duplicate keys in claims": (".".join([head, b64url(
            (claims_text[:-1] + ',"sub":"https://evil.example/"}').encode()), sig]),
                                     case.body, case.url),
        "body change": (case.token, rng.choice([case.body + b" ", case.body[:-1] + bytes(
            [(case.body[-1:] or b"\x00")[0] ^ 1]) if case.body else b"x", b"",
                                                 case.body * 2 + b"!"]), case.url),
        "url change": (case.token, case.body, rng.choice([
            case.url.replace("https://", "http://"), case.url + "x",
            case.url.replace("://", "://www."), case.url.split("?")[0] + "?tenant=8",
            case.url + "//", case.url.upper()])),
    }
    return {name: v for name, v in variants.items() if v != (case.token, case.body, case.url)}


class PusherCase:
    def __init__(self, rng, now=None):
        self.now = time.time() if now is None else now
        self.secrets = (random_key(rng), random_key(rng))
        payload = {"time_ms": int(self.now * 1000) - rng.randint(0, 60000), "events": [
            {"name": rng.choice(["channel_occupied", "member_added", "client_event"]),
             "channel": "private-%d" % rng.randint(0, 99), "user_id": rng.randint(1, 10 ** 6),
             "data": {"text": "h\u00e9llo \U0001f44b", "n": rng.random()}}]}
        self.body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        self.signature = hmac.new(rng.choice(self.secrets).encode(), self.body,
                                  hashlib.sha256).hexdigest()


def pusher_mutations(case, rng):
    """{class: (signature, body)}: tampered variants of a valid soketi/Pusher webhook."""
    sig, body = case.signature, case.body
    i = rng.randrange(len(body))
    variants = {
        "body byte change": (sig, body[:i] + bytes([body[i] ^ rng.randint(1, 255)]) + body[i + 1:]),
        "body truncation": (sig, body[:rng.randrange(len(body))]),
        "body extension": (sig, body + rng.choice([b" ", b"\n", b"{}", b"\x00"])),
        "signed with another secret": (hmac.new(random_key(rng).encode(), body,
                                                hashlib.sha256).hexdigest(), body),
        "signature hex in upper case": (sig.upper() if sig.upper() != sig else sig[:-1] + "G",
                                        body),
        "signature byte change": (_flip(sig, rng), body),
        "signature truncation": (sig[:rng.randrange(64)], body),
        "signature extension": (sig + rng.choice(["0", "a", " ", "00"]), body),
        "signature of an empty body": (hmac.new(case.secrets[0].encode(), b"",
                                                hashlib.sha256).hexdigest(), body),
    }
    return variants


def seeded(seed):
    return random.Random(seed)
