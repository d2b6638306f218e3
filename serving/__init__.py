"""Serving (installed as `keras_deconvnet.serving`): TF Serving layout, client, local server.

Nothing here yet: see the project's serving issue.
"""
