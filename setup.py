"""Shim so that editable installs work with older pip versions; all metadata lives in setup.cfg."""

from setuptools import setup

setup()
