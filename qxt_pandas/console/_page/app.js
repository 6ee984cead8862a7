// qxt serve's page: the JSON API the tests use, and text nodes only (no value from a file or the
// vendor is ever parsed as HTML). Chinese first, English second, everywhere.
"use strict";
const $ = (id) => document.getElementById(id);
let job = null;
let events = null;
let page = 0;  // of the job list, 20 a page
let polling = null;  // the job list's refresh while a job is active
const PAGE = 20;
const ACTIVE = ["queued", "running", "stopping"];

const STATES = {
  planned: "待检测 · planned", queued: "排队中 · queued (another job is paying from the same store)",
  running: "检测中 · running", stopping: "正在停止 · stopping (keeping the answers in flight)",
  done: "完成 · done", stopped: "已停止 · stopped (run again to resume; paid answers are kept)", failed: "失败 · failed",
};
const PLAN = [
  ["rows", "行数 · rows"], ["invalid", "无效号码（不发送，不收费）· invalid, not sent"],
  ["duplicates", "重复（只查一次）· duplicates, paid once"], ["unique", "有效号码 · distinct valid numbers"],
  ["in_checkpoint", "已有结果（免费）· already answered, free"], ["will_query", "需付费查询 · to pay"],
];

function show(message) {
  const box = $("message");
  box.textContent = message || "";
  box.hidden = !message;
}

const number = (n) => (typeof n === "number" ? n.toLocaleString("zh-CN") : n ?? "—");

