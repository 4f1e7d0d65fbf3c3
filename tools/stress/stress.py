"""`make stress`: the attack suite at full size. Prints counts per class and exits non-zero if
any forged request is accepted, any disagreement with the official receivers falls outside
the documented classes, or the fuzzer finds a crash."""
import collections
import os
import pathlib
import subprocess
import sys
import time
import warnings

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tools")]

warnings.filterwarnings("ignore", message=".*HMAC key")  # PyJWT, inside the Python SDK
import attack  # noqa: E402
import differential  # noqa: E402

from lambda_function import SignatureError, verify, verify_pusher  # noqa: E402

PER_PROVIDER = int(os.environ.get("STRESS_CASES") or 100_000)
DIFFERENTIAL = int(os.environ.get("STRESS_DIFFERENTIAL") or 30_000)
FUZZ_RUNS = int(os.environ.get("STRESS_FUZZ_RUNS") or 300_000)
failures = []


def forgery(name, make_case, mutations, check):
    rng = attack.seeded(1)
    tried: collections.Counter[str] = collections.Counter()
    accepted: collections.Counter[str] = collections.Counter()
    started = time.time()
    while sum(tried.values()) < PER_PROVIDER:
        case = make_case(rng)
        for kind, variant in mutations(case, rng).items():
            tried[kind] += 1
            try:
                check(case, *variant)
                accepted[kind] += 1
            except SignatureError:
                pass
    print(f"{name}: {sum(tried.values())} tampered requests in {len(tried)} classes, "
          f"{time.time() - started:.1f} s")
    for kind in sorted(tried):
        print(f"  {kind:<42} {tried[kind]:>7} tried  {accepted[kind]:>3} accepted")
    print(f"  accepted in all: {sum(accepted.values())}\n")
    if accepted:
        failures.append(f"{name}: {sum(accepted.values())} forgeries accepted")


def node_sdk_dir():
    folder = ROOT / "build" / "peers" / "qstash-js"
    spec = (ROOT / "tests/node/qstash-sdk/package.json").read_text()
    if not (folder / "node_modules").exists() or (folder / "package.json").read_text() != spec:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "package.json").write_text(spec)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=folder, check=True)
    return folder


def differential_suite():
    started = time.time()
    cases = differential.cases(attack.seeded(7), DIFFERENTIAL)
    node = differential.node_sdk(node_sdk_dir(), cases, ROOT / "tests/node/qstash_verify.js")
    # Ours right after Node's, in one quick pass: the cases carry times relative to when they
    # were made (expired 10 s ago, tolerance 30 s), and the Python SDK's pass below takes
    # long enough on two cores to push the last cases past that margin.
    our_verdicts = [differential.ours(case) for case in cases]
    counts: dict[str, collections.Counter[str]] = {"python": collections.Counter(),
                                                   "node": collections.Counter()}
    unexplained: collections.Counter[tuple] = collections.Counter()
    for case, (node_ok, node_crash), we in zip(cases, node, our_verdicts):
        py_ok, py_crash = differential.python_sdk(case)
        for sdk, theirs, crash in (("python", py_ok, py_crash), ("node", node_ok, node_crash)):
            counts[sdk]["crashed (counted as a rejection)"] += crash
            if theirs == we:
                counts[sdk]["agree"] += 1
            else:
                label = differential.explain(case, sdk, theirs, we)
                counts[sdk][label or "UNEXPLAINED"] += 1
                if not label:
                    unexplained[(sdk, case.feature, theirs, we)] += 1
    print(f"differential: {len(cases)} cases against the official receivers, "
          f"{time.time() - started:.1f} s")
    for sdk, counter in counts.items():
        print(f"  {sdk} SDK")
        for label, n in counter.most_common():
            print(f"    {label:<44} {n:>7}")
    print()
    if unexplained:
        failures.append(f"differential: unexplained disagreements {dict(unexplained)}")


def fuzz():
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("fuzzing: atheris is not installed here, so the fuzzer did not run\n")
        return
    started = time.time()
    result = subprocess.run([sys.executable, "fuzz_handler.py", f"-atheris_runs={FUZZ_RUNS}"],
                            cwd=ROOT / "tools/stress", capture_output=True, text=True)
    tail = [line for line in result.stderr.splitlines()
            if line.startswith(("Done", "#", "==", "Traceback"))]
    print(f"fuzzing with atheris: {FUZZ_RUNS} inputs, exit {result.returncode}, "
          f"{time.time() - started:.1f} s")
    print("  " + (tail[-1] if tail else result.stderr[-300:]) + "\n")
    if result.returncode != 0:
        failures.append("fuzzing: " + result.stderr[-2000:])


def main():
    forgery("QStash", lambda rng: attack.QStashCase(rng), attack.qstash_mutations,
            lambda case, token, body, url: verify(token, case.keys, body, url, now=case.now))
    forgery("soketi/Pusher", lambda rng: attack.PusherCase(rng), attack.pusher_mutations,
            lambda case, sig, body: verify_pusher(sig, case.secrets, body, now=case.now))
    differential_suite()
    fuzz()
    print("FAILED:\n  " + "\n  ".join(failures) if failures else "stress: all checks held")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
