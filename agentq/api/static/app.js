// agentq dashboard: live from /api/events; token-only data through fetch() with a bearer header.
// Everything from the daemon is put into the page as text (textContent), never as HTML.
"use strict";

const TOKEN_KEY = "agentq-token";
const MAX_EVENTS = 60;
const MAX_TASKS = 200;
const view = {
  snapshot: null,
  tasks: new Map(), // "project/name" -> task
  events: [],
  panes: null,
  token: sessionStorage.getItem(TOKEN_KEY) || "",
};

function $(sel) { return document.querySelector(sel); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else if (k === "onclick") node.addEventListener("click", v);
    else node[k] = v;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function ago(ms) {
  let s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  const h = Math.floor(s / 3600);
  return h + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
}

function badge(state) { return el("span", { class: "badge s-" + state }, state); }

function notice(text, isError) {
  const n = $("#notice");
  n.textContent = text;
  n.className = isError ? "error" : "";
  n.hidden = !text;
}

async function api(path, options) {
  const headers = Object.assign({ Accept: "application/json" }, (options || {}).headers);
  if (view.token) headers.Authorization = "Bearer " + view.token;
  const response = await fetch(path, Object.assign({}, options, { headers, cache: "no-store" }));
  let body = {};
  try { body = await response.json(); } catch (e) { body = {}; }
  return { status: response.status, body };
}

// -- tasks --------------------------------------------------------------------------------

function putTask(t) {
  const key = t.project + "/" + t.name;
  const old = view.tasks.get(key) || {};
  view.tasks.set(key, Object.assign({}, old, t));
  if (view.tasks.size > MAX_TASKS) {
    const oldest = [...view.tasks.entries()].sort((a, b) => a[1].changedMs - b[1].changedMs)[0];
    view.tasks.delete(oldest[0]);
  }
}

function fromListing(t) {
  return {
    project: t.project, name: t.name, state: t.state, title: t.title, session: t.session,
    reason: t.reason, changedMs: Date.parse(t.changed) || Date.now(),
  };
}

async function loadTasks() {
  const [recent, failed] = await Promise.all([
    api("/api/tasks?limit=100"), api("/api/tasks?state=failed&limit=100"),
  ]);
  view.tasks.clear();
  for (const t of [...(failed.body.tasks || []), ...(recent.body.tasks || [])]) putTask(fromListing(t));
  renderTasks();
}

// Events carry no titles or sessions: a listing shortly after fills them in.
let refreshTimer = null;
function scheduleRefresh() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(async () => {
    refreshTimer = null;
    const r = await api("/api/tasks?limit=100");
    for (const t of r.body.tasks || []) {
      const old = view.tasks.get(t.project + "/" + t.name);
      const fresh = fromListing(t);
      if (!old || fresh.changedMs >= old.changedMs - 5) putTask(fresh);
    }
    renderTasks();
  }, 700);
}

function onTaskEvent(e) {
  const at = Date.parse(e.time) || Date.now();
  const inboxKey = e.project + "/" + e.task;
  if (e.retried_from) view.tasks.delete(e.project + "/" + e.retried_from);
  const prev = view.tasks.get(inboxKey) || {};
  if (e.state === "done" || e.state === "failed") {
    view.tasks.delete(inboxKey);
    putTask(Object.assign({}, prev, {
      project: e.project, name: e.result || e.task, state: e.state,
      reason: e.reason || null, changedMs: at,
    }));
  } else {
    putTask(Object.assign({}, prev, { project: e.project, name: e.task, state: e.state, changedMs: at }));
  }
  renderTasks();
  scheduleRefresh();
}

function taskActions(t) {
  if (!view.token) return null;
  const cell = el("td", { class: "actions" });
  const path = "/api/tasks/" + encodeURIComponent(t.project) + "/" + encodeURIComponent(t.name);
  cell.append(el("button", { class: "view", onclick: () => showTask(path) }, "body"));
  if (t.state === "failed") {
    cell.append(el("button", { class: "retry", onclick: () => act(path + "/retry") }, "retry"));
  }
  if (t.state === "pending" || t.state === "working") {
    cell.append(el("button", { class: "cancel", onclick: () => act(path + "/cancel") }, "cancel"));
  }
  return cell;
}

