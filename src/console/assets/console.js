// The sessiond console. Plain JavaScript, no dependencies: it polls the console API
// (cookie session; changes carry the CSRF header) and draws its own charts.
"use strict";

const $ = (id) => document.getElementById(id);
let csrf = "";
let page = "dashboard";
const history = []; // {t, ops, errs, p50, p99} per second, the last 120
let last = null; // the previous overview reading

async function api(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: {} };
  if (method !== "GET") {
    opts.headers["X-CSRF-Token"] = csrf;
  }
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    throw new Error(data.error || r.status + " " + r.statusText);
  }
  return data;
}

function fmt(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  if (n >= 1e9) return (n / 1e9).toFixed(2) + "G";
  if (n >= 1e6) return (n / 1e6).toFixed(2) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return String(Math.round(n * 100) / 100);
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

function us(n) {
  if (n === null || n === undefined) return "–";
  return n >= 1000 ? (n / 1000).toFixed(n >= 10000 ? 0 : 1) + " ms" : n + " µs";
}

// The upper bound of the bucket holding quantile q of per-bucket counts.
function quantile(bounds, counts, q) {
  const total = counts.reduce((a, b) => a + b, 0);
  if (!total) return null;
  const rank = Math.max(1, Math.ceil(total * q));
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i];
    if (seen >= rank) return bounds[Math.min(i, bounds.length - 1)];
  }
  return bounds[bounds.length - 1];
}

function table(el, head, rows) {
  el.replaceChildren();
  const tr = document.createElement("tr");
  for (const h of head) {
    const th = document.createElement("th");
    th.textContent = h;
    tr.append(th);
  }
  el.append(tr);
  for (const row of rows) {
    const r = document.createElement("tr");
    for (const cell of row) {
      const td = document.createElement("td");
      if (cell instanceof Node) td.append(cell); else td.textContent = cell === null || cell === undefined ? "–" : String(cell);
      r.append(td);
    }
    el.append(r);
  }
}

function chart(canvas, series) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 36;
  ctx.clearRect(0, 0, w, h);
  const all = series.flatMap((s) => s.values).filter((v) => v !== null);
  const max = Math.max(1, ...all) * 1.1;
  ctx.strokeStyle = "#dde"; ctx.fillStyle = "#667"; ctx.font = "11px sans-serif";
  for (let i = 0; i <= 4; i++) {
    const y = pad / 2 + (h - pad) * i / 4;
    ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w - 4, y); ctx.stroke();
    ctx.fillText(fmt(max * (4 - i) / 4), 2, y + 4);
  }
  series.forEach((s, k) => {
    ctx.strokeStyle = s.color; ctx.lineWidth = 2; ctx.beginPath();
    let started = false;
    s.values.forEach((v, i) => {
      if (v === null) return;
      const x = pad + (w - pad - 4) * i / 119;
      const y = pad / 2 + (h - pad) * (1 - v / max);
      if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
    });
    ctx.stroke();
    ctx.fillStyle = s.color; ctx.fillText(s.label, w - 120 + k * 50, 12);
  });
}

async function tickDashboard() {
  const o = await api("GET", "/console/api/overview");
  $("mode").textContent = o.mode + " · v" + o.version;
  $("lat-source").textContent = o.latency_source;
  const now = performance.now() / 1000;
  if (last) {
    const dt = Math.max(0.001, now - last.t);
    const d = o.latency_counts.map((c, i) => c - last.o.latency_counts[i]);
    const hits = o.keyspace_hits - last.o.keyspace_hits, misses = o.keyspace_misses - last.o.keyspace_misses;
    const point = {
      ops: (o.commands - last.o.commands) / dt,
      errs: (o.errors - last.o.errors) / dt,
      p50: quantile(o.latency_bounds_us, d, 0.5),
      p99: quantile(o.latency_bounds_us, d, 0.99),
      hit: hits + misses ? hits / (hits + misses) : null,
    };
    history.push(point);
    if (history.length > 120) history.shift();
    $("ops").textContent = fmt(point.ops);
    $("errs").textContent = fmt(point.errs);
    $("p50").textContent = us(point.p50);
    $("p99").textContent = us(point.p99);
    $("hit").textContent = point.hit === null ? "–" : (point.hit * 100).toFixed(1) + "%";
  }
  last = { t: now, o };
  $("clients").textContent = fmt(o.connected_clients);
  $("keys").textContent = fmt(o.keys);
  $("memory").textContent = bytes(o.used_memory);
  const pad = (vals) => Array(Math.max(0, 120 - vals.length)).fill(null).concat(vals);
  chart($("chart-ops"), [
    { label: "ops/s", color: "#2b6cd4", values: pad(history.map((p) => p.ops)) },
    { label: "errors/s", color: "#c33", values: pad(history.map((p) => p.errs)) },
  ]);
  chart($("chart-lat"), [
    { label: "p50", color: "#2b8a3e", values: pad(history.map((p) => p.p50)) },
    { label: "p99", color: "#d4792b", values: pad(history.map((p) => p.p99)) },
  ]);
}

