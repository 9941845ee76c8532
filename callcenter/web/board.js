// The live wallboard (/app/board, issue 12 item 4): back office and supervision only.
// It reads the board's event stream (/api/v1/board/stream) with fetch() streaming, since the stream
// needs the bearer token (EventSource sends no headers), and draws every "board" event. Times in an
// event are epoch seconds ("since"): this page counts the seconds itself, so the server sends only
// changes. Listen / whisper / barge call the existing supervise API (/api/v1/operators/{ext}/supervise).
import { readEvents } from "./console.js";

const API = "/api/v1";
const store = window.sessionStorage;
const ROLES = ["back_office", "supervisor"];
const STATE_WORDS = { free: "空闲", busy: "通话中", paused: "小休", unavailable: "不可用" };
const PAUSE_WORDS = { break: "小休", meal: "用餐", training: "培训", meeting: "会议", after_call_work: "话后整理", other: "其他" };
const MODES = { listen: "监听", whisper: "耳语", barge: "强插" };
const RETRY_MS = 5000;

const $ = (sel, root = document) => root.querySelector(sel);
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const headers = (extra = {}) => ({ Authorization: `Bearer ${store.getItem("token")}`, ...extra });

async function api(method, path, body) {
  const r = await fetch(API + path, { method, headers: headers(body ? { "Content-Type": "application/json" } : {}),
                                      body: body ? JSON.stringify(body) : undefined });
  let data = null;
  try { data = await r.json(); } catch { data = null; }
  if (!r.ok) throw new Error(`${r.status} ${data && data.detail ? data.detail : ""}`.trim());
  return data;
}

// ---- what the page shows ---------------------------------------------------------------------
const view = { offset: 0, me: null, sessions: [] };   // offset: local clock minus the server's

function serverNow() { return Date.now() / 1000 - view.offset; }

function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return hh ? `${hh}:${two(mm)}:${two(ss)}` : `${two(mm)}:${two(ss)}`;
}

function percent(rate) {
  return rate && rate.rate !== null && rate.rate !== undefined ? `${(rate.rate * 100).toFixed(1)}%` : "—";
}

function setText(id, text) { const el = document.getElementById(id); if (el) el.textContent = text; }

function tick() {
  for (const el of document.querySelectorAll("[data-since]")) {
    const since = parseFloat(el.dataset.since);
    el.textContent = Number.isFinite(since) ? duration(serverNow() - since) : "—";
  }
}

function draw(state) {
  const q = state.queue, ops = state.operators;
  setText("waiting", q.callers_waiting);
  $("#longest").dataset.since = q.longest_wait_since === null ? "" : q.longest_wait_since;
  for (const k of ["free", "busy", "paused"]) setText(k, ops.counts[k] ?? 0);
  const t = state.today;
  if (t) {
    setText("answer-rate", percent(t.answer_rate));
    setText("answer-rate-of", `${t.answer_rate.numerator}/${t.answer_rate.denominator}`);
    setText("service-level", percent(t.answered_within));
    setText("service-level-of", `${t.answered_within.numerator}/${t.answered_within.denominator}`);
    setText("within-s", t.answer_within_s);
    setText("abandoned", t.abandoned);
    setText("offered", t.offered);
    setText("self-served", t.self_served);
  }
  $("#operators tbody").replaceChildren(...(ops.list.length ? ops.list.map(operatorRow)
    : [h("tr", {}, h("td", { colspan: 6, class: "empty" }, "没有坐席签入队列"))]));
  $("#callers tbody").replaceChildren(...(q.callers.length ? q.callers.map((c) => h("tr", {},
    h("td", {}, c.position), h("td", {}, c.caller_number || "未显示号码"), h("td", { class: "since", dataset: { since: c.since } })))
    : [h("tr", {}, h("td", { colspan: 3, class: "empty" }, "无人排队"))]));
  const overdue = state.overdue;
  if (overdue) {
    $("#overdue tbody").replaceChildren(...(overdue.units.length ? overdue.units.map((u) => h("tr", { dataset: { unit: u.code } },
      h("td", {}, u.name), h("td", { class: "report" }, u.report), h("td", { class: "notify" }, u.notify)))
      : [h("tr", {}, h("td", { colspan: 3, class: "empty" }, "当前无超期工单"))]));
  }
  setText("link-status", state.link.connected ? "电话系统已连接" : "电话系统断开，正在重连……");
  tick();
}