function renderTasks() {
  const rows = [...view.tasks.values()].sort((a, b) => b.changedMs - a.changedMs);
  const body = $("#tasks tbody");
  body.replaceChildren(...rows.slice(0, 100).map((t) => el("tr", { "data-task": t.project + "/" + t.name },
    el("td", {}, t.project + "/" + t.name),
    el("td", { class: "state" }, badge(t.state)),
    el("td", { class: "title" }, t.title || ""),
    el("td", {}, t.session || ""),
    el("td", { class: "muted age", "data-at": t.changedMs }, ago(Date.now() - t.changedMs) + " ago"),
    taskActions(t) || el("td", {}),
  )));
  const failed = rows.filter((t) => t.state === "failed");
  $("#failed").replaceChildren(...(failed.length ? failed.slice(0, 50).map((t) => el("li", { "data-task": t.project + "/" + t.name },
    el("strong", {}, t.project + "/" + t.name), " ",
    el("span", { class: "reason" }, t.reason || "(reason not recorded)"), " ",
    el("span", { class: "muted" }, ago(Date.now() - t.changedMs) + " ago"),
    view.token ? el("button", { class: "retry", onclick: () => act("/api/tasks/" + encodeURIComponent(t.project) + "/" + encodeURIComponent(t.name) + "/retry") }, "retry") : null,
  )) : [el("li", { class: "muted" }, "no failed tasks")]));
}

async function showTask(path) {
  const r = await api(path);
  if (r.status !== 200) { notice(r.body.message || "HTTP " + r.status, true); return; }
  $("#task-title").textContent = r.body.project + "/" + r.body.name + " (" + r.body.state + ")";
  const footer = r.body.footer;
  const tail = footer ? "\n\n--- " + footer.status + " ---\n" + (footer.result || footer.error || "") : "";
  $("#task-body").textContent = r.body.body + tail;
  $("#task-dialog").showModal();
}

async function act(path, payload) {
  const r = await api(path, { method: "POST", body: JSON.stringify(payload || {}), headers: { "Content-Type": "application/json" } });
  notice(r.body.message || "HTTP " + r.status, r.status !== 200);
  if (r.status === 401) lock();
}

// -- snapshot: projects, sessions, accounts ------------------------------------------------

function renderProjects() {
  const projects = (view.snapshot && view.snapshot.projects) || {};
  const names = Object.keys(projects).sort();
  $("#projects tbody").replaceChildren(...names.map((name) => {
    const c = projects[name];
    return el("tr", { "data-project": name }, el("td", {}, name),
      ...["pending", "working", "delegated", "done", "failed"].map((s) => el("td", { class: "num " + s }, c[s] || 0)));
  }));
}

function renderSessions() {
  const sessions = (view.snapshot && view.snapshot.sessions) || [];
  const rows = [];
  for (const s of sessions) {
    const last = typeof s.last_activity === "number" ? ago(Date.now() - s.last_activity * 1000) + " ago" : "";
    const stale = typeof s.stale_since === "number" ? " · stale: no progress for " + ago(Date.now() - s.stale_since * 1000) : "";
    rows.push(el("tr", { "data-session": s.name, class: stale ? "stale" : "" },
      el("td", {}, s.name), el("td", { class: "state" }, badge(s.state)),
      el("td", { class: "task" }, (s.task || "") + stale), el("td", {}, s.account || ""), el("td", { class: "muted" }, last)));
    const pane = view.panes && view.panes[s.name];
    if (pane) rows.push(el("tr", { class: "pane-row" }, el("td", { colSpan: 5 }, el("pre", { class: "pane" }, pane.join("\n")))));
  }
  $("#sessions tbody").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colSpan: 5, class: "muted" }, "no pool sessions"))]));
}

function renderAccounts() {
  const a = (view.snapshot && view.snapshot.accounts) || {};
  const now = Date.now();
  $("#accounts").replaceChildren(...(a.accounts || []).map((acc) => {
    const until = acc.exhausted_until_ts ? acc.exhausted_until_ts * 1000 : null;
    const parts = [el("strong", {}, acc.name)];
    if (acc.name === a.active) parts.push(" ", badge("active"));
    if (until && until > now) parts.push(" ", el("span", { class: "reason countdown" }, "exhausted, resets in " + ago(until - now)));
    else if (acc.name !== a.active) parts.push(" ", el("span", { class: "muted" }, "ready"));
    return el("li", { "data-account": acc.name }, ...parts);
  }));
  const hold = $("#hold");
  if (a.partial_swap) { hold.textContent = "Partial swap: dispatching stopped until `agentq swap --clear`"; hold.hidden = false; }
  else if (a.hold) { hold.textContent = "Every account is exhausted: queue held until " + new Date(a.hold.until).toLocaleTimeString(); hold.hidden = false; }
  else hold.hidden = true;
}

