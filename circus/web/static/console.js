/* circushttpd: live updates, charts and in-page actions.
 *
 * The pages work without this file. With it: one EventSource per page keeps
 * the tables and charts current, and action forms are sent with fetch
 * (the CSRF token in a header) instead of reloading the page.
 * Data from circusd only ever reaches the page through textContent and
 * attribute setters: never as HTML.
 */
(function () {
  "use strict";
  var body = document.body;
  var csrf = body.dataset.csrf || "";
  var view = body.dataset.view || "";
  var watcherName = body.dataset.watcher;
  var MAX_POINTS = 300;
  var MAX_TIMELINE = 100;
  var charts = {};  // "cpu\u0000name" -> {el, plot, xs, ys}

  // --- small helpers ---------------------------------------------------------
  function $(id) { return document.getElementById(id); }
  function setText(el, text) { if (el && el.textContent !== String(text)) el.textContent = String(text); }
  function field(root, name) { return root.querySelector('[data-field="' + name + '"]'); }
  function fmt(v) { return (v === null || v === undefined) ? "-" : String(v); }
  function bytes(v) {
    if (typeof v !== "number") return "-";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return i === 0 ? v.toFixed(0) + " B" : v.toFixed(1) + " " + units[i];
  }
  function age(started) {
    if (!started) return "-";
    var s = Math.max(0, Math.floor(Date.now() / 1000 - started));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + "m";
    return Math.floor(s / 86400) + "d" + String(Math.floor(s % 86400 / 3600)).padStart(2, "0") + "h";
  }
  function clock(t) {
    var d = new Date(t * 1000);
    return [d.getHours(), d.getMinutes(), d.getSeconds()].map(function (n) {
      return String(n).padStart(2, "0"); }).join(":");
  }
  function rowBy(tbody, key, value) {
    for (var i = 0; i < tbody.rows.length; i++) {
      if (tbody.rows[i].dataset[key] === String(value)) return tbody.rows[i];
    }
    return null;
  }
  function dropEmpty(tbody) {
    var empty = tbody.querySelector("tr.empty");
    if (empty) empty.remove();
  }
  function flash(kind, text) {
    var el = $("flash");
    if (!el) return;
    el.className = "flash " + kind;
    el.textContent = text;
    el.hidden = false;
  }

  // --- actions ---------------------------------------------------------------
  function send(url, form) {
    var data = new URLSearchParams(new FormData(form));
    data.set("csrf_token", csrf);
    return fetch(url, {
      method: "POST", body: data, credentials: "same-origin",
      headers: {"X-CSRF-Token": csrf, "Accept": "application/json"}
    }).then(function (response) {
      return response.json().catch(function () {
        return {ok: false, message: "the console answered " + response.status};
      });
    }).then(function (result) {
      flash(result.ok ? "ok" : "error", result.message || result.error || "");
      var action = data.get("action");
      if (result.ok && action === "rm") window.location.assign(body.dataset.base + "/");
      return result;
    }).catch(function () { flash("error", "the console did not answer"); });
  }

  var pendingForm = null;
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("js-action")) return;
    event.preventDefault();
    if (form.dataset.confirm) {
      var dialog = $("confirm-dialog");
      var text = form.dataset.confirm;
      var signum = form.querySelector('select[name="signum"]');
      if (signum) text = text + " (SIG" + signum.value + ")";
      setText($("confirm-text"), text);
      pendingForm = form;
      dialog.returnValue = "";
      dialog.showModal();
      return;
    }
    // getAttribute: form.action would be the input named "action"
    send(form.getAttribute("action"), form);
  });
  var dialog = $("confirm-dialog");
  if (dialog) {
    dialog.addEventListener("close", function () {
      var form = pendingForm;
      pendingForm = null;
      if (form && dialog.returnValue === "ok") send(form.dataset.post, form);
    });
  }

  // --- charts ----------------------------------------------------------------
  function chartFor(el, kind, name) {
    var key = kind + "\u0000" + name;
    if (charts[key] && charts[key].el === el) return charts[key];
    if (typeof uPlot === "undefined") return null;
    var spark = el.classList.contains("spark");
    var width = Math.max(120, el.clientWidth || (spark ? 140 : 480));
    var opts = {
      width: width, height: spark ? 36 : 160,
      legend: {show: false}, cursor: {show: !spark},
      // at least a minute wide: a new chart does not stretch its first seconds
      scales: {x: {time: true, range: function (u, min, max) { return [Math.min(min, max - 60), max]; }}, y: {range: function (u, min, max) { return [0, (max > 0 ? max * 1.25 : 1)]; }}},
      axes: spark ? [{show: false}, {show: false}] : [{}, {size: 40}],
      series: [{}, {stroke: kind === "cpu" ? "#2a7ab0" : "#b0632a", width: 1.5,
                    points: {show: false},
                    fill: kind === "cpu" ? "rgba(42,122,176,0.12)" : "rgba(176,99,42,0.12)"}]
    };
    var chart = {el: el, xs: [], ys: []};
    chart.plot = new uPlot(opts, [chart.xs, chart.ys], el);
    charts[key] = chart;
    return chart;
  }
  function chartsOf(name) {
    var found = [];
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      if (el.dataset.series === name) found.push(el);
    });
    return found;
  }
  function plot(name, points, replace) {
    chartsOf(name).forEach(function (el) {
      var kind = el.dataset.chart;
      var chart = chartFor(el, kind, name);
      if (!chart) return;
      if (replace) { chart.xs.length = 0; chart.ys.length = 0; }
      points.forEach(function (p) {
        if (chart.xs.length && p[0] <= chart.xs[chart.xs.length - 1]) return;
        chart.xs.push(p[0]);
        chart.ys.push(kind === "cpu" ? p[1] : p[2]);
      });
      while (chart.xs.length > MAX_POINTS) { chart.xs.shift(); chart.ys.shift(); }
      chart.plot.setData([chart.xs, chart.ys]);
      el.dataset.points = String(chart.xs.length);
    });
  }

  // --- overview --------------------------------------------------------------
  function watcherRow(summary) {
    var tbody = $("watchers") && $("watchers").tBodies[0];
    if (!tbody) return null;
    var row = rowBy(tbody, "name", summary.name);
    if (row) return row;
    var tpl = $("tpl-watcher-row");
    row = tpl.content.firstElementChild.cloneNode(true);
    row.dataset.name = summary.name;
    var link = row.querySelector("td.name a");
    link.textContent = summary.name;
    link.setAttribute("href", body.dataset.stream.split("/stream")[0] + "/watcher?name=" + encodeURIComponent(summary.name));
    var nameInput = row.querySelector('input[name="name"]');
    if (nameInput) nameInput.value = summary.name;
    row.querySelectorAll("[data-chart]").forEach(function (el) { el.dataset.series = summary.name; });
    dropEmpty(tbody);
    var next = null;
    for (var i = 0; i < tbody.rows.length; i++) {
      if (tbody.rows[i].dataset.name > summary.name) { next = tbody.rows[i]; break; }
    }
    tbody.insertBefore(row, next);
    return row;
  }
  function updateWatcherRow(summary) {
    var tbody = $("watchers") && $("watchers").tBodies[0];
    if (!tbody) return;
    if (summary.removed) {
      var gone = rowBy(tbody, "name", summary.name);
      if (gone) gone.remove();
    } else {
      var row = watcherRow(summary);
      setText(field(row, "ready"), summary.ready);
      setText(field(row, "numprocesses"), summary.numprocesses === null ? "?" : summary.numprocesses);
      setText(field(row, "cmd"), summary.cmd);
      var button = row.querySelector("td.toggle button");
      var label = button || field(row, "status");
      setText(label, summary.status);
      label.className = "status status-" + summary.status;
      var actionInput = row.querySelector('td.toggle input[name="action"]');
      if (actionInput) {
        var active = summary.status === "active" || summary.status === "starting";
        actionInput.value = active ? "stop" : "start";
        button.dataset.action = actionInput.value;
      }
    }
    setText($("watcher-count"), tbody.querySelectorAll("tr[data-name]").length);
  }
  function updateOverviewStats(stats) {
    var tbody = $("watchers") && $("watchers").tBodies[0];
    Object.keys(stats.latest || {}).forEach(function (name) {
      var point = stats.latest[name];
      var row = tbody && rowBy(tbody, "name", name);
      if (row) { setText(field(row, "cpu"), fmt(point[1])); setText(field(row, "mem"), fmt(point[2])); }
      plot(name, [point], false);
    });
    var circus = $("circus-procs");
    if (circus && stats.circus) {
      var cbody = circus.tBodies[0];
      var seen = {};
      stats.circus.forEach(function (p) {
        seen[p.pid] = true;
        var row = rowBy(cbody, "pid", p.pid);
        if (!row) {
          dropEmpty(cbody);
          row = cbody.insertRow();
          row.dataset.pid = p.pid;
          for (var i = 0; i < 5; i++) row.insertCell();
        }
        [p.name, p.pid, fmt(p.cpu), fmt(p.mem), bytes(p.rss)].forEach(function (v, i) { setText(row.cells[i], v); });
      });
      Array.prototype.slice.call(cbody.rows).forEach(function (row) {
        if (row.dataset.pid && !seen[row.dataset.pid]) row.remove();
      });
    }
  }

  // --- watcher page ----------------------------------------------------------
  function updateSummary(summary) {
    if (summary.removed) { flash("error", "this watcher has been removed"); setText($("w-status"), "removed"); return; }
    setText($("w-status"), summary.status);
    $("w-status").className = "status status-" + summary.status;
    setText($("w-ready"), summary.ready);
    setText($("w-numprocesses"), summary.numprocesses === null ? "?" : summary.numprocesses);
  }
  function processRow(process) {
    var tbody = $("processes").tBodies[0];
    var row = rowBy(tbody, "pid", process.pid);
    if (process.state === "gone") { if (row) row.remove(); return null; }
    if (!row) {
      row = $("tpl-process-row").content.firstElementChild.cloneNode(true);
      row.dataset.pid = process.pid;
      row.querySelectorAll('input[name="pid"]').forEach(function (input) { input.value = process.pid; });
      row.querySelectorAll("form[data-confirm]").forEach(function (form) {
        form.dataset.confirm = form.dataset.confirm.replace("this process", "process " + process.pid);
      });
      setText(field(row, "pid"), process.pid);
      dropEmpty(tbody);
      var next = null;
      for (var i = 0; i < tbody.rows.length; i++) {
        if (Number(tbody.rows[i].dataset.pid) > process.pid) { next = tbody.rows[i]; break; }
      }
      tbody.insertBefore(row, next);
    }
    if (process.started) row.dataset.started = process.started;
    var state = field(row, "state");
    setText(state, process.state);
    state.className = "pstate-" + process.state;
    setText(field(row, "age"), age(Number(row.dataset.started)));
    return row;
  }
  function updateProcessStats(stats) {
    var tbody = $("processes") && $("processes").tBodies[0];
    if (!tbody) return;
    Object.keys(stats.processes || {}).forEach(function (pid) {
      var s = stats.processes[pid];
      var row = rowBy(tbody, "pid", pid);
      if (!row) return;
      if (!row.dataset.started && s.create_time) row.dataset.started = s.create_time;
      setText(field(row, "cpu"), fmt(s.cpu));
      setText(field(row, "mem"), fmt(s.mem));
      setText(field(row, "rss"), bytes(s.rss));
    });
    if (stats.latest) {
      setText($("w-cpu"), fmt(stats.latest[1]));
      setText($("w-mem"), fmt(stats.latest[2]));
      plot(stats.watcher, [stats.latest], false);
    }
  }

  // --- the log tail ----------------------------------------------------------
  // lines arrive in batches (circus.web.tail): appended at the bottom, the
  // oldest removed past MAX_LOG, the view kept at the bottom unless scrolled up
  var logList = $("log");
  var logView = $("log-view");
  var MAX_LOG = logView ? Number(logView.dataset.keep) || 500 : 500;
  function span(cls, text) {
    var el = document.createElement("span");
    el.className = cls;
    el.textContent = text;
    return el;
  }
  function logItem(line) {
    var item = document.createElement("li");
    if (typeof line.text === "string") {
      item.className = "line stream-" + (line.stream === "stderr" ? "stderr" : "stdout");
      item.append(span("pid", fmt(line.pid)), " ", span("stream", fmt(line.stream)), " ",
                  span("text", line.text));
    } else {
      item.className = "gap";
      item.textContent = line.skipped !== undefined
        ? "\u2026 " + line.skipped + " bytes of " + fmt(line.pid) + "'s " + fmt(line.stream) + " skipped"
        : "\u2026 " + fmt(line.dropped) + " older lines dropped";
    }
    return item;
  }
  function showOutput(data) {
    if (!logList) return;
    var atBottom = logView.scrollHeight - logView.scrollTop - logView.clientHeight < 30;
    if (data.reset) logList.replaceChildren();
    var lines = data.lines || [];
    if (lines.length) {
      var empty = logList.querySelector("li.empty");
      if (empty) empty.remove();
      var batch = document.createDocumentFragment();
      lines.slice(-MAX_LOG).forEach(function (line) { batch.append(logItem(line)); });
      logList.append(batch);
      while (logList.children.length > MAX_LOG) logList.firstElementChild.remove();
    }
    if (!logList.children.length) {
      var none = document.createElement("li");
      none.className = "empty";
      none.textContent = "No output.";
      logList.append(none);
    }
    setText($("log-note"), data.note || "");
    if (atBottom || data.reset) logView.scrollTop = logView.scrollHeight;
    logList.dataset.batches = String(Number(logList.dataset.batches || 0) + 1);
  }
  if (logView) logView.scrollTop = logView.scrollHeight;

  // --- timeline, sockets, connection state -----------------------------------
  function addEvent(entry, atEnd) {
    var list = $("timeline");
    if (!list) return;
    var empty = list.querySelector("li.empty");
    if (empty) empty.remove();
    var item = document.createElement("li");
    var time = document.createElement("time");
    time.textContent = clock(entry.time);
    var topic = document.createElement("span");
    topic.className = "topic";
    topic.textContent = entry.topic;
    var fields = document.createElement("span");
    fields.className = "fields";
    fields.textContent = JSON.stringify(entry.fields);
    item.append(time, " ", topic, " ", fields);
    if (atEnd) list.append(item); else list.prepend(item);
    while (list.children.length > MAX_TIMELINE) list.lastElementChild.remove();
  }
  function setTimeline(entries) {
    var list = $("timeline");
    if (!list) return;
    list.replaceChildren();
    entries.slice().reverse().forEach(function (e) { addEvent(e, true); });
  }
  function updateSockets(rows) {
    var table = $("sockets");
    if (!table) return;
    rows.forEach(function (s) {
      var row = rowBy(table.tBodies[0], "fd", s.fd);
      if (!row) return;
      setText(field(row, "connections"), fmt(s.connections));
      setText(field(row, "queued"), fmt(s.queued) + (s.backlog ? " / " + s.backlog : ""));
      setText(field(row, "drops"), fmt(s.drops));
      setText(field(row, "new"), fmt(s.new));
    });
  }
  function updateEndpoint(info) {
    var el = $("conn-state");
    if (!el) return;
    el.dataset.state = info.state;
    setText(el, info.state + (info.error ? ": " + info.error : ""));
  }

  // --- the stream ------------------------------------------------------------
  function onSnapshot(data) {
    updateEndpoint(data.endpoint);
    if (view === "overview") {
      var names = {};
      data.watchers.forEach(function (w) { names[w.name] = true; updateWatcherRow(w); });
      var tbody = $("watchers").tBodies[0];
      Array.prototype.slice.call(tbody.rows).forEach(function (row) {
        if (row.dataset.name && !names[row.dataset.name]) row.remove();
      });
      Object.keys(data.history).forEach(function (name) { plot(name, data.history[name], true); });
      updateOverviewStats({latest: {}, circus: data.stats.circus});
    } else if (view === "watcher") {
      if (data.watcher) updateSummary(data.watcher);
      var live = {};
      data.processes.forEach(function (p) { live[p.pid] = true; processRow(p); });
      var ptbody = $("processes").tBodies[0];
      Array.prototype.slice.call(ptbody.rows).forEach(function (row) {
        if (row.dataset.pid && !live[row.dataset.pid]) row.remove();
      });
      plot(watcherName, data.history[watcherName] || [], true);
      updateProcessStats({processes: data.stats.processes, watcher: watcherName});
      setTimeline(data.timeline);
      // a tail already running for this watcher: its lines replace the page's
      if (data.output && data.output.ready) showOutput({reset: true, lines: data.output.lines, note: data.output.note});
    } else if (view === "sockets") {
      updateSockets(data.sockets);
    } else if (view === "events") {
      setTimeline(data.timeline);
    }
  }

  var handlers = {
    snapshot: onSnapshot,
    endpoint: updateEndpoint,
    watcher: function (d) { if (view === "overview") updateWatcherRow(d); else if (view === "watcher") updateSummary(d); },
    process: function (d) { if (view === "watcher") processRow(d); },
    stats: function (d) { if (view === "overview") updateOverviewStats(d); },
    pstats: function (d) { if (view === "watcher") updateProcessStats(d); },
    sockets: updateSockets,
    event: function (d) { addEvent(d, false); },
    output: function (d) { if (view === "watcher") showOutput(d); }
  };

  if (body.dataset.stream && window.EventSource) {
    var source = new EventSource(body.dataset.stream);
    Object.keys(handlers).forEach(function (kind) {
      source.addEventListener(kind, function (message) {
        handlers[kind](JSON.parse(message.data));
        if (kind === "snapshot") body.dataset.snapshots = String(Number(body.dataset.snapshots || 0) + 1);
      });
    });
    source.onopen = function () {
      body.dataset.live = "open";
      setText($("log-mode"), "Following live: what the processes write appears at the bottom.");
    };
    source.onerror = function () { body.dataset.live = "retrying"; };
  }

  // ages move on without any message
  setInterval(function () {
    var table = $("processes");
    if (!table) return;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      if (row.dataset.started) setText(field(row, "age"), age(Number(row.dataset.started)));
    });
  }, 1000);
})();
