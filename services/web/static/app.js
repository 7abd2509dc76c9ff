// Vigil dashboard behaviour: local times and live updates. Data from the server is only ever set as
// text (textContent), never as HTML, so nothing in an alert or event can become markup.
"use strict";

function localTimes(root) {
  const fmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  for (const el of root.querySelectorAll("time[datetime]")) {
    const at = new Date(el.getAttribute("datetime"));
    if (!isNaN(at)) el.textContent = fmt.format(at);
  }
}

function timeElement(iso) {
  const el = document.createElement("time");
  el.setAttribute("datetime", iso);
  el.title = iso.replace("T", " ").replace("Z", "") + " UTC";
  el.textContent = iso;
  return el;
}

function badge(kind, value) {
  const span = document.createElement("span");
  span.className = "badge " + kind + " " + kind + "-" + value.replace(/[^a-z]/g, "");
  span.textContent = value;
  return span;
}

function setBadge(el, kind, value) {
  if (!el) return;
  el.className = "badge " + kind + " " + kind + "-" + value.replace(/[^a-z]/g, "");
  el.textContent = value;
}

function note(text) {
  const el = document.getElementById("live-note");
  if (!el) return;
  el.textContent = text;
  el.hidden = false;
}

function listRow(ev) {
  const tr = document.createElement("tr");
  tr.dataset.key = ev.key;
  tr.className = "fresh";
  const cells = [];
  for (let i = 0; i < 7; i++) cells.push(tr.insertCell());
  const link = document.createElement("a");
  link.href = "/incidents/" + encodeURIComponent(ev.key);
  link.textContent = ev.key;
  cells[0].className = "key"; cells[0].append(link);
  cells[1].className = "title"; cells[1].textContent = ev.title;
  cells[2].append(badge("state", ev.state));
  cells[3].append(badge("sev", ev.severity));
  cells[4].className = "hosts"; cells[4].textContent = ev.hosts.join(", ");
  cells[4].dataset.label = "Hosts: ";
  cells[5].dataset.label = "Firing/alerts: ";
  cells[6].dataset.label = "Opened: ";
  cells[5].className = "num"; cells[5].textContent = ev.firing_count + "/" + ev.alert_count;
  cells[6].className = "opened"; cells[6].append(timeElement(ev.opened_at));
  localTimes(tr);
  return tr;
}

function bumpCount(state, by) {
  const el = document.querySelector('[data-count="' + state + '"]');
  if (el) el.textContent = String(Math.max(0, Number(el.textContent) + by));
}

function onListEvent(ev) {
  const table = document.getElementById("incidents");
  if (!table) return;
  const row = table.querySelector('tr[data-key="' + CSS.escape(ev.key) + '"]');
  if (row) {
    const before = row.querySelector(".state");
    if (before && before.textContent !== ev.state) {
      bumpCount(before.textContent, -1);
      bumpCount(ev.state, 1);
    }
    setBadge(row.querySelector(".state"), "state", ev.state);
    setBadge(row.querySelector(".sev"), "sev", ev.severity);
    const num = row.querySelector("td.num");
    if (num) num.textContent = ev.firing_count + "/" + ev.alert_count;
    row.classList.add("fresh");
  } else if (table.dataset.prepend && ev.type === "incident.opened") {
    const empty = table.tBodies[0].querySelector("tr.empty");
    if (empty) empty.remove();
    table.tBodies[0].prepend(listRow(ev));
    bumpCount(ev.state, 1);
    bumpCount("all", 1);
  } else if (ev.type === "incident.opened") {
    note("New incidents since this page was loaded: reload to see them.");
  }
}

function onIncidentEvent(ev) {
  if (ev.key !== document.body.dataset.key) return;
  if (ev.type === "report.ready") {
    note("A new version of the reports is ready.");
    return;
  }
  const state = document.getElementById("state");
  const before = state ? state.textContent : "";
  setBadge(state, "state", ev.state);
  setBadge(document.getElementById("severity"), "sev", ev.severity);
  if (before !== ev.state) {
    note("Now " + ev.state + (ev.actor ? " (by " + ev.actor + ")" : "") + ". Reload for the full timeline.");
  } else {
    note("This incident changed (" + ev.type.replace("incident.", "") + "). Reload for details.");
  }
}

// Events sent while the page loaded (or while the stream reconnected) are not replayed: on every (re)connect
// the incident page asks the API for the incident's current revision and catches up.
async function resyncIncident() {
  const key = document.body.dataset.key;
  const shown = Number(document.body.dataset.revision || 0);
  try {
    const answer = await fetch("/api/v1/incidents?limit=20&q=" + encodeURIComponent(key), { credentials: "same-origin" });
    if (!answer.ok) return;
    const body = await answer.json();
    const current = body.items.find((item) => item.key === key);
    if (current && current.revision > shown) {
      document.body.dataset.revision = String(current.revision);
      onIncidentEvent({ type: "incident.updated", key: key, state: current.state, severity: current.severity,
        actor: current.state === "acknowledged" ? current.acknowledged_by : current.resolved_by });
    }
  } catch (e) { /* the next reconnect tries again */ }
}

function live() {
  const mode = document.body.dataset.live;
  if (!mode || !window.EventSource) return;
  const status = document.getElementById("live-status");
  const source = new EventSource("/events");
  source.addEventListener("open", () => {
    if (status) status.textContent = "● live";
    if (mode === "incident") resyncIncident();
  });
  source.addEventListener("error", () => {
    if (status) status.textContent = "○ reconnecting";
    // A stream refused with an error status (503: too many live clients) is closed for good by the browser, not
    // retried: try again ourselves, later and spread out, as its Retry-After asks.
    if (source.readyState === EventSource.CLOSED) setTimeout(live, 30000 + Math.random() * 30000);
  });
  source.addEventListener("incident", (message) => {
    let ev;
    try { ev = JSON.parse(message.data); } catch (e) { return; }
    if (!ev || typeof ev.key !== "string") return;
    if (mode === "list" && ev.type.startsWith("incident.")) onListEvent(ev);
    if (mode === "incident") {
      if (ev.key === document.body.dataset.key && ev.revision) {
        if (ev.revision < Number(document.body.dataset.revision || 0)) return;  // older than what is shown
        document.body.dataset.revision = String(ev.revision);
      }
      onIncidentEvent(ev);
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  live();
});
