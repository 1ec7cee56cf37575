"""The month-end close pack PDF: its figures (pack_data), charts and renderer (render)."""
