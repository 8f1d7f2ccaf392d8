"""Who may use the console, and what each may do.

Users come from an htpasswd-format file (--auth-file) and/or inline lines
(the ini's httpd_users), one user a line::

    alice:$2y$12$........................................:admin
    bob:{SHA}fEqNCco3Yq9h5ZUglD3CZJT4lBs=:operator
    carol:$2b$12$.....................................

The third field is the role (viewer, operator or admin; viewer when
absent). nginx reads the same file (it takes a third field as a comment),
so one file can serve the nginx recipe and the console. Hash schemes:
bcrypt (``htpasswd -B``: $2y$, $2b$, $2a$) and {SHA} (``htpasswd -s``,
unsalted SHA-1: accepted for nginx's sake, bcrypt is better). MD5-crypt
($apr1$, htpasswd's default), crypt() and plain-text lines are refused with
an error naming the line: silently accepting a weak or unsupported hash
would be worse.
"""
import base64
import hashlib
import hmac

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)
_RANK = {role: rank for rank, role in enumerate(ROLES)}

# checked against when the user does not exist, so that an unknown name
# costs as long as a wrong password (no user enumeration by timing)
_DUMMY_BCRYPT = b"$2b$12$8UFSurmI7mIGYCA0coo3nul2ZMXmw3GRk/VNIidVAFx3NOXkbFg7O"


class UsersError(ValueError):
    """An unusable users file or line; the message names it."""


def role_allows(role, needed):
    """Does role include the rights of needed (viewer < operator < admin)?"""
    return role in _RANK and _RANK[role] >= _RANK[needed]


class User:
    __slots__ = ("name", "role", "_hash")

    def __init__(self, name, password_hash, role):
        self.name = name
        self.role = role
        self._hash = password_hash

    def check_password(self, password):
        return verify(self._hash, password)

    def __repr__(self):
        return "<User %s (%s)>" % (self.name, self.role)


class Users:
    """The user database: Users.load(auth_file, lines)."""

    def __init__(self, users=()):
        self._users = {u.name: u for u in users}

    @classmethod
    def load(cls, auth_file=None, lines=()):
        users = []
        if auth_file:
            try:
                with open(auth_file, encoding="utf-8") as handle:
                    text = handle.read()
            except OSError as exc:
                raise UsersError("cannot read the users file %s: %s"
                                 % (auth_file, exc.strerror or exc)) from None
            users += parse(text, auth_file)
        users += parse("\n".join(lines), "httpd_users")
        names = set()
        for user in users:
            if user.name in names:
                raise UsersError("user %r is defined twice" % user.name)
            names.add(user.name)
        return cls(users)

    def __bool__(self):
        return bool(self._users)

    def __len__(self):
        return len(self._users)

    def get(self, name):
        return self._users.get(name)

    def authenticate(self, name, password):
        """The User if name and password match, else None (constant-ish time)."""
        user = self._users.get(name)
        if user is None:
            verify(_DUMMY_BCRYPT.decode(), password)
            return None
        return user if user.check_password(password) else None


def parse(text, source):
    users = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = "%s, line %d" % (source, number)
        name, sep, rest = line.partition(":")
        if not sep or not name or not rest:
            raise UsersError("%s: expected user:hash[:role]" % where)
        password_hash, _, role = rest.partition(":")
        role = role.strip().lower() or VIEWER
        if role not in ROLES:
            raise UsersError("%s: user %r has an unknown role %r (one of %s)"
                             % (where, name, role, ", ".join(ROLES)))
        scheme_problem = unsupported(password_hash)
        if scheme_problem:
            raise UsersError("%s: user %r: %s" % (where, name, scheme_problem))
        users.append(User(name, password_hash, role))
    return users


def unsupported(password_hash):
    """Why a hash cannot be used, or None when it can."""
    if password_hash.startswith(("$2y$", "$2b$", "$2a$")):
        if len(password_hash) != 60:
            return "malformed bcrypt hash"
        return None
    if password_hash.startswith("{SHA}"):
        try:
            if len(base64.b64decode(password_hash[5:], validate=True)) != 20:
                return "malformed {SHA} hash"
        except ValueError:
            return "malformed {SHA} hash"
        return None
    if password_hash.startswith("$apr1$") or password_hash.startswith("$1$"):
        return "MD5-crypt hashes are not supported; use bcrypt (htpasswd -B)"
    if password_hash.startswith("$"):
        return "unsupported hash scheme; use bcrypt (htpasswd -B)"
    return ("plain-text or crypt() passwords are not accepted; "
            "use bcrypt (htpasswd -B) or {SHA} (htpasswd -s)")


def verify(password_hash, password):
    if isinstance(password, str):
        password = password.encode("utf-8")
    if password_hash.startswith("{SHA}"):
        digest = base64.b64encode(hashlib.sha1(password).digest()).decode()
        return hmac.compare_digest(digest, password_hash[5:])
    import bcrypt
    try:
        # bcrypt reads 72 bytes at most; longer passwords are refused by
        # recent versions of the library rather than cut: cut them the way
        # htpasswd -B did when it hashed them
        return bcrypt.checkpw(password[:72], password_hash.encode())
    except ValueError:
        return False


def hash_password(password, rounds=12):
    """A bcrypt line's hash for password (for tests and the README's one-liner)."""
    import bcrypt
    return bcrypt.hashpw(password.encode("utf-8")[:72], bcrypt.gensalt(rounds)).decode()
