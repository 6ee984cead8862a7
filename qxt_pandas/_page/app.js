// qxt serve's page: the JSON API the tests use, and text nodes only (no value from a file or the
// vendor is ever parsed as HTML).
"use strict";
const $ = (id) => document.getElementById(id);
let job = null;
let events = null;
let page = 0;  // of the job list, 20 a page
const PAGE = 20;

const STATES = {
  planned: "待检测 · planned", queued: "排队中 · queued (another job is paying from the same store)",
  running: "检测中 · running", stopping: "正在停止 · stopping (keeping the answers in flight)",
  done: "完成 · done", stopped: "已停止 · stopped (run again to resume; paid answers are kept)", failed: "失败 · failed",
};
const PLAN = [
  ["rows", "行数 · rows"], ["invalid", "无效（不发送）· invalid, not sent"], ["duplicates", "重复（只付一次）· duplicates, paid once"],
  ["unique", "有效号码 · distinct valid numbers"], ["in_checkpoint", "已有结果（免费）· already answered, free"],
  ["will_query", "需付费查询 · to pay"], ["balance", "余额 · balance"],
];

function show(message) {
  const box = $("message");
  box.textContent = message || "";
  box.hidden = !message;
}

async function call(method, url, body) {
  const init = { method, headers: {} };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  const response = await fetch(url, init);
  let data = {};
  try { data = await response.json(); } catch (e) { data = { error: `HTTP ${response.status}` }; }
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function rows(table, pairs) {
  table.replaceChildren();
  for (const [label, value] of pairs) {
    const tr = table.insertRow();
    tr.insertCell().textContent = label;
    const td = tr.insertCell();
    td.className = "n";
    td.textContent = typeof value === "number" ? value.toLocaleString() : (value ?? "—");
  }
}

function render(data) {
  if (job && job.id !== data.id) show("");  // another job: nothing of the one before stays on the page
  job = data;
  $("plan-section").hidden = false;
  $("job-name").textContent = data.name;
  const select = $("column");
  const names = Array.from(select.options, (o) => o.value);
  if (names.length !== data.columns.length || names.some((name, i) => name !== data.columns[i])) {
    select.replaceChildren(...data.columns.map((name) => new Option(name, name)));
  }
  select.value = data.column;
  const sheets = data.sheets || [];
  $("sheet-label").hidden = sheets.length < 2;
  $("sheet").replaceChildren(...sheets.map((name) => new Option(name, name)));
  $("sheet").value = data.sheet || "";
  rows($("plan"), data.plan ? PLAN.map(([key, label]) => [label, data.plan[key]]) : []);
  if (data.plan && data.plan.covered === false) show("余额不足以支付本次查询 · The balance does not cover this run: top up, or the run stops when it runs out (answers so far are kept).");
  const active = ["queued", "running", "stopping"].includes(data.state);
  $("run").disabled = active;
  $("run").hidden = data.state === "done";
  $("stop").hidden = !active;
  select.disabled = active;
  $("sheet").disabled = active;
  $("progress-section").hidden = data.state === "planned";
  if (data.state === "planned") {
    $("state").textContent = "";
    rows($("summary"), []);
    $("files").replaceChildren();
  } else {
    $("progress-section").hidden = false;
    const p = data.progress || {};
    $("bar").max = Math.max(1, p.total || data.total || 1);
    $("bar").value = p.done || 0;
    const bits = [`${(p.done || 0).toLocaleString()} / ${(p.total || data.total || 0).toLocaleString()}`];
    if (p.rate !== undefined) bits.push(`${p.rate}/s`);
    if (p.in_flight !== undefined) bits.push(`并发 in flight ${p.in_flight}/${p.allowed}`);
    if (p.pushbacks) bits.push(`限流 push-back ${p.pushbacks}`);
    if (p.eta) bits.push(`剩余 ETA ${Math.round(p.eta)} s`);
    $("progress-text").textContent = bits.join(" · ");
    $("state").textContent = STATES[data.state] || data.state;
    if (data.error) show(data.error); else if (data.state !== "planned") show("");
    const summary = data.summary || {};
    rows($("summary"), Object.entries(summary.outcomes || {}).concat(summary.paid != null ? [["本次付费 · paid this run", summary.paid]] : []));
    const list = $("files");
    list.replaceChildren(...(data.files || []).map((name) => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = `/api/jobs/${encodeURIComponent(data.id)}/files/${encodeURIComponent(name)}`;
      a.textContent = `下载 · download ${name}`;
      a.download = name;
      li.append(a);
      return li;
    }));
  }
}

