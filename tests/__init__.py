"""Tests for sc_remoted."""
