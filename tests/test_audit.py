"""Every adversarial case of ``python -m verifiers audit`` (see verifiers/audit.py), one test per area,
each area's cases scored in one batch as the audit scores them."""

import pytest

from verifiers import audit


def test_there_are_cases_in_every_area():
    assert audit.areas(), "no audit areas"
    for area in audit.areas():
        assert audit.load(area).CASES, f"area {area} has no cases"


@pytest.mark.parametrize("area", audit.areas())
def test_audit_area(area):
    results = audit.run_area(area)
    skipped = [c.name for c, v in results if v is None]
    bad = [(c.env, c.cls, c.name, audit.outcome(c, v), v) for c, v in results
           if v is not None and audit.outcome(c, v) != "ok"]
    assert not bad, "\n".join(f"{o}: [{e}/{k}] {n}: {v!r}" for e, k, n, o, v in bad)
    if skipped:
        pytest.skip(f"{len(skipped)} cases need docker or an optional package: {skipped[:5]}")
