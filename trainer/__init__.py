"""Continued pretraining, SFT, model merging and benchmark evaluation (see DESIGN.md)."""