let migration = null;

function confirmStep(text) {
  return new Promise((resolve) => {
    const d = $("confirm");
    $("confirm-text").textContent = text;
    const done = (v) => { d.close(); $("confirm-yes").onclick = null; $("confirm-no").onclick = null; resolve(v); };
    $("confirm-yes").onclick = () => done(true);
    $("confirm-no").onclick = () => done(false);
    d.showModal();
  });
}

// What a stage means, for the confirmation.
const STAGES = {
  off: "only the old store is used",
  dualwrite: "the old store serves; writes also go to the new store",
  shadow: "the old store serves; reads are also made on the new store and compared",
  live: "the new store serves (a miss falls back to the old store and is copied forward); the old store is still written",
  rampdown: "the new store serves; the old store is still written, no longer compared",
  complete: "only the new store is used",
};

async function changeMigration(body) {
  $("mig-error").textContent = "";
  try {
    await api("PUT", "/console/api/migration", body);
  } catch (e) {
    $("mig-error").textContent = e.message;
  }
  await tickMigration();
}

async function tickMigration() {
  const m = await api("GET", "/console/api/migration");
  migration = m;
  $("mig-none").hidden = m.migrating;
  $("mig").hidden = !m.migrating;
  if (!m.migrating) return;
  $("mig-stage").textContent = m.stage;
  $("mig-percent").textContent = m.percent;
  $("mig-previous").textContent = m.previous_stage;
  $("mig-stores").textContent = m.stores.old + " → " + m.stores.new;
  $("mig-back").textContent = "Step back to " + m.previous_stage;
  $("mig-back").disabled = m.stage === "off";
  $("mig-guard").textContent = m.guard ? "guard on: " + m.guard : "guard off";
  const sel = $("stage-select");
  if (!sel.options.length) {
    for (const s of m.stages) { const o = document.createElement("option"); o.value = s; o.textContent = s; sel.append(o); }
    sel.value = m.stage;
    $("percent-input").value = m.percent;
  }
  table($("mig-compare"), ["match", "mismatch", "missing in new", "missing in old", "errors", "fallback reads", "copied forward", "secondary write errors"],
    [[m.compare.match, m.compare.mismatch, m.compare.missing_in_new, m.compare.missing_in_old, m.compare.errors, m.fallback_reads, m.copied_forward, m.secondary_write_errors]]);
  table($("mig-latency"), ["store", "calls", "p50", "p99", "p99.9", "max"],
    ["old", "new"].map((s) => { const l = m.latency_us[s] || {}; return [s + " (" + m.stores[s] + ")", l.count, l.p50_us, l.p99_us, l.p999_us, l.max_us]; }));
  table($("mig-samples"), ["when", "operation", "kind", "session (hashed)"],
    m.mismatch_samples.slice(-20).reverse().map((x) => [new Date(x.at_ms).toLocaleTimeString(), x.op, x.kind, x.id_hash]));
}

async function tickUpstream() {
  const u = await api("GET", "/console/api/upstream");
  if (!u.gateway) { $("up-summary").textContent = "Not a gateway: start sessiond with --upstream."; $("upstream").replaceChildren(); $("up-timeline").replaceChildren(); return; }
  $("up-summary").textContent = u.mode + " " + u.url + " · primary switches seen: " + u.primary_switches + (u.last_switch ? " · last: " + u.last_switch : "");
  table($("upstream"), ["node", "role", "health", "requests", "errors", "timeouts", "ejections", "p99", "last error"],
    u.nodes.map((n) => { const s = document.createElement("span"); s.className = n.healthy ? "up" : "down"; s.textContent = n.healthy ? "up" : "down"; return [n.addr, n.role, s, n.requests, n.errors, n.timeouts, n.ejections, us(n.p99_us), n.last_error]; }));
  table($("up-timeline"), ["when", "event"], u.timeline.map((e) => [new Date(e.at_ms).toLocaleString(), e.event]));
}

