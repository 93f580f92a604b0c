"""The files that training writes and serving reads, each format with one owner module.

No Flask and no torch at import: `modelcard` (models/export.json), `labels` (cleaned.csv,
top_losses.csv and how a folder of images is labelled; listing a folder asks fastai's own image
lister, so that call loads fastai), `examples` (the example photos beside the model) and
`atomic` (the one way a file is replaced in one step).
"""
