"""Test and CI setup only: see torchvision_stub.py (this folder is on PYTHONPATH in test runs)."""

import torchvision_stub  # noqa: F401
