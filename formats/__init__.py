"""The files that training writes and serving reads, each format with one owner module.

No Flask, no torch: `modelcard` (models/export.json), `labels` (cleaned.csv, top_losses.csv and
how a folder of images is labelled) and `atomic` (the one way a file is replaced in one step).
"""
