"""The Flask side of the app: one module per concern, each wired in by its `init_app(app)`."""
