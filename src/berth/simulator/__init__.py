"""The trace-driven simulator: real job traces replayed on a described cluster through the
same placement code the operator runs."""
