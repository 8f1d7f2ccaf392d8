"""Signed cookies, sessions, CSRF tokens and the failed-login limit.

A session is a signed cookie (HMAC-SHA256 with the console's secret) naming
the user, a random session id and an expiry; nothing else is stored in it:
the role is read from the users database on every request, so a user
removed or demoted loses access at once. Logging out revokes the session id
(kept until it would have expired anyway).

The CSRF token of a session is derived from its id with the secret: one
token per session, nothing to store, never valid for another session.
Before login, the login form carries a token bound to a random cookie of
its own (a signed double submit), so a third-party page cannot log a
browser in as someone else either.
"""
import base64
import hashlib
import hmac
import json
import secrets
import threading
import time


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, secret):
        self._secret = secret

    def mac(self, purpose, data):
        return _b64(hmac.new(self._secret, purpose.encode() + b"|" + data,
                             hashlib.sha256).digest())

    def sign(self, purpose, payload, max_age):
        body = dict(payload, e=int(time.time() + max_age))
        raw = json.dumps(body, separators=(",", ":")).encode()
        return _b64(raw) + "." + self.mac(purpose, raw)

    def unsign(self, purpose, token):
        """The payload of a valid, unexpired token, or None."""
        if not token or token.count(".") != 1 or len(token) > 4096:
            return None
        body, mac = token.split(".")
        try:
            raw = _unb64(body)
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(mac, self.mac(purpose, raw)):
            return None
        try:
            payload = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("e"), int):
            return None
        if payload["e"] < time.time():
            return None
        return payload


class Session:
    __slots__ = ("user", "sid", "csrf")

    def __init__(self, user, sid, csrf):
        self.user = user
        self.sid = sid
        self.csrf = csrf


class SessionManager:
    COOKIE = "circus_session"
    LOGIN_COOKIE = "circus_login"

    def __init__(self, secret, lifetime_s):
        self.signer = Signer(secret)
        self.lifetime_s = lifetime_s
        self._revoked = {}  # sid -> its expiry
        self._lock = threading.Lock()

    def new(self, user_name):
        """(cookie value, Session) for a user who just logged in."""
        sid = secrets.token_urlsafe(18)
        value = self.signer.sign("session", {"u": user_name, "s": sid}, self.lifetime_s)
        return value, Session(user_name, sid, self.csrf_token(sid))

    def load(self, cookie_value):
        payload = self.signer.unsign("session", cookie_value)
        if payload is None or not isinstance(payload.get("u"), str):
            return None
        sid = payload.get("s")
        with self._lock:
            if sid in self._revoked:
                return None
        return Session(payload["u"], sid, self.csrf_token(sid))

    def revoke(self, session):
        now = time.time()
        with self._lock:
            for sid in [s for s, exp in self._revoked.items() if exp < now]:
                del self._revoked[sid]
            self._revoked[session.sid] = now + self.lifetime_s

    def csrf_token(self, sid):
        return self.signer.mac("csrf", str(sid).encode())

    # --- the login form's own token ---------------------------------------
    def login_nonce(self):
        """(cookie value, form token) for a login form."""
        nonce = secrets.token_urlsafe(18)
        return (self.signer.sign("login", {"n": nonce}, 3600),
                self.signer.mac("login-form", nonce.encode()))

    def check_login_token(self, cookie_value, token):
        payload = self.signer.unsign("login", cookie_value)
        if payload is None or not token:
            return False
        expected = self.signer.mac("login-form", str(payload.get("n")).encode())
        return hmac.compare_digest(expected, token)

    # --- one message carried over a redirect ------------------------------
    def flash(self, kind, text):
        return self.signer.sign("flash", {"k": kind, "m": text[:500]}, 120)

    def read_flash(self, value):
        payload = self.signer.unsign("flash", value)
        if payload is None:
            return None
        return {"kind": payload.get("k"), "text": payload.get("m")}


class FailureLimiter:
    """Failed logins per key (client address, user name): past `limit`
    failures within `window` seconds, a key waits until the oldest of them
    leaves the window. Bounded in memory: the oldest keys go first."""

    def __init__(self, limit=5, window=300.0, max_keys=10000):
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._failures = {}  # key -> [timestamps]
        self._lock = threading.Lock()

    def retry_after(self, keys, now=None):
        """Seconds before any of keys may try again (0: now)."""
        now = time.monotonic() if now is None else now
        wait = 0.0
        with self._lock:
            for key in keys:
                stamps = self._recent(key, now)
                if len(stamps) >= self.limit:
                    wait = max(wait, stamps[0] + self.window - now)
        return wait

    def failed(self, keys, now=None):
        now = time.monotonic() if now is None else now
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)
                self._failures[key] = self._failures.pop(key)  # most recent last
            while len(self._failures) > self.max_keys:
                del self._failures[next(iter(self._failures))]

    def succeeded(self, keys):
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)

    def _recent(self, key, now):
        stamps = self._failures.setdefault(key, [])
        while stamps and stamps[0] <= now - self.window:
            stamps.pop(0)
        return stamps
