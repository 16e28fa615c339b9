"""An explanation's message from its dict: the shape the core makes, and older stored shapes."""

from __future__ import annotations

from broker.api import convert
from broker.placement.model import Candidate, Explanation, ScoreTerms


def _explanation() -> dict[str, object]:
    terms = ScoreTerms(locality_hours=0.5, cost_hkd=30.0, load=0.25, program_hkd=70.0)
    return {
        **Explanation(
            workload="wl-000000000001",
            chosen="cyberport",
            candidates=(
                Candidate("cyberport", True, (), 0.77, terms),
                Candidate("sandy-ridge", False, ("gang-fit: no node has 8 free H800",), None, None),
            ),
            summary="placed on cyberport (score 0.77)",
        ).to_dict(),
        "attempt": 2,
    }


def test_the_cores_shape_converts_every_field() -> None:
    message = convert.explanation(_explanation())
    assert (message.workload, message.chosen, message.attempt) == ("wl-000000000001", "cyberport", 2)
    assert message.summary == "placed on cyberport (score 0.77)"
    placed, refused = message.candidates
    assert (placed.site, placed.eligible, list(placed.reasons)) == ("cyberport", True, [])
    assert placed.HasField("score") and placed.score == 0.77
    assert (placed.terms.locality_hours, placed.terms.cost_hkd, placed.terms.load) == (0.5, 30.0, 0.25)
    assert (placed.terms.tenant_hkd, placed.terms.program_hkd, placed.terms.total_hkd) == (30.0, 70.0, 100.0)
    assert (refused.site, refused.eligible) == ("sandy-ridge", False)
    assert list(refused.reasons) == ["gang-fit: no node has 8 free H800"]
    assert not refused.HasField("score") and not refused.HasField("terms")


def test_a_stored_candidate_with_a_key_the_message_lacks_still_converts() -> None:
    data = _explanation()
    expected = convert.explanation(data)
    for candidate in data["candidates"]:  # type: ignore[attr-defined]
        candidate["note"] = "a key an older broker wrote"
    assert convert.explanation(data) == expected
