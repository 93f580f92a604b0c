"""The model layer: no Flask and no HTTP. Device choice (`device`), decoding uploads (`decode`),
loading and checking an export (`loading`, `integrity`, `reload`), batching (`batcher`),
prediction (`predictor`, `service`) and explanations (`explain`); its errors are in `errors`.

Nothing is imported here, so that importing one module (the stdlib-only batcher, say) costs
only that module.
"""
