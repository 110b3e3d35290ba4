"""One spec file per model family (``<family>.py`` holding ``SPEC = FamilySpec(...)``).

Listed in harness/models/registry.py; see docs/contributing.md for adding one.
"""