async function tickPersistence() {
  const p = await api("GET", "/console/api/persistence");
  if (!p.persistence) { table($("persistence"), ["persistence"], [["none in this mode"]]); return; }
  const rows = Object.entries(p.info).map(([k, v]) => [k, v]);
  rows.push(["fsync p50", us(p.fsync_p50_us)], ["fsync p99", us(p.fsync_p99_us)]);
  table($("persistence"), ["field", "value"], rows);
}

async function tickSlowlog() {
  const s = await api("GET", "/console/api/slowlog");
  table($("slowlog"), ["id", "when", "duration", "command", "client"],
    s.entries.map((e) => [e.id, new Date(e.at * 1000).toLocaleTimeString(), us(e.micros), e.args.join(" "), e.client + (e.name ? " (" + e.name + ")" : "")]));
}

async function tickAudit() {
  const a = await api("GET", "/console/api/audit");
  table($("audit"), ["when", "who", "what", "from", "to", "why"],
    a.entries.map((e) => [new Date(e.at_ms).toLocaleString(), e.who, e.what, e.from, e.to, e.why]));
}

const TICKS = { dashboard: tickDashboard, migration: tickMigration, upstream: tickUpstream, persistence: tickPersistence, slowlog: tickSlowlog, audit: tickAudit };

function show(p) {
  page = p;
  for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b.dataset.page === p);
  for (const s of document.querySelectorAll(".page")) s.hidden = s.id !== "page-" + p;
  refresh();
}

async function refresh() {
  try {
    // The dashboard keeps its history even while another page is shown.
    await tickDashboard();
    if (page !== "dashboard" && TICKS[page]) await TICKS[page]();
  } catch (e) {
    if (String(e.message).includes("log in")) { loggedOut(); }
  }
}

function loggedOut() {
  $("login").hidden = false;
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  for (const s of document.querySelectorAll(".page")) s.hidden = true;
}

async function start() {
  const s = await api("GET", "/console/api/session");
  if (!s.logged_in) { loggedOut(); return; }
  csrf = s.csrf;
  $("who").textContent = s.who;
  $("login").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = false;
  show(page);
}

let lookedUp = null;

function wire() {
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("login-error").textContent = "";
    try {
      await api("POST", "/console/login", { token: $("token").value });
      $("token").value = "";
      await start();
    } catch (e) {
      $("login-error").textContent = e.message;
    }
  });
  $("logout").addEventListener("click", async () => {
    await api("POST", "/console/logout").catch(() => {});
    csrf = "";
    loggedOut();
  });
  for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => show(b.dataset.page));
  $("mig-apply").addEventListener("click", async () => {
    const stage = $("stage-select").value, percent = Number($("percent-input").value);
    const text = "Change the migration from " + migration.stage + " at " + migration.percent + "% to " + stage + " at " + percent +
      "%? In " + stage + ", " + STAGES[stage] + ". Sessions outside the " + percent + "% stay in the stage before it.";
    if (await confirmStep(text)) await changeMigration({ stage, percent });
  });
  $("mig-back").addEventListener("click", async () => {
    await changeMigration({ stage: migration.previous_stage });
    $("stage-select").value = migration.stage;
  });
  $("guard-apply").addEventListener("click", () => changeMigration({ guard: $("guard-input").value.trim() || "off" }));
  $("session-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("session-message").textContent = "";
    const key = $("session-key").value;
    const r = await api("GET", "/console/api/sessions?key=" + encodeURIComponent(key));
    lookedUp = r.exists ? key : null;
    $("session-logout").hidden = !r.exists;
    const rows = [["exists", r.exists ? "yes" : "no"]];
    if (r.exists) {
      rows.push(["type", r.type], ["TTL", r.ttl_ms === null ? "none" : Math.round(r.ttl_ms / 1000) + " s"], ["size", bytes(r.size_bytes)], ["store", r.store]);
      if (r.value !== null) rows.push(["value", r.value]);
    }
    table($("session-result"), ["", key], rows);
  });
  $("session-logout").addEventListener("click", async () => {
    if (!lookedUp) return;
    if (!(await confirmStep("Log this session out? Its data is deleted and its user must log in again."))) return;
    const r = await api("DELETE", "/console/api/sessions?key=" + encodeURIComponent(lookedUp));
    $("session-message").textContent = r.deleted ? "Logged out." : "It was already gone.";
    $("session-logout").hidden = true;
    table($("session-result"), ["", lookedUp], [["exists", "no"]]);
    lookedUp = null;
  });
  setInterval(() => { if (!$("nav").hidden) refresh(); }, 1000);
  start();
}

document.addEventListener("DOMContentLoaded", wire);
