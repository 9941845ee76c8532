"""R5.3, R6.1, R7.3c: a leak nobody listed is still found. The store (tests/canary_store.py) holds a
discipline report, a case of another unit, and a case its first unit returned, each with a unique
canary string in every free-text field; every GET operation of the OpenAPI schema (read from the
app, so a new route is covered without editing this test) is called as every role with every sample
of its parameters, and no answer may carry a canary the role must not see.

Parameters come from the samples by name; a route with a parameter there are no samples for fails
the test, so a new kind of parameter is noticed rather than skipped. A role refused an operation
(401/403) is refused whatever the query, so its query variants are not called again.
State-changing operations: tests/test_canaries_writes.py; event streams: tests/test_canaries_streams.py."""
from __future__ import annotations

from tests import canary_store as store
from tests.canary_store import DISC, RETURNED, URBAN


def test_r5_3_r7_3c_no_route_shows_a_role_what_it_must_not_see(api, seeded):
    made = store.build(api, seeded)
    requests = list(store.get_requests(store.openapi(api.client.app), store.samples(made)))
    requests.append(("/public", []))
    assert sum(1 + len(v) for _, v in requests) > 60
    leaks = []
    for who in store.FORBIDDEN:
        for url, variants in requests:
            r = api.get(url, who)
            leaks += [(who, url, canary) for canary in store.leaks_in(r.text, who)]
            if r.status_code in (401, 403):
                continue
            for variant in variants:
                leaks += [(who, variant, canary) for canary in store.leaks_in(api.get(variant, who).text, who)]
    assert not leaks, leaks[:20]
    # the test can see: the roles allowed do read the canaries
    assert DISC in api.get(f"/api/v1/cases/{made['numbers'][0]}", "disc1").text
    assert URBAN in api.get(f"/api/v1/cases/{made['numbers'][2]}", "urban1").text
    assert RETURNED in api.get(f"/api/v1/cases/{made['numbers'][3]}", "power1").text