function watch(id) {
  if (events) events.close();
  events = new EventSource(`/api/jobs/${encodeURIComponent(id)}/events`);
  events.onmessage = (event) => {
    const data = JSON.parse(event.data);
    render(data);
    if (data.id !== (job && job.id)) return;  // a stream of a job no longer shown
    if (!["queued", "running", "stopping"].includes(data.state)) { events.close(); events = null; jobs(); }
  };
  events.onerror = () => { if (events) { events.close(); events = null; } };
}

async function upload(file) {
  show("");
  $("plan-section").hidden = true;
  $("progress-section").hidden = true;
  const form = new FormData();
  form.append("file", file);
  $("drop").classList.add("over");
  try {
    const made = await call("POST", "/api/jobs", form);
    render(await call("GET", `/api/jobs/${made.id}`));
    jobs();
    info();  // the plan bound the store to the service that answered: simulated or not
  } catch (error) { show(error.message); } finally { $("drop").classList.remove("over"); }
}

async function jobs() {
  try {
    const data = await call("GET", "/api/jobs");
    const table = $("jobs");
    table.replaceChildren();
    const pages = Math.max(1, Math.ceil(data.jobs.length / PAGE));
    page = Math.min(page, pages - 1);
    for (const j of data.jobs.slice(page * PAGE, (page + 1) * PAGE)) {
      const tr = table.insertRow();
      const name = tr.insertCell();
      const a = document.createElement("a");
      a.href = "#"; a.textContent = j.name;
      a.addEventListener("click", (e) => { e.preventDefault(); choose(j.id); });
      name.append(a);
      tr.insertCell().textContent = new Date(j.created * 1000).toLocaleString();
      tr.insertCell().textContent = STATES[j.state] || j.state;
      const paid = tr.insertCell(); paid.className = "n";
      paid.textContent = j.summary && j.summary.paid != null ? `付费 paid ${j.summary.paid}` : "";
      const remove = document.createElement("button");
      remove.type = "button"; remove.className = "delete"; remove.textContent = "删除 · delete";
      remove.disabled = ["queued", "running", "stopping"].includes(j.state);
      remove.addEventListener("click", async () => {
        try { await call("DELETE", `/api/jobs/${encodeURIComponent(j.id)}`); if (job && job.id === j.id) { job = null; $("plan-section").hidden = true; $("progress-section").hidden = true; } jobs(); } catch (error) { show(error.message); }
      });
      tr.insertCell().append(remove);
    }
    $("pages").hidden = pages < 2;
    $("page-text").textContent = `${page + 1} / ${pages} · ${data.jobs.length.toLocaleString()} 个任务 jobs`;
    $("previous").disabled = page === 0;
    $("next").disabled = page >= pages - 1;
  } catch (error) { show(error.message); }
}

async function choose(id) {
  // exactly that job, as the server has it now: its state, plan, summary and files, and nothing of another's
  if (events) { events.close(); events = null; }
  try {
    const data = await call("GET", `/api/jobs/${encodeURIComponent(id)}`);
    render(data);
    if (["queued", "running", "stopping"].includes(data.state)) watch(data.id);
  } catch (error) { show(error.message); }
}

async function info() {
  try {
    const data = await call("GET", "/api/info");
    $("simulated").hidden = !data.simulated;
    $("store").textContent = `结果库 · answer store: ${data.store} · 上限 · max upload ${data.max_upload}`;
  } catch (error) { show(error.message); }
}

window.addEventListener("DOMContentLoaded", () => {
  $("file").addEventListener("change", (e) => { if (e.target.files[0]) upload(e.target.files[0]); });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); if (e.dataTransfer.files[0]) upload(e.dataTransfer.files[0]); });
  $("column").addEventListener("change", async (e) => {
    try { show(""); render(await call("POST", `/api/jobs/${job.id}/plan`, { column: e.target.value })); } catch (error) { show(error.message); }
  });
  $("sheet").addEventListener("change", async (e) => {
    try { show(""); render(await call("POST", `/api/jobs/${job.id}/plan`, { sheet: e.target.value })); } catch (error) { show(error.message); }
  });
  $("run").addEventListener("click", async () => {
    try { show(""); render(await call("POST", `/api/jobs/${job.id}/run`)); watch(job.id); } catch (error) { show(error.message); }
  });
  $("stop").addEventListener("click", async () => {
    try { render(await call("POST", `/api/jobs/${job.id}/stop`)); } catch (error) { show(error.message); }
  });
  $("previous").addEventListener("click", () => { page = Math.max(0, page - 1); jobs(); });
  $("next").addEventListener("click", () => { page += 1; jobs(); });
  info();
  jobs();
});
