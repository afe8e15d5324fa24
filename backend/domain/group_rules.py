"""The leg-count rule of a multi-leg group, defined once.

The domain (``ExecutionGroup.create``), the API model (``MultiLegRequest.legs``), firestore.rules
(``r.legs.size()`` on intent documents of kind multi_leg) and docs/openapi.json derive from or are
tested against these numbers (tests/unit/test_group_leg_count.py). A group is a pair, a basket or a
spread (seed 000): at least two legs.
"""
MIN_LEGS = 2
MAX_LEGS = 10
