"""The audit trail: records of every decision and model event, chained per partition."""
