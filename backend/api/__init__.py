"""The HTTP entrypoint of the execution backend, framework-free.

``app.handle(ApiRequest) -> ApiResponse`` turns JSON into core commands (``OrderIntent``, the
multi-leg request, a strategy signal) and maps domain outcomes and errors to HTTP status codes.
No business logic lives here. ``functions/main.py`` adapts Firebase's flask request to
``ApiRequest``; tests call ``ApiApp.handle`` directly with a fake ``TokenVerifier``.

Importing this package is cheap: pydantic, firebase_admin and Firestore load inside the modules
that need them, when a request needs them.
"""