async function call(method, url, body) {
  const init = { method, headers: {} };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  let response;
  try { response = await fetch(url, init); } catch (e) { throw new Error("连不上服务器 · the console cannot be reached: is qxt serve still running?"); }
  let data = {};
  try { data = await response.json(); } catch (e) { data = { error: `服务器出错 · the server answered HTTP ${response.status}` }; }
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function cell(tr, text, className) {
  const td = tr.insertCell();
  if (className) td.className = className;
  td.textContent = text;
  return td;
}

function header(table, names) {
  const tr = table.createTHead().insertRow();
  for (const name of names) { const th = document.createElement("th"); th.textContent = name; tr.append(th); }
}

function planRows(plan) {
  // [label, figure, note]: the counts, then the money (or how to see it), then the balance
  const out = PLAN.map(([key, label]) => [label, number(plan[key]), ""]);
  if (plan.cost) out.push(["预计费用（最多）· cost at most", plan.cost, `${number(plan.will_query)} 次 × ${plan.price}；“无信息”的号码不收费，实际花费常常更少 · “no information” answers are not charged, so a run often costs less`]);
  else out.push(["预计费用 · cost", "—", "未设单价：启动时加 --price 0.05（或设 QXT_PRICE）即可显示金额 · no price set: start qxt serve with --price 0.05 (or $QXT_PRICE) to see yuan"]);
  if (plan.balance != null) out.push(["余额 · balance", `${number(plan.balance)} 次`, (plan.balance_yuan ? `约 ${plan.balance_yuan} · ` : "") + `可查询的次数 · queries left (${plan.fee_type || ""})`]);
  return out;
}

function fillPlan(rows) {
  const table = $("plan");
  table.replaceChildren();
  for (const [label, figure, note] of rows) {
    const tr = table.insertRow();
    const name = cell(tr, label);
    if (note) { const small = document.createElement("span"); small.className = "note"; small.textContent = note; name.append(small); }
    cell(tr, figure, "n");
  }
}

function progressText(data, p) {
  const active = ACTIVE.includes(data.state);
  if (active && p.total === undefined) return "正在启动：读取文件、查询余额… · Starting: reading the file and the balance…";
  const total = p.total ?? data.total;
  if (total === 0) return "无需付费：每个号码都已有结果 · Nothing to pay: every number already has an answer";
  const bits = [`${number(p.done || 0)} / ${number(total)} 个号码 · numbers`];
  if (active && p.rate) bits.push(`每秒 ${number(Math.round(p.rate))} 个 · ${number(Math.round(p.rate))} a second`);
  if (active && p.eta != null) bits.push(`预计还需 ${duration(p.eta)} · about ${durationEn(p.eta)} left`);
  if (active && p.in_flight !== undefined) bits.push(`并发 ${p.in_flight}/${p.allowed} in flight`);
  if (p.pushbacks) bits.push(`限流 ${number(p.pushbacks)} push-backs`);
  return bits.join(" · ");
}

const duration = (s) => (s < 60 ? `${Math.max(1, Math.round(s))} 秒` : s < 3600 ? `${Math.round(s / 60)} 分钟` : `${(s / 3600).toFixed(1)} 小时`);
const durationEn = (s) => (s < 60 ? `${Math.max(1, Math.round(s))} s` : s < 3600 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`);

function fileLabel(name) {
  if (name.endsWith(".split.zip")) return "按结果分类（zip，每类一个 Excel 文件）· split by outcome, one workbook each";
  if (name.endsWith("store-report.html")) return "整个结果库的报告 · report of the whole store";
  if (name.endsWith(".report.html")) return "本任务的报告 · this job's report";
  if (name.endsWith(".checked.xlsx")) return "检测结果（Excel）· checked file, Excel";
  if (name.endsWith(".checked.csv")) return "检测结果（CSV，Excel 可直接打开）· checked file, CSV for Excel";
  return "检测结果 · checked file";
}

function link(data, name, text) {
  const a = document.createElement("a");
  a.href = `/api/jobs/${encodeURIComponent(data.id)}/files/${encodeURIComponent(name)}`;
  a.textContent = text;
  a.download = name;
  return a;
}

function fillSummary(data) {
  const table = $("summary");
  table.replaceChildren();
  const summary = data.summary || {};
  const order = summary.order || Object.keys(summary.outcomes || {});
  if (!order.length) return;
  header(table, ["结果 · outcome", "行数 · rows", "占行数 · share of rows", "下载 · download"]);
  const body = table.createTBody();
  for (const key of order) {
    const tr = body.insertRow();
    cell(tr, (summary.labels || {})[key] || key, "label");
    cell(tr, number(summary.outcomes[key]), "n");
    const share = (summary.shares || {})[key] ?? 0;
    const td = cell(tr, "", "n");
    const bar = document.createElement("span");
    bar.className = "share";
    const fill = document.createElement("span");
    fill.style.width = `${Math.min(100, share)}%`;  // (a style property set by script: allowed by the page's CSP)
    bar.append(fill);
    td.append(bar, ` ${share.toFixed(1)}%`);
    const part = (data.parts || {})[key];
    const where = tr.insertCell();
    if (part) where.append(link(data, part, `下载 · ${part.split(".").pop()}`));
  }
}

function render(data) {
  if (job && job.id !== data.id) show("");  // another job: nothing of the one before stays on the page
  job = data;
  $("plan-section").hidden = false;
  $("job-name").textContent = data.name;
  const select = $("column");
  const wanted = (data.column == null ? [""] : []).concat(data.columns);
  const names = Array.from(select.options, (o) => o.value);
  if (names.length !== wanted.length || names.some((name, i) => name !== wanted[i])) {
    const options = data.columns.map((name) => new Option(name, name));
    if (data.column == null) { const none = new Option("— 请选择号码列 · choose the number column —", ""); none.disabled = true; options.unshift(none); }
    select.replaceChildren(...options);
  }
  select.value = data.column == null ? "" : data.column;
  const sheets = data.sheets || [];
  $("sheet-label").hidden = sheets.length < 2;
  $("sheet").replaceChildren(...sheets.map((name) => new Option(name, name)));
  $("sheet").value = data.sheet || "";
  $("problem").textContent = data.problem || "";
  $("problem").hidden = !data.problem;
  fillPlan(data.plan ? planRows(data.plan) : []);
  if (data.plan && data.plan.covered === false) show("余额不足以支付本次查询 · The balance does not cover this run: top up, or the run stops when it runs out (answers so far are kept).");
  const active = ACTIVE.includes(data.state);
  $("run").disabled = active || !data.plan || data.column == null;
  $("run").hidden = data.state === "done";
  $("stop").hidden = !active;
  select.disabled = active;
  $("sheet").disabled = active;
  $("progress-section").hidden = data.state === "planned";
  if (data.state === "planned") {
    $("state").textContent = "";
    $("spent").textContent = "";
    $("summary").replaceChildren();
    $("files").replaceChildren();
    $("files-title").hidden = true;
    return;
  }
  const p = data.progress || {};
  const bar = $("bar");
  if (active && p.total === undefined) bar.removeAttribute("value");  // starting: an indeterminate bar
  else { const total = p.total ?? data.total; bar.max = Math.max(1, total || 0); bar.value = total === 0 ? 1 : p.done || 0; }
  $("progress-text").textContent = progressText(data, p);
  $("state").textContent = STATES[data.state] || data.state;
  if (data.error) show(data.error); else show("");
  const s = data.summary || {};
  const paid = s.paid != null ? s.paid : p.paid;
  const spent = s.paid != null ? s.spent : p.spent;
  $("spent").textContent = paid == null ? "" : `本次付费 ${number(paid)} 次${spent ? `，已花费 ${spent}` : ""} · paid this run: ${number(paid)} queries${spent ? `, ${spent}` : ""}`;
  fillSummary(data);
  const parts = new Set(Object.values(data.parts || {}));
  const shown = (data.files || []).filter((name) => !parts.has(name));
  $("files-title").hidden = shown.length === 0;
  $("files").replaceChildren(...shown.map((name) => {
    const li = document.createElement("li");
    li.append(link(data, name, `${fileLabel(name)}：${name}`));
    return li;
  }));
}

function watch(id) {
  if (events) events.close();
  events = new EventSource(`/api/jobs/${encodeURIComponent(id)}/events`);
  events.onmessage = (event) => {
    const data = JSON.parse(event.data);
    if (data.id !== (job && job.id)) return;  // a stream of a job no longer shown
    render(data);
    if (!ACTIVE.includes(data.state)) { events.close(); events = null; jobs(); }
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
    if (data.jobs.length) header(table, ["文件 · file", "上传时间 · uploaded", "状态 · state", "付费 · paid", ""]);
    const body = table.createTBody();
    for (const j of data.jobs.slice(page * PAGE, (page + 1) * PAGE)) {
      const tr = body.insertRow();
      const name = tr.insertCell();
      const a = document.createElement("a");
      a.href = "#"; a.textContent = j.name;
      a.addEventListener("click", (e) => { e.preventDefault(); choose(j.id); });
      name.append(a);
      cell(tr, new Date(j.created * 1000).toLocaleString("zh-CN"));
      const progress = j.state === "running" && j.total ? ` ${Math.floor((100 * j.done) / j.total)}%` : "";
      cell(tr, (STATES[j.state] || j.state).split(" (")[0] + progress);
      const paid = j.summary && j.summary.paid != null ? j.summary.paid : j.progress && j.progress.paid;
      const spent = j.summary && j.summary.paid != null ? j.summary.spent : j.progress && j.progress.spent;
      cell(tr, paid == null ? "" : `${number(paid)} 次${spent ? ` · ${spent}` : ""}`, "n");
      const remove = document.createElement("button");
      remove.type = "button"; remove.className = "delete"; remove.textContent = "删除 · delete";
      remove.setAttribute("aria-label", `删除 delete ${j.name}`);
      remove.disabled = ACTIVE.includes(j.state);
      remove.addEventListener("click", async () => {
        try { await call("DELETE", `/api/jobs/${encodeURIComponent(j.id)}`); if (job && job.id === j.id) { job = null; $("plan-section").hidden = true; $("progress-section").hidden = true; } jobs(); } catch (error) { show(error.message); }
      });
      tr.insertCell().append(remove);
    }
    $("pages").hidden = pages < 2;
    $("page-text").textContent = `${page + 1} / ${pages} · ${number(data.jobs.length)} 个任务 jobs`;
    $("previous").disabled = page === 0;
    $("next").disabled = page >= pages - 1;
    // the list follows running jobs (this page's or another's) until none is active
    clearTimeout(polling);
    polling = data.jobs.some((j) => ACTIVE.includes(j.state)) ? setTimeout(jobs, 2000) : null;
  } catch (error) { show(error.message); }
}

async function choose(id) {
  // exactly that job, as the server has it now: its state, plan, summary and files, and nothing of another's
  if (events) { events.close(); events = null; }
  try {
    const data = await call("GET", `/api/jobs/${encodeURIComponent(id)}`);
    render(data);
    if (ACTIVE.includes(data.state)) watch(data.id);
  } catch (error) { show(error.message); }
}

async function info() {
  try {
    const data = await call("GET", "/api/info");
    $("simulated").hidden = !data.simulated;
    $("store").textContent = `结果库 · answer store: ${data.store} · 上传上限 · max upload ${data.max_upload}`;
    $("price").textContent = data.price ? `单价 ${data.price} / 次 · price a query` : "未设单价，费用只显示次数 · no price set: costs are shown as queries (qxt serve --price 0.05)";
  } catch (error) { show(error.message); }
}

async function replan(body) {
  try { show(""); render(await call("POST", `/api/jobs/${job.id}/plan`, body)); } catch (error) { show(error.message); }
}

window.addEventListener("DOMContentLoaded", () => {
  $("file").addEventListener("change", (e) => { if (e.target.files[0]) upload(e.target.files[0]); });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); if (e.dataTransfer.files[0]) upload(e.dataTransfer.files[0]); });
  $("column").addEventListener("change", (e) => replan({ column: e.target.value }));
  $("sheet").addEventListener("change", (e) => replan({ sheet: e.target.value }));
  $("run").addEventListener("click", async () => {
    try {
      show("");
      const data = await call("POST", `/api/jobs/${job.id}/run`);
      render(data);
      watch(job.id);
      jobs();
    } catch (error) { show(error.message); }
  });
  $("stop").addEventListener("click", async () => {
    try { render(await call("POST", `/api/jobs/${job.id}/stop`)); } catch (error) { show(error.message); }
  });
  $("previous").addEventListener("click", () => { page = Math.max(0, page - 1); jobs(); });
  $("next").addEventListener("click", () => { page += 1; jobs(); });
  info();
  jobs();
});
