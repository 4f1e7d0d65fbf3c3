"""The mutation tool (tools/mutants.py, `make mutants`) and the equivalent mutants it skips.

`make mutants` is not part of `make test` (it takes long); these tests check that the tool
makes every mutant it claims, that each is valid Python, and that tests/equivalent-mutants.md
names only mutants that exist today and still survive their module's tests."""
import ast

import mutants
from conftest import ROOT

EQUIVALENT = mutants.read_equivalents()


def test_every_mutant_of_every_module_is_valid_python_and_differs():
    for module in mutants.TESTS:
        source = mutants.module_path(module).read_bytes()
        found = mutants.find_mutants(module, source)
        assert found, module
        names = [mutant.name for mutant in found]
        assert len(set(names)) == len(names), module
        for mutant in found:
            changed = mutant.apply(source)
            assert changed != source, mutant.describe()
            ast.parse(changed)


def test_the_operators_are_the_ones_named():
    source = (b"def f(a, b):\n    if not a < 3 and b:\n        raise ValueError\n"
              b"    return a + 1\n")
    found = {(m.operator, m.original, m.text) for m in mutants.find_mutants("sample", source)}
    assert ("compare", "a < 3", "(a <= 3)") in found
    assert ("and_or", "not a < 3 and b", "(not a < 3 or b)") in found
    assert ("drop_not", "not a < 3", "(a < 3)") in found
    assert ("delete", "raise ValueError", "pass") in found
    assert ("return_none", "return a + 1", "return None") in found
    assert ("arithmetic", "a + 1", "(a - 1)") in found
    assert {("constant", "3", "4"), ("constant", "3", "2")} <= found


def test_no_mutant_is_made_that_could_only_be_equivalent():
    """A `return None` that only the function's end follows (it returns None without it
    too: last in the function, or in an if, else, except or with block that ends it) and
    an annotation without a value (nothing at run time) are not deleted. A `return None`
    after which the function would go on is: in a branch followed by more code, in a try
    block that has an else block, in a loop, in a finally block."""
    source = b"""class C:
    size: int


def f(a):
    if a:
        return None
    a.go()
    try:
        a.go()
        return None
    except OSError:
        return
    else:
        a.go()
    for b in a:
        return None
    try:
        return None
    finally:
        return None
    with a:
        try:
            a.go()
        except ValueError:
            if a:
                return None
            else:
                return
"""
    found = {(m.operator, m.line) for m in mutants.find_mutants("sample", source)}
    deleted = sorted(line for operator, line in found if operator == "delete")
    assert deleted == [7, 8, 10, 11, 13, 15, 17, 19, 21, 24], found


def test_each_listed_equivalent_mutant_exists_as_described():
    for name, entry in sorted(EQUIVALENT.items()):
        module = name.split(".")[0]
        by_name = {mutant.name: mutant for mutant in mutants.find_mutants(module)}
        assert name in by_name, "%s no longer exists: remove it from the list" % name
        mutant = by_name[name]
        change = "(`%s` -> `%s`)" % (mutants.one_line(mutant.original),
                                      mutants.one_line(mutant.text))
        assert change in entry, "%s is now %s: review it again" % (name, mutant.describe())


def test_each_listed_equivalent_mutant_still_survives():
    """Run each listed mutant against its module's tests (two at a time, as make mutants
    does): a killed one is not equivalent."""
    if not EQUIVALENT:
        return
    listed, unknown = mutants.named_mutants(sorted(EQUIVALENT))
    assert not unknown
    with mutants.Pool(2, ROOT / "build" / "mutants-check") as pool:
        outcomes = list(pool.outcomes(listed, timeout=600))
    killed = [mutant.name for mutant, outcome in zip(listed, outcomes) if outcome != "survived"]
    assert not killed, "killed by the tests, so not equivalent: %s" % killed
