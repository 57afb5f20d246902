// turnout console: renders the sections the server pushes over server-sent events and calls the
// API's own routes for actions. No framework, no build step.
"use strict";

const state = { me: null, manager: null, clusters: [], proxies: [], recoveries: [], audit: [] };
const $ = (id) => document.getElementById(id);

// ---- small DOM helpers ----------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const badge = (text, kind, title) => h("span", { class: `badge ${kind || ""}`, title }, text);
const pad = (n, w = 2) => String(n).padStart(w, "0");
function clock(t, ms) {
  if (!t) return "";
  const d = new Date(t * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}${ms ? "." + pad(d.getMilliseconds(), 3) : ""}`;
}
function day(t) {
  const d = new Date(t * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}
function seconds(s) {
  if (s === null || s === undefined) return "";
  return s < 10 ? `${s.toFixed(2)} s` : `${s.toFixed(1)} s`;
}
const phaseKind = { stable: "ok", switching: "warn", recovering: "bad", promoting: "warn" };

// Re-rendering replaces elements: keep the focus and the open <details> across it.
function rerender(container, build) {
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.fid : null;
  const open = new Set([...container.querySelectorAll("details[open]")].map((d) => d.dataset.did));
  container.replaceChildren(...build());
  for (const d of container.querySelectorAll("details")) if (open.has(d.dataset.did)) d.open = true;
  if (focused) {
    const again = container.querySelector(`[data-fid="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

// ---- header ---------------------------------------------------------------------------------
function renderHeader() {
  const me = state.me;
  if (me) {
    $("me").replaceChildren(
      h("span", {}, me.user || "anyone"),
      h("span", { class: "role", id: "role" }, me.can_act ? "operator" : "viewer: read-only"),
    );
  }
  const m = state.manager;
  if (m) {
    const disabled = m.recoveries_disabled;
    const toggle = disabled ? "enable-global-recoveries" : "disable-global-recoveries";
    rerender($("manager"), () => [
      `manager ${m.owner} · ${m.leader ? "leader" : "not the leader"} · discovered ${clock(m.last_tick)} `,
      disabled ? badge("automated recoveries disabled", "bad") : badge("automated recoveries on", "ok"), " ",
      actionButton(disabled ? "Enable…" : "Disable…", "global-recoveries", () => actionDialog({
        title: disabled ? "Enable automated recoveries" : "Disable automated recoveries",
        text: disabled ? "Every manager sharing the state store may recover dead masters again."
          : "No manager sharing the state store recovers a dead master until they are enabled again.",
        confirm: disabled ? "Enable" : "Disable", run: () => callApi(`/api/${toggle}`),
      })),
    ]);
  }
}

// ---- clusters -------------------------------------------------------------------------------
function canAct() { return !!(state.me && state.me.can_act); }
function actionButton(label, fid, onclick, opts = {}) {
  const viewer = !canAct();
  return h("button", {
    type: "button", class: `small ${opts.danger ? "danger" : ""}`, "data-fid": fid, onclick,
    disabled: viewer || opts.disabled, title: viewer ? "read-only viewer: the server refuses actions" : opts.title,
  }, label);
}

function serverRows(cluster, node, depth, last, rows, prefix) {
  const cls = [node.reachable ? "" : "dead", node.fenced ? "fenced" : ""].join(" ").trim();
  const connector = depth === 0 ? "" : prefix + (last ? "└─ " : "├─ ");
  const status = [];
  if (!node.reachable) status.push(badge("unreachable", "bad", node.last_error));
  if (node.published_master) status.push(badge("published master", "info"));
  if (node.problem) status.push(badge(node.problem.code, "bad", node.problem.description));
  if (node.fenced) status.push(badge("fenced", "fence"), h("span", { class: "why" }, node.fenced.reason));
  if (node.downtime) {
    status.push(badge(`downtimed until ${clock(node.downtime.ends_at)}`, "warn"),
      h("span", { class: "why" }, `${node.downtime.owner}: ${node.downtime.reason}`));
  }
  // The proxies' rows for this server, one badge per status and reason (with its hostgroups).
  const notOnline = new Map();
  for (const r of node.proxy_rows.filter((x) => x.status !== "ONLINE")) {
    const k = `${r.proxy}|${r.status}|${r.comment}`;
    if (!notOnline.has(k)) notOnline.set(k, { ...r, hostgroups: [] });
    notOnline.get(k).hostgroups.push(r.hostgroup);
  }
  for (const r of notOnline.values()) {
    status.push(badge(`${r.status} hg ${r.hostgroups.join(",")}`, "warn", `in proxy ${r.proxy}`),
      h("span", { class: "why" }, r.comment || ""));
  }
  const online = node.proxy_rows.filter((r) => r.status === "ONLINE").map((r) => r.hostgroup);
  if (online.length) status.push(badge(`ONLINE hg ${online.join(",")}`, "ok", "in the proxies' runtime_mysql_servers"));
  if (node.last_error && node.reachable) status.push(h("span", { class: "why" }, node.last_error));

  const repl = node.replica
    ? h("span", {}, badge(`IO ${node.io_running || "?"}`, node.io_running === "Yes" ? "ok" : "bad"), " ",
        badge(`SQL ${node.sql_running ? "Yes" : "No"}`, node.sql_running ? "ok" : "bad"))
    : h("span", { class: "muted" }, "—");
  const ro = node.read_only === null ? "?" : node.read_only ? "ON" : "OFF";
  const key = node.key;
  const acts = [];
  if (node.downtime) acts.push(actionButton("End downtime", `end-dt:${key}`, () => endDowntime(cluster, node)));
  else acts.push(actionButton("Downtime…", `dt:${key}`, () => beginDowntime(cluster, node)));
  if (node.fenced) acts.push(actionButton("Unfence…", `unfence:${key}`, () => unfence(cluster, node)));
  if (node.problem && /^DeadMaster(AndSomeReplicas)?$/.test(node.problem.code)) {
    acts.push(actionButton("Recover…", `recover:${key}`, () => recover(cluster, node), { danger: true }));
  }
  const seen = node.reachable ? "" : ` · last seen ${node.last_seen ? clock(node.last_seen) : "never"}`;
  const stale = node.reachable ? "" : "stale";
  rows.push(h("tr", { class: cls, "data-server": key },
    h("td", {}, h("div", { class: "srv" }, h("span", { class: "tree" }, connector), h("span", { class: "server" }, key)),
      h("div", { class: "muted", title: node.version },
        `${node.role}${node.version ? " · " + node.version.replace(/-.*$/, "") : ""}${seen}`)),
    h("td", { class: stale }, badge(ro, node.read_only === false ? "info" : "")),
    h("td", { class: stale }, repl),
    h("td", { class: `num ${stale}` }, node.replica ? (node.lag === null ? "NULL" : `${node.lag} s`) : ""),
    h("td", { class: stale }, h("span", { class: "mono gtid", title: node.gtid }, node.gtid)),
    h("td", { class: stale }, node.semi_sync || h("span", { class: "muted" }, "off")),
    h("td", {}, h("div", { class: "state" }, status)),
    h("td", { class: "row-actions" }, acts),
  ));
  const childPrefix = depth === 0 ? "" : prefix + (last ? "   " : "│  ");
  node.children.forEach((c, i) => serverRows(cluster, c, depth + 1, i === node.children.length - 1, rows, childPrefix));
}

function clusterCard(c) {
  const unacked = state.recoveries.filter((r) => r.cluster === c.name && !r.acknowledged && !r.active).length;
  const head = h("div", { class: "card-head" },
    h("span", { class: "name" }, c.name),
    h("span", { class: "facts" },
      h("span", { class: "fact" }, "master ", h("b", { class: "mono", "data-role": "published-master" }, c.master)),
      h("span", { class: "fact epoch", "data-role": "epoch" }, `epoch ${c.epoch}`),
      badge(c.phase, phaseKind[c.phase] || "", "phase of the published state"),
      (c.auto_recovery && !(state.manager && state.manager.recoveries_disabled))
        ? badge("auto-recovery on", "") : badge("auto-recovery off", "warn"),
      unacked ? badge(`${unacked} unacknowledged recover${unacked > 1 ? "ies" : "y"}`, "warn") : null),
    h("span", { class: "actions" },
      actionButton("Takeover…", `takeover:${c.name}`, () => openTakeover(c.name)),
      unacked ? actionButton("Acknowledge…", `ack:${c.name}`, () => acknowledge(c.name)) : null),
  );
  const problems = c.problems.length
    ? h("ul", { class: "problems" }, c.problems.map((p) => h("li", {},
        h("b", {}, p.code), ` on ${p.instance}: ${p.description}${p.downtimed ? " (downtimed)" : ""}`)))
    : null;
  const rows = [];
  c.tree.forEach((n, i) => serverRows(c, n, 0, i === c.tree.length - 1, rows, ""));
  const table = h("div", { class: "scroll" }, h("table", {},
    h("thead", {}, h("tr", {}, ["server", "read_only", "replication", "lag", "GTID position", "semi-sync", "state", ""]
      .map((t) => h("th", {}, t)))),
    h("tbody", {}, rows)));
  return h("article", { class: `card ${c.problems.length ? "problem" : ""}`, "data-cluster": c.name }, head, problems, table);
}

function renderClusters() {
  rerender($("clusters-body"), () => state.clusters.length
    ? state.clusters.map(clusterCard)
    : [h("p", { class: "muted" }, "No cluster yet: the manager discovers the servers of its configuration.")]);
}

// ---- proxies --------------------------------------------------------------------------------
function proxyCard(p) {
  const epochs = Object.entries(p.epochs).map(([name, e]) =>
    h("span", { class: "fact", "data-role": "applies" }, `applies ${name}: master `, h("b", { class: "mono" }, e.master || "?"),
      ` epoch ${e.epoch ?? "?"} `, e.phase ? badge(e.phase, phaseKind[e.phase]) : null));
  const held = p.held_hostgroups.length ? badge(`writes held: hg ${p.held_hostgroups.join(",")}`, "warn") : badge("no hold", "ok");
  const blocked = Object.entries(p.write_blocked).map(([hg, why]) => badge(`hg ${hg} writes refused: ${why}`, "bad"));
  const pools = new Map(p.pools.map((x) => [`${x.hostgroup}|${x.address}`, x]));
  const rows = p.servers.map((s) => {
    const pool = pools.get(`${s.hostgroup}|${s.address}`) || p.pools.find((x) => x.address === s.address) || {};
    return h("tr", { "data-row": `${s.hostgroup}|${s.address}` },
      h("td", { class: "num" }, s.hostgroup),
      h("td", { class: "mono" }, s.address),
      h("td", {}, badge(s.status, s.status === "ONLINE" ? "ok" : "warn"), s.comment ? h("span", { class: "why" }, s.comment) : null),
      h("td", { class: "num" }, pool.used ?? ""), h("td", { class: "num" }, pool.free ?? ""),
      h("td", { class: "num" }, pool.errors ?? ""), h("td", { class: "num" }, pool.queries ?? ""),
      h("td", { class: "num" }, pool.latency_us ? `${(pool.latency_us / 1000).toFixed(1)} ms` : ""));
  });
  if (p.kind === "registered") {
    return h("article", { class: "card proxy", "data-proxy": p.name },
      h("div", { class: "card-head" }, h("span", { class: "name" }, `proxy ${p.name}`),
        h("span", { class: "muted" }, `${p.where} · lease renewed ${seconds(p.lease_age)} ago`),
        p.behind.length ? badge(`behind: ${p.behind.join(", ")}`, "bad") : badge("up to date", "ok")),
      h("div", { class: "kv" }, epochs));
  }
  if (p.kind === "proxysql") {
    return h("article", { class: "card proxy", "data-proxy": p.name },
      h("div", { class: "card-head" }, h("span", { class: "name" }, `ProxySQL ${p.name}`),
        h("span", { class: "muted" }, p.where),
        p.converged ? badge("converged", "ok") : badge(`lagging: ${p.lagging.join(", ")}`, "bad")),
      h("div", { class: "kv" }, epochs, p.errors.map((e) => h("span", { class: "why" }, e))));
  }
  return h("article", { class: "card proxy", "data-proxy": p.name },
    h("div", { class: "card-head" }, h("span", { class: "name" }, `proxy ${p.name}`),
      h("span", { class: "muted" }, `${p.listen} · ${p.where}`)),
    h("div", { class: "kv" },
      h("span", { class: "fact" }, h("b", { "data-role": "qps" }, p.qps === null ? "…" : p.qps.toFixed(0)), " questions/s"),
      h("span", { class: "fact" }, h("b", {}, p.client_connections), " client connections"),
      h("span", { class: "fact" }, h("b", {}, p.statements_held), " statements held (total)"),
      held, blocked, p.fenced ? badge(`fenced itself: ${p.fenced}`, "bad") : null,
      p.registered_as ? badge(`registered as ${p.registered_as}`, "") : null, epochs,
      Object.entries(p.writers).map(([hg, addr]) => h("span", { class: "fact", "data-role": "writer" },
        `hg ${hg} writes to `, h("b", { class: "mono" }, addr)))),
    h("div", { class: "scroll" }, h("table", { class: "pools" },
      h("thead", {}, h("tr", {}, ["hg", "server", "status in force", "used", "free", "errors", "queries", "ping"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows))));
}

function renderProxies() {
  rerender($("proxies-body"), () => state.proxies.length
    ? state.proxies.map(proxyCard)
    : [h("p", { class: "muted" }, "No proxy reports to this manager (a `turnout manager` alone has none; `turnout up` has its own).")]);
}

// ---- recoveries and audit -------------------------------------------------------------------
function renderRecoveries() {
  rerender($("recoveries-body"), () => {
    if (!state.recoveries.length) return [h("p", { class: "muted" }, "No recovery yet.")];
    return [h("div", { class: "card" }, state.recoveries.map((r) => h("div", { class: "rec", "data-recovery": r.id },
      h("div", { class: "line" },
        h("span", { class: "time" }, `${day(r.started_at)} ${clock(r.started_at)}`),
        h("b", {}, r.failure), h("span", { class: "mono" }, r.failed), "→",
        h("b", { class: "mono" }, r.successor || "none"),
        r.active ? badge("running", "warn") : badge(r.success ? "recovered" : "failed", r.success ? "ok" : "bad"),
        r.duration !== null ? h("span", { class: "muted" }, seconds(r.duration)) : null,
        badge(r.manual ? "manual" : "automated", ""),
        r.acknowledged ? badge(`acknowledged by ${r.acknowledged_by}`, "", r.acknowledge_comment || "")
          : (!r.active ? badge("not acknowledged", "warn") : null),
        h("span", { class: "muted" }, r.cluster)),
      r.steps.length ? h("details", { "data-did": `rec${r.id}` }, h("summary", {}, `${r.steps.length} steps`),
        h("ul", { class: "steps plain-steps" }, r.steps.map((s) => h("li", {}, s.replace(/^\d{4}-\d\d-\d\d /, ""))))) : null)))];
  });
}

function renderAudit() {
  const filter = $("audit-filter").value.trim().toLowerCase();
  rerender($("audit-body"), () => {
    const groups = state.audit.filter((g) => !filter || g.action.toLowerCase().includes(filter) ||
      g.cluster.toLowerCase().includes(filter) || g.steps.some((s) => s.message.toLowerCase().includes(filter)));
    if (!groups.length) return [h("p", { class: "muted" }, filter ? "Nothing matches." : "The audit log is empty.")];
    return [h("div", { class: "card" }, groups.slice(0, 80).map((g) => {
      const last = g.steps[g.steps.length - 1];
      const single = g.steps.length === 1;
      return h("div", { class: "op", "data-action": g.action },
        h("div", { class: "line" },
          h("span", { class: "time" }, clock(g.ended_at)),
          badge(g.action, /recover|fence/.test(g.action) ? "bad" : /takeover/.test(g.action) ? "info" : ""),
          h("span", {}, last.message),
          single ? null : h("span", { class: "muted" }, `${g.steps.length} steps, ${seconds(g.duration)}`)),
        single ? null : h("details", { "data-did": `op${g.id}` }, h("summary", {}, "steps"),
          h("ul", { class: "steps" }, g.steps.map((s) => h("li", {},
            h("span", { class: "offset" }, `+${s.offset.toFixed(2)}`), h("span", {}, s.message))))));
    }))];
  });
}

// ---- actions: the API's own routes ------------------------------------------------------------
async function callApi(path) {
  const response = await fetch(path, { headers: { "X-Turnout-Console": "1" }, credentials: "same-origin" });
  let body;
  try { body = await response.json(); } catch { body = { Code: "ERROR", Message: `HTTP ${response.status}` }; }
  return { status: response.status, body };
}
function toast(text, bad) {
  const el = h("div", { class: `toast ${bad ? "bad" : ""}`, role: bad ? "alert" : "status", onclick: () => el.remove() }, text);
  $("toasts").append(el);
  setTimeout(() => el.remove(), bad ? 12000 : 6000);
}
function describe(result) {
  const b = result.body || {};
  const details = typeof b.Details === "string" ? ` (${b.Details})` : "";
  return `${b.Code || result.status}: ${b.Message || ""}${details}`;
}
const hp = (key) => { const i = key.lastIndexOf(":"); return [key.slice(0, i), key.slice(i + 1)]; };
const enc = encodeURIComponent;

function actionDialog({ title, text, fields = [], confirm, run }) {
  const dlg = $("dlg-action");
  $("act-title").textContent = title;
  $("act-text").textContent = text;
  const result = $("act-result");
  result.hidden = true;
  result.className = "";
  $("act-fields").replaceChildren(...fields.map((f) => h("label", {}, f.label,
    h("input", { type: f.type || "text", name: f.name, value: f.value || "", required: f.required, id: `act-${f.name}` }))));
  const button = $("act-confirm");
  button.textContent = confirm;
  button.disabled = !canAct();
  $("act-form").onsubmit = async (ev) => {
    ev.preventDefault();
    const values = Object.fromEntries(fields.map((f) => [f.name, $(`act-${f.name}`).value.trim()]));
    button.disabled = true;
    result.hidden = false;
    result.textContent = "working…";
    const answer = await run(values);
    const bad = answer.body.Code !== "OK";
    result.className = bad ? "bad" : "";
    result.textContent = describe(answer);
    toast(`${title}: ${describe(answer)}`, bad);
    if (!bad) setTimeout(() => dlg.close(), 600); else button.disabled = !canAct();
  };
  $("act-cancel").onclick = () => dlg.close();
  dlg.showModal();
  const first = dlg.querySelector("input") || button;
  first.focus();
}

function beginDowntime(cluster, node) {
  const [host, port] = hp(node.key);
  actionDialog({
    title: `Downtime ${node.key}`, text: "No automated recovery acts on a downtimed server.", confirm: "Begin downtime",
    fields: [{ name: "duration", label: "Duration (300, 30s, 10m, 2h, 1d)", value: "1h", required: true },
             { name: "reason", label: "Reason", value: "maintenance", required: true }],
    run: (v) => callApi(`/api/begin-downtime/${enc(host)}/${port}/${enc(state.me.user || "console")}/${enc(v.reason)}/${enc(v.duration)}`),
  });
}
function endDowntime(cluster, node) {
  const [host, port] = hp(node.key);
  actionDialog({ title: `End the downtime of ${node.key}`, text: "Automated recovery may act on it again.",
    confirm: "End downtime", run: () => callApi(`/api/end-downtime/${enc(host)}/${port}`) });
}
function unfence(cluster, node) {
  const [host, port] = hp(node.key);
  actionDialog({ title: `Unfence ${node.key}`, confirm: "Lift the fence",
    text: `Fenced: ${node.fenced.reason}. Lift the fence only once it has been rebuilt as a replica of ${cluster.master} (or you know it is safe).`,
    run: () => callApi(`/api/unfence/${enc(host)}/${port}`) });
}
function recover(cluster, node) {
  const [host, port] = hp(node.key);
  actionDialog({ title: `Recover ${node.key}`, confirm: "Recover now",
    text: `${node.problem.code}: ${node.problem.description}. The best replica is promoted now (anti-flapping does not apply).`,
    run: () => callApi(`/api/recover/${enc(host)}/${port}`) });
}
function acknowledge(name) {
  actionDialog({ title: `Acknowledge the recoveries of ${name}`, confirm: "Acknowledge",
    text: "Acknowledged recoveries no longer block the next automated recovery (anti-flapping).",
    fields: [{ name: "comment", label: "Comment", value: "", required: true }],
    run: (v) => callApi(`/api/ack-recovery/cluster/${enc(name)}?comment=${enc(v.comment)}`) });
}

// The takeover dialog shows the checks that would refuse it before anything is done.
let takeoverCluster = null;
async function refreshChecks() {
  const designated = $("tk-designated").value;
  const confirm = $("tk-confirm");
  confirm.disabled = true;
  $("tk-checks").replaceChildren(h("li", { class: "muted" }, "checking…"));
  const response = await fetch(`/console/api/takeover-check/${enc(takeoverCluster)}?designated=${enc(designated)}`);
  const body = await response.json();
  if (!response.ok) {
    $("tk-checks").replaceChildren(h("li", { class: "no" }, body.Message || `HTTP ${response.status}`));
    return;
  }
  $("tk-sub").textContent = `${body.cluster}: master ${body.master}, epoch ${body.epoch}`;
  $("tk-checks").replaceChildren(...body.checks.map((c) =>
    h("li", { class: c.ok ? "yes" : "no" }, h("b", {}, c.name), `: ${c.detail}`)));
  const v = body.verdict;
  $("tk-verdict").replaceChildren(h("span", { class: v.ok ? "verdict-ok" : "verdict-no" },
    v.ok ? `Allowed: ${v.message}` : `Refused: ${v.message}`));
  confirm.disabled = !v.ok || !canAct();
  confirm.title = canAct() ? "" : "read-only viewer: the server refuses actions";
}
async function openTakeover(name) {
  const c = state.clusters.find((x) => x.name === name);
  if (!c) return;
  takeoverCluster = name;
  const dlg = $("dlg-takeover");
  const result = $("tk-result");
  result.hidden = true;
  $("tk-verdict").replaceChildren();
  const master = c.tree.find((n) => n.key === c.master);
  const replicas = master ? master.children.map((n) => n.key) : [];
  $("tk-designated").replaceChildren(h("option", { value: "" }, "the best replica (the manager chooses)"),
    ...replicas.map((k) => h("option", { value: k }, k)));
  if (replicas.length) $("tk-designated").value = replicas[0];
  $("tk-designated").onchange = refreshChecks;
  $("tk-cancel").onclick = () => dlg.close();
  $("tk-confirm").onclick = async () => {
    const designated = $("tk-designated").value;
    const auto = $("tk-auto").checked;
    const target = designated ? (([host, port]) => `/${enc(host)}/${port}`)(hp(designated)) : "";
    $("tk-confirm").disabled = true;
    result.hidden = false;
    result.className = "";
    result.textContent = `graceful-master-takeover${auto ? "-auto" : ""} ${c.name}: ${c.master} → ${designated || "the best replica"}…`;
    const answer = await callApi(`/api/graceful-master-takeover${auto ? "-auto" : ""}/${enc(name)}${target}`);
    const ok = answer.body.Code === "OK";
    const steps = answer.body.Details && answer.body.Details.Steps ? answer.body.Details.Steps.join("\n") : "";
    result.className = ok ? "" : "bad";
    result.textContent = `${describe(answer)}${steps ? "\n\n" + steps : ""}`;
    toast(`takeover of ${name}: ${describe(answer)}`, !ok);
  };
  dlg.showModal();
  $("tk-designated").focus();
  await refreshChecks();
}

// ---- live updates ---------------------------------------------------------------------------
const renderers = {
  manager: () => { renderHeader(); renderClusters(); }, clusters: renderClusters, proxies: renderProxies,
  recoveries: () => { renderRecoveries(); renderClusters(); }, audit: renderAudit,
};
function connect() {
  const source = new EventSource("/console/api/events");
  source.addEventListener("open", () => { $("live").textContent = "live"; $("live").className = "live on"; });
  source.addEventListener("error", () => { $("live").textContent = "reconnecting…"; $("live").className = "live off"; });
  source.addEventListener("hello", (ev) => { state.me = JSON.parse(ev.data); renderHeader(); renderClusters(); });
  for (const section of Object.keys(renderers)) {
    source.addEventListener(section, (ev) => {
      state[section] = JSON.parse(ev.data);
      renderers[section]();
      document.body.dataset[`seen${section}`] = "1";
    });
  }
}

document.addEventListener("keydown", (ev) => {
  if (ev.target.closest("input, select, textarea, dialog") || ev.ctrlKey || ev.metaKey || ev.altKey) {
    if (ev.key === "Escape" && ev.target.id === "audit-filter") ev.target.blur();
    return;
  }
  const link = document.querySelector(`nav a[data-key="${ev.key}"]`);
  if (link) {
    ev.preventDefault();
    const target = document.querySelector(link.getAttribute("href"));
    target.scrollIntoView({ block: "start" });
    target.focus({ preventScroll: true });
  } else if (ev.key === "t") {
    const card = document.activeElement.closest && document.activeElement.closest("[data-cluster]");
    const name = card ? card.dataset.cluster : (state.clusters[0] || {}).name;
    if (name) { ev.preventDefault(); openTakeover(name); }
  } else if (ev.key === "/") {
    ev.preventDefault();
    $("audit-filter").focus();
  } else if (ev.key === "?") {
    $("dlg-help").showModal();
  }
});
$("audit-filter").addEventListener("input", renderAudit);
connect();
