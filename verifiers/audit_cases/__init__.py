"""Adversarial cases per area for ``python -m verifiers audit`` (see ``verifiers.audit``)."""