function operatorRow(op) {
  const mine = view.sessions.find((s) => s.operator === op.extension);
  const left = op.wrap_up_until ? `，剩 ${Math.max(0, Math.round(op.wrap_up_until - Date.now() / 1000))} 秒` : "";
  const reason = op.state === "paused" && op.paused_reason ? `（${PAUSE_WORDS[op.paused_reason] || op.paused_reason}${left}）` : "";
  const buttons = op.state === "busy" ? Object.entries(MODES).map(([mode, word]) =>
    h("button", { type: "button", class: mine && mine.mode === mode ? "" : "secondary", dataset: { mode },
                  onclick: () => supervise(op.extension, mode) }, word)) : [];
  if (mine) buttons.push(h("button", { type: "button", class: "secondary leave", onclick: () => leave(op.extension) }, "离开"));
  return h("tr", { class: `state-${op.state}`, dataset: { extension: op.extension, state: op.state } },
    h("td", {}, op.extension), h("td", {}, op.name || ""),
    h("td", { class: "state" }, `${STATE_WORDS[op.state] || op.state}${reason}`),
    h("td", { class: "since", dataset: { since: op.since } }),
    h("td", {}, op.calls_taken), h("td", { class: "supervise" }, buttons));
}

// ---- listen / whisper / barge --------------------------------------------------------------------
async function loadSessions() {
  try {
    const all = await api("GET", "/supervise");
    view.sessions = all.filter((s) => view.me && s.supervisor === view.me.username);
  } catch { view.sessions = []; }
}

async function supervise(extension, mode) {
  const status = $("#supervise-status");
  status.textContent = `正在呼叫您的话机以${MODES[mode]}分机 ${extension}……`;
  let said;
  try {
    await api("POST", `/operators/${encodeURIComponent(extension)}/supervise`, { mode });
    said = `正在${MODES[mode]}分机 ${extension}`;
  } catch (err) { said = `${MODES[mode]}失败：${err.message}`; }
  await loadSessions();
  if (view.last) draw(view.last);  // the buttons of the mode now in use
  status.textContent = said;
}

async function leave(extension) {
  let said;
  try {
    await api("DELETE", `/operators/${encodeURIComponent(extension)}/supervise`);
    said = `已离开分机 ${extension} 的通话`;
  } catch (err) { said = `离开失败：${err.message}`; }
  await loadSessions();
  if (view.last) draw(view.last);
  $("#supervise-status").textContent = said;
}

// ---- the stream ----------------------------------------------------------------------------------
function showError(text) {
  const el = $("#board-error");
  el.textContent = text;
  el.hidden = !text;
}

async function stream() {
  let response;
  try {
    response = await fetch(`${API}/board/stream`, { headers: headers({ Accept: "text/event-stream" }) });
  } catch {
    setText("link-status", "与服务器的连接中断，稍后重试……");
    setTimeout(stream, RETRY_MS);
    return;
  }
  if (!response.ok) {
    if (response.status === 401) { location.replace("/app/login"); return; }
    if (response.status === 403) { showError("本页仅供后台与监察人员查看。"); return; }
    if (response.status === 503) showError("电话系统未接入本服务（无AMI连接）：大屏暂不可用，稍后重试。");
    else showError(`大屏数据读取失败（${response.status}）`);
    setTimeout(stream, RETRY_MS * 2);
    return;
  }
  showError("");
  await readEvents(response, (ev) => {
    if (ev.type === "board") {
      view.offset = Date.now() / 1000 - ev.state.at;  // on receipt only: a redraw keeps counting on
      view.last = ev.state;
      draw(ev.state);
      document.body.dataset.updates = String(+(document.body.dataset.updates || 0) + 1);
    } else if (ev.type === "link") setText("link-status", ev.connected ? "电话系统已连接" : "电话系统断开，正在重连……");
  });
  setText("link-status", "与服务器的连接中断，稍后重试……");
  setTimeout(stream, RETRY_MS);
}

async function start() {
  if (!store.getItem("token")) { location.replace("/app/login"); return; }
  $(".logout").addEventListener("click", async () => {
    try { await api("POST", "/auth/logout"); } catch { /* expired already */ }
    store.clear();
    location.assign("/app/login");
  });
  try { view.me = await api("GET", "/auth/me"); } catch { location.replace("/app/login"); return; }
  $(".who").textContent = view.me.display_name || view.me.username;
  if (!ROLES.includes(view.me.role)) { showError("本页仅供后台与监察人员查看。"); return; }
  await loadSessions();
  setInterval(tick, 1000);
  stream();
}

start();
document.documentElement.dataset.ready = "1";
