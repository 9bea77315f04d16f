"""KFP v2 pipelines; compiled IR YAML lives in ``pipelines/compiled/`` (a test fails when it is stale)."""
