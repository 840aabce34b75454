"""Judging: the referee (success, norms, violations) and the query ledger."""
