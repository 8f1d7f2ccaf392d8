"""The JSON API: the pages' data and actions, for scripts.

Authentication: the browser's session cookie (then POSTs carry the
X-CSRF-Token header), or HTTP basic auth with the same users and roles
(then POSTs must be application/json, which no cross-site form can send).
Same roles, same actions (circus.web.actions), same audit trail as the
pages.

    curl -u alice:secret http://127.0.0.1:8080/api/endpoints
    curl -u alice:secret -H 'Content-Type: application/json' \\
         -d '{"action": "incr", "name": "web"}' http://127.0.0.1:8080/api/e/ID/action
"""
from circus.web.actions import ACTIONS, ActionError, run_action
from circus.web.settings import SettingsError
from circus.web.wsgi import HTTPError, json_response


def _connection(console, eid):
    connection = console.hub.get(eid)
    if connection is None:
        raise HTTPError(404, "no such circusd in this console")
    return connection


def whoami(console, request, identity):
    return json_response({"user": identity.user, "role": identity.role,
                          "read_only": console.settings.read_only,
                          "csrf_token": console.csrf_for(identity)})


def _describe(connection):
    model = connection.model
    with model.lock:
        return {"id": connection.id, "endpoint": connection.endpoint, "pubsub": model.pubsub,
                "stats_endpoint": model.stats_endpoint, "state": model.state,
                "error": model.error, "watchers": len(model.watchers)}


def endpoints(console, request, identity):
    return json_response({"endpoints": [_describe(c) for c in console.hub.all()]})


def add_endpoint(console, request, identity):
    from circus.web.pages import add_connection
    try:
        connection = add_connection(console, request.form)
    except SettingsError as exc:
        raise HTTPError(400, str(exc)) from None
    return json_response(_describe(connection), 201)


def watchers(console, request, identity, eid):
    connection = _connection(console, eid)
    with connection.model.lock:
        snapshot = connection.model.snapshot("overview")
    return json_response({"endpoint": snapshot["endpoint"], "watchers": snapshot["watchers"],
                          "stats": snapshot["stats"]})


def watcher(console, request, identity, eid):
    connection = _connection(console, eid)
    name = request.arg("name")
    with connection.model.lock:
        snapshot = connection.model.snapshot("watcher", name)
        found = connection.model.watchers.get(name)
        options = dict(found.options) if found else None
    if snapshot["watcher"] is None:
        raise HTTPError(404, "no watcher of that name")
    return json_response({"watcher": snapshot["watcher"], "processes": snapshot["processes"],
                          "stats": snapshot["stats"], "options": options})


def sockets(console, request, identity, eid):
    connection = _connection(console, eid)
    with connection.model.lock:
        return json_response({"sockets": connection.model.sockets_view()})


def events(console, request, identity, eid):
    connection = _connection(console, eid)
    with connection.model.lock:
        return json_response({"events": list(connection.model.timeline)})


def action(console, request, identity, eid):
    connection = _connection(console, eid)
    form = request.form
    act = ACTIONS.get(str(form.get("action")))
    if act is None:
        raise HTTPError(400, "unknown action; one of %s" % ", ".join(sorted(ACTIONS)))
    if not identity.can(act.role):
        console.refuse(request, identity, "%s needs the %s role" % (act.name, act.role))
    try:
        outcome = run_action(connection, act, str(form.get("name") or ""), form,
                             identity.audit())
    except ActionError as exc:
        raise HTTPError(400, str(exc)) from None
    reply = {k: v for k, v in outcome.reply.items() if k not in ("id",)}
    return json_response({"ok": outcome.ok, "message": outcome.message, "reply": reply},
                         outcome.status)
