"""Operators' tasks behind `flask storage ...`: bucket set-up and checks, sweeping, reconciling."""
