"""Differential testing against the official receivers: the same cases go to our verify, the
Python SDK's Receiver.verify and the TypeScript SDK's Receiver.verify (one long-lived Node
process). Every disagreement must fall into a documented class (SECURITY.md)."""
import binascii
import json
import subprocess
import time

import attack

TOLERANCE = 30  # passed to all three; the Python SDK ignores it (a documented class)

# class -> {sdk: (sdk accepts, we accept)}: the only disagreements allowed.
CLASSES = {
    "alg not pinned": {"node": (True, False)},
    "non-canonical signature spelling": {"node": (True, False), "python": (True, False)},
    "clock tolerance ignored": {"python": (False, True)},
    "nbf required": {"python": (False, True)},
    "exp optional": {"node": (True, False)},
    "future iat unchecked": {"node": (True, False)},
    "numeric-string time claims": {"python": (True, False)},
    "aud checked": {"python": (False, True)},
    "one trailing slash tolerated": {"node": (False, True), "python": (False, True)},
    "token length cap": {"node": (True, False), "python": (True, False)},
}


class Case:
    def __init__(self, token, body, url, keys, feature):
        self.token, self.body, self.url, self.keys, self.feature = token, body, url, keys, feature


def _claims_case(rng, feature, change, header=None, url_of=None):
    base = attack.QStashCase(rng, text_only=True)
    claims = dict(base.claims)
    change(claims, time.time())
    claims = {k: v for k, v in claims.items() if v is not ...}
    token = attack.mint(base.signer, claims, header=header)
    return Case(token, base.body, url_of(base.url) if url_of else base.url, base.keys, feature)


def _set(**values):
    def change(claims, now):
        for name, value in values.items():
            claims[name] = value(now) if callable(value) else value
    return change


FEATURES = {
    "expired within the tolerance": _set(exp=lambda now: int(now) - 10),
    "expired beyond the tolerance": _set(exp=lambda now: int(now) - 100),
    "nbf within the tolerance": _set(nbf=lambda now: int(now) + 10),
    "nbf beyond the tolerance": _set(nbf=lambda now: int(now) + 100),
    "future iat": _set(iat=lambda now: int(now) + 100),
    "no nbf": _set(nbf=...),
    "no exp": _set(exp=...),
    "float exp": _set(exp=lambda now: now + 300.5),
    "numeric-string exp": _set(exp=lambda now: str(int(now) + 300)),
    "no body claim": _set(body=...),
    "unpadded body claim": lambda claims, now: claims.update(body=claims["body"].rstrip("=")),
    "wrong issuer": _set(iss="upstash"),
    "go zero nbf": _set(nbf=attack.GO_ZERO_TIME),
    "non-empty aud": _set(aud="someone"),
}


def cases(rng, n):
    """n cases: a third valid, a third tampered, a third with one claim or header feature."""
    out = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            c = attack.QStashCase(rng, text_only=True)
            out.append(Case(c.token, c.body, c.url, c.keys, "valid"))
        elif kind == 1:
            c = attack.QStashCase(rng, text_only=True)
            name, (token, body, url) = rng.choice(sorted(attack.qstash_mutations(c, rng).items()))
            if body != c.body and not _is_text(body):
                body = c.body + b" "
            case = Case(token, body, url, c.keys, "mutation: " + name)
            case.original = c.token
            out.append(case)
        else:
            feature = rng.choice(sorted(FEATURES) + ["trailing slash", "crit header",
                                                     "other typ", "huge sub"])
            if feature == "huge sub":  # a token over MAX_TOKEN_LENGTH for a matching URL
                long_url = "https://hooks.example.com/q?" + "x" * 9000
                out.append(_claims_case(rng, feature, _set(sub=long_url),
                                        url_of=lambda u: long_url))
            elif feature == "trailing slash":
                out.append(_claims_case(rng, feature, lambda c, n: None,
                                        url_of=lambda u: u + "/" if "?" not in u else u))
            elif feature == "crit header":
                out.append(_claims_case(rng, feature, lambda c, n: None,
                                        header={"alg": "HS256", "crit": ["exp"], "exp": 1}))
            elif feature == "other typ":
                out.append(_claims_case(rng, feature, lambda c, n: None,
                                        header={"alg": "HS256", "typ": "at+jwt"}))
            else:
                out.append(_claims_case(rng, feature, FEATURES[feature]))
    return out


def _is_text(body):
    try:
        body.decode()
        return True
    except UnicodeDecodeError:
        return False


def ours(case):
    from lambda_function import SignatureError, verify
    try:
        verify(case.token, case.keys, case.body, case.url, clock_tolerance=TOLERANCE)
        return True
    except SignatureError:
        return False


def python_sdk(case):
    """(accepted, crashed): the official Python receiver; anything but its SignatureError
    counts as a crash (and as a rejection)."""
    from qstash import Receiver
    from qstash.errors import SignatureError
    try:
        Receiver(current_signing_key=case.keys[0], next_signing_key=case.keys[1]).verify(
            signature=case.token, body=case.body.decode(), url=case.url,
            clock_tolerance=TOLERANCE)
        return True, False
    except SignatureError:
        return False, False
    except Exception:
        return False, True


def node_sdk(node_dir, all_cases, script):
    lines = "".join(json.dumps({"signature": c.token, "body": c.body.decode(), "url": c.url,
                                "current": c.keys[0], "next": c.keys[1],
                                "tolerance": TOLERANCE}) + "\n" for c in all_cases)
    out = subprocess.run(["node", str(script)], input=lines, capture_output=True, text=True,
                         check=True, timeout=600, env={"NODE_PATH": str(node_dir / "node_modules"),
                                                      "PATH": "/usr/bin:/bin:/usr/local/bin"})
    verdicts = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(verdicts) == len(all_cases), out.stderr[-2000:]
    return [(v["ok"], v.get("crash", False)) for v in verdicts]


def explain(case, sdk, sdk_accepts, we_accept):
    """The documented class this disagreement belongs to, or None."""
    direction = (sdk_accepts, we_accept)
    candidates = {
        "expired within the tolerance": "clock tolerance ignored",
        "nbf within the tolerance": "clock tolerance ignored",
        "no nbf": "nbf required", "no exp": "exp optional", "future iat": "future iat unchecked",
        "numeric-string exp": "numeric-string time claims", "non-empty aud": "aud checked",
        "trailing slash": "one trailing slash tolerated",
        "huge sub": "token length cap",
    }
    name = candidates.get(case.feature)
    if case.feature.startswith("mutation: alg HS"):
        name = "alg not pinned"
    elif case.feature.startswith("mutation: ") and _same_mac_other_spelling(case):
        name = "non-canonical signature spelling"
    if name and CLASSES[name].get(sdk) == direction:
        return name
    return None


def _same_mac_other_spelling(case):
    """The tampered token is the original with its signature spelled another way (padding,
    alphabet, unused low bits): the same header, claims and MAC bytes."""
    original = getattr(case, "original", None)
    if not original or case.token.count(".") != 2:
        return False
    head, claims, sig = case.token.split(".")
    o_head, o_claims, o_sig = original.split(".")
    try:
        def decode(s):
            return binascii.a2b_base64(s.replace("-", "+").replace("_", "/") + "==")
        return (head, claims) == (o_head, o_claims) and decode(sig) == decode(o_sig)
    except (binascii.Error, ValueError):
        return False