// -- events --------------------------------------------------------------------------------

function describe(e) {
  if (e.kind === "task") return e.project + "/" + e.task + " → " + e.state + (e.reason ? " (" + e.reason + ")" : "");
  if (e.kind === "delivered") return e.project + "/" + e.task + " delivered to " + e.session;
  if (e.kind === "swap") return "swap " + e.from + " → " + e.to + " (" + (e.trigger || "") + ")" + (e.rolled_back ? " rolled back: " + e.error : "");
  if (e.message) return e.kind + ": " + e.message;
  if (e.kind === "notification") return "notice: " + e.message;
  const rest = Object.entries(e).filter(([k]) => !["id", "time", "kind"].includes(k)).map(([k, v]) => k + "=" + v);
  return e.kind + " " + rest.join(" ");
}

function addEvent(e) {
  view.events.unshift(e);
  view.events.length = Math.min(view.events.length, MAX_EVENTS);
  $("#events").replaceChildren(...view.events.map((x) => el("li", { "data-kind": x.kind },
    el("span", { class: "muted" }, (x.time || "").slice(11, 19)), " ", describe(x))));
}

function connect() {
  const source = new EventSource("/api/events");
  const conn = $("#conn");
  source.onopen = () => { conn.textContent = "live"; conn.className = "conn on"; };
  source.onerror = () => { conn.textContent = "reconnecting…"; conn.className = "conn off"; };
  source.addEventListener("snapshot", (m) => {
    view.snapshot = JSON.parse(m.data);
    renderProjects(); renderSessions(); renderAccounts();
  });
  source.addEventListener("resync", () => { loadTasks(); });
  source.addEventListener("task", (m) => { const e = JSON.parse(m.data); addEvent(e); onTaskEvent(e); });
  for (const kind of ["delivered", "swap", "hold", "partial_swap", "accounts_available", "notification", "task_stale", "daemon"]) {
    source.addEventListener(kind, (m) => addEvent(JSON.parse(m.data)));
  }
}

// -- the token ------------------------------------------------------------------------------

async function unlock(token) {
  view.token = token;
  const r = await api("/api/sessions?pane=1");
  if (r.status !== 200) { lock(); notice("that token was refused", true); return; }
  sessionStorage.setItem(TOKEN_KEY, token);
  view.panes = $("#show-panes").checked ? paneMap(r.body) : null;
  showSecrets(true);
  notice("");
}

function lock() {
  view.token = ""; view.panes = null;
  sessionStorage.removeItem(TOKEN_KEY);
  showSecrets(false);
}

function showSecrets(on) {
  for (const node of document.querySelectorAll(".secret")) node.hidden = !on;
  $("#lock").hidden = !on; $("#unlock").hidden = on; $("#token").hidden = on;
  $("#token").value = "";
  renderTasks(); renderSessions();
}

function paneMap(doc) {
  const out = {};
  for (const s of doc.sessions || []) if (s.pane) out[s.name] = s.pane;
  return out;
}

async function refreshPanes() {
  if (!view.token || !$("#show-panes").checked) { if (view.panes) { view.panes = null; renderSessions(); } return; }
  const r = await api("/api/sessions?pane=1");
  if (r.status === 200) { view.panes = paneMap(r.body); renderSessions(); }
}

document.addEventListener("DOMContentLoaded", () => {
  $("#auth").addEventListener("submit", (ev) => { ev.preventDefault(); const t = $("#token").value.trim(); if (t) unlock(t); });
  $("#lock").addEventListener("click", lock);
  $("#swap").addEventListener("click", () => act("/api/swap", {}));
  $("#show-panes").addEventListener("change", refreshPanes);
  showSecrets(false);
  if (view.token) unlock(view.token);
  loadTasks();
  connect();
  setInterval(() => { renderAccounts(); for (const c of document.querySelectorAll("td.age")) c.textContent = ago(Date.now() - Number(c.dataset.at)) + " ago"; }, 1000);
  setInterval(refreshPanes, 3000);
});
