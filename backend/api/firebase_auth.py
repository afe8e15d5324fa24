"""``TokenVerifier`` on firebase-admin: ``auth.verify_id_token`` on a dedicated, lazily created app.

No credentials are needed to verify ID tokens: firebase-admin checks the signature against
Google's public certificates (production) or, when ``FIREBASE_AUTH_EMULATOR_HOST`` is set, accepts
the Auth emulator's unsigned tokens. The app only needs the project id.
"""
from __future__ import annotations

import os
import threading
from typing import Any

from backend.api.auth import Identity, identity_from_claims, unauthenticated
from backend.api.http import ApiError
from backend.logs import log_event

APP_NAME = "exec-api"


class FirebaseTokenVerifier:
    def __init__(self, project_id: str | None = None, *, check_revoked: bool = False, app: Any = None):
        self.project_id = project_id or os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCLOUD_PROJECT")
        self.check_revoked = check_revoked
        self._app = app
        self._lock = threading.Lock()

    def _get_app(self) -> Any:
        if self._app is not None:
            return self._app
        import firebase_admin

        with self._lock:
            if self._app is None:
                try:
                    self._app = firebase_admin.get_app(APP_NAME)
                except ValueError:
                    options = {"projectId": self.project_id} if self.project_id else None
                    self._app = firebase_admin.initialize_app(options=options, name=APP_NAME)
            return self._app

    def verify(self, token: str) -> Identity:
        from firebase_admin import auth

        app = self._get_app()
        try:
            claims = auth.verify_id_token(token, app=app, check_revoked=self.check_revoked)
        except auth.CertificateFetchError as exc:
            log_event("api.auth_unavailable", severity="ERROR", error=type(exc).__name__)
            raise ApiError(503, "AUTH_UNAVAILABLE", "token verification is temporarily unavailable",
                           headers={"Retry-After": "5"}) from None
        except auth.ExpiredIdTokenError:
            raise unauthenticated("ID token expired") from None
        except auth.RevokedIdTokenError:
            raise unauthenticated("ID token revoked") from None
        except auth.UserDisabledError:
            raise unauthenticated("user disabled") from None
        except (auth.InvalidIdTokenError, ValueError) as exc:
            raise unauthenticated(f"invalid ID token ({type(exc).__name__})") from None
        return identity_from_claims(claims)
