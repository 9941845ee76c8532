// 12345 staff console: one module for every page (body[data-page] says which).
// It only calls the /api/v1 JSON API with the bearer token kept in sessionStorage; the API
// decides who may see and do what (R5.3, R7.3c), this code never works around it.

const API = "/api/v1";
const store = window.sessionStorage;

// ---- names shown to people ---------------------------------------------------------------
const L = {
  kind: { consultation: "咨询", suggestion: "建议批评", complaint: "投诉举报", urgent_help: "非警务紧急求助" },
  channel: { landline: "固定电话", mobile: "手机", web: "网站", fax: "传真", sms: "短信" },
  caseStatus: {
    new: "新受理", rejected: "不予受理", pending_back_office: "待后台派单", dispatched: "已交办",
    reported: "已报结", awaiting_close: "待办结", unsatisfied: "不满意", closed: "已办结",
  },
  woStatus: {
    dispatched: "待签收", received: "已签收", notified: "已告知", reported: "已报结",
    return_requested: "退回待审核", returned: "已退回", cancelled: "已撤销",
  },
  mode: { work_order: "电子工单", three_way: "三方通话", transfer: "电话转接", discipline: "转纪委监察局（工单）" },
  woRole: { sole: "单独办理", lead: "牵头单位", co_unit: "协办单位", independent: "分别办理" },
  satisfaction: { satisfied: "满意", basically_satisfied: "基本满意", unsatisfied: "不满意", not_rated: "未评价" },
  reject: {
    outside_jurisdiction: "(1) 不属于本市管辖",
    military_or_police: "(2) 涉军涉警或属110报警事项",
    legal_proceedings: "(3) 已进入诉讼、仲裁、行政审批或复议程序",
    secrets_or_privacy: "(4) 涉及国家秘密、商业秘密或个人隐私",
    unlawful_or_immoral: "(5) 违反法律法规或社会公德",
    unit_not_joined: "(6) 承办单位未加入平台",
    cannot_be_handled: "(7) 无法办理或答复",
  },
  role: { front_desk: "前台话务员", back_office: "后台", unit_staff: "成员单位", discipline: "纪委监察局",
          supervisor: "监督", admin: "管理员" },
  mark: { overdue: "已超期", soon: "即将到期", met: "按时", late: "超期", pending: "" },
  notifyChannel: { phone: "电话", auto_voice: "热线自动语音电话", auto_sms: "热线短信", sms: "短信", visit: "上门", original: "原渠道", other: "其他" },
  pause: { break: "小休", meal: "用餐", training: "培训", meeting: "会议", after_call_work: "话后整理", other: "其他" },
};
const ROLE_HOME = { front_desk: "/app/desk", unit_staff: "/app/unit", discipline: "/app/unit",
                    back_office: "/app/back", supervisor: "/app/back", admin: "/app/back" };
const PAGE_ROLES = { desk: ["front_desk"], unit: ["unit_staff", "discipline"], back: ["back_office", "supervisor", "admin"],
                     knowledge: ["unit_staff", "discipline", "back_office", "supervisor"] };
PAGE_ROLES.stats = ["back_office", "supervisor", "admin", "unit_staff", "discipline"];  // stats.js
const STATUS_WORDS = {
  0: "无法连接服务器", 400: "请求有误", 401: "登录已失效，请重新登录", 403: "无权执行此操作", 404: "未找到",
  409: "当前状态不允许此操作", 410: "通话已结束", 413: "提交的内容过长", 422: "输入有误", 503: "服务暂不可用",
};
// The regulation's rule behind a refusal, in the words staff use (REQUIREMENTS.md).
const RULE_HINTS = {
  "R3.1": "不予受理须选择原因", "R3.2": "须记录告知诉求人的去向", "R4.1": "首问负责：仅受理人或后台可处理",
  "R5.1": "前台职责范围", "R5.2": "后台职责范围", "R5.3": "工单属于其他单位",
  "R7.2": "直接答复须记录答复内容", "R7.3": "交办规则", "R7.3c": "党员干部经济问题举报只交纪委监察局",
  "R7.3f": "便民服务须先告知可能收费并经诉求人同意", "R7.3g": "应急事项须与应急办三方通话",
  "R7.3h": "多单位件由后台确定牵头单位", "R7.4": "回访与满意度", "R7.5": "办结规则", "R7.6": "公开规则",
  "R7.7": "催办", "R8.1": "签收工单", "R8.2": "告知诉求人", "R8.4": "报结须先告知诉求人并写明答复",
  "R8.5": "延期须引用依据，1至60个工作日", "R8.6": "退回须在退回期限内并说明理由", "T1": "工作日历",
};
const FIELD_WORDS = {
  title: "标题", description: "诉求内容", citizen_phone: "联系电话", citizen_id_number: "身份证号",
  citizen_name: "诉求人姓名", location: "地点", answer: "答复内容", referral: "告知去向", reason: "原因",
  legal_basis: "延期依据", extra_working_days: "延期工作日数", channel: "告知方式", satisfaction: "满意度",
  note: "说明", username: "用户名", password: "密码", category_code: "分类", kind: "诉求类型",
};

// ---- small helpers -----------------------------------------------------------------------
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

const TIME = new Intl.DateTimeFormat("zh-CN", { timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit",
  day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
function fmt(iso) {
  if (!iso) return "—";
  const p = Object.fromEntries(TIME.formatToParts(new Date(iso)).map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}`;
}
const CATEGORIES = [];  // from /console/categories, loaded once per page
const categoryName = (code) => (CATEGORIES.find((c) => c.code === code) || { name: code || "—" }).name;
const label = (table, key) => (key === null || key === undefined ? "—" : (L[table][key] ?? key));

class ApiError extends Error {
  constructor(status, rule, detail) {
    super(detail || "");
    this.status = status; this.rule = rule; this.detail = detail;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = store.getItem("token");
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let r;
  try {
    r = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "network", "请检查网络后重试");
  }
  if (r.status === 204) return null;
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!r.ok) {
    const detail = data && typeof data.detail === "string" ? data.detail
      : (data && data.detail ? JSON.stringify(data.detail) : text.slice(0, 300));
    if (r.status === 401 && path !== "/auth/token") expired();
    throw new ApiError(r.status, data && data.error, detail);
  }
  return data;
}
const get = (path) => api("GET", path);
const post = (path, body = {}) => api("POST", path, body);

function explain(err) {
  if (!(err instanceof ApiError)) return `出错了：${err && err.message ? err.message : err}`;
  const words = STATUS_WORDS[err.status] || `出错了（${err.status}）`;
  let detail = err.detail || "";
  if (err.rule === "invalid_input") {
    detail = detail.replace(/(^|; )([a-z_.]+):/g, (m, sep, field) => {
      const last = field.split(".").pop();
      return `${sep}${FIELD_WORDS[last] || field}：`;
    });
  }
  const hint = RULE_HINTS[err.rule];
  const rule = hint ? `（${err.rule} ${hint}）` : (err.rule && /^[RTA]\d/.test(err.rule) ? `（${err.rule}）` : "");
  return `${words}${rule}${detail ? "：" + detail : ""}`;
}
function showError(el, err) {
  if (!el) return;
  el.textContent = explain(err);
  el.hidden = false;
}
function clearError(el) { if (el) { el.textContent = ""; el.hidden = true; } }

function expired() {
  store.removeItem("token");
  const who = $(".who");
  if (who && !$(".relogin")) who.after(h("a", { class: "relogin", href: "/app/login" }, "登录已失效，请重新登录"));
}

function markBadge(mark) {
  if (!mark || mark === "pending") return null;
  return h("span", { class: `mark ${mark}` }, L.mark[mark]);
}
// T1: a deadline counted over a year whose holiday arrangement is not published yet is 暂定; it
// is corrected when the arrangement is entered. `row.provisional_deadlines` names those columns.
function provisionalBadge(row, column) {
  if (!row || !(row.provisional_deadlines || []).includes(column)) return null;
  return h("span", { class: "mark provisional", title: "节假日安排未公布，按法定节假日暂定，公布后自动更正" }, "暂定");
}
function due(iso, mark, row, column) {
  return h("span", { class: `due ${mark || ""}` }, fmt(iso), " ", markBadge(mark), provisionalBadge(row, column));
}
// For case-level deadlines the API gives `overdue` (dispatched and past the deadline) and the met flags.
function caseDue(iso, met, overdue, row, column) {
  const mark = met === true ? "met" : met === false ? "late" : overdue ? "overdue" : null;
  return due(iso, mark, row, column);
}

// ---- action forms: values stay in the form when the API refuses -----------------------------
// fields: [{name, label, type: text|textarea|select|checkbox|number|hidden, options: {value: label}, value, required}]
// buttons: [{label, value}] - several submit buttons (values._button tells which); default one `submit`.
function actionForm({ title, fields = [], submit = "提交", buttons = null, onSubmit, cls = "" }) {
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const done = h("p", { class: "done", hidden: true });
  const form = h("form", { class: `action ${cls}`, novalidate: true });
  if (title) form.append(h("h4", {}, title));
  for (const f of fields) {
    let input;
    if (f.type === "textarea") input = h("textarea", { name: f.name, rows: f.rows || 2, maxlength: 5000 });
    else if (f.type === "select") {
      input = h("select", { name: f.name },
        Object.entries(f.options).map(([v, t]) => h("option", { value: v }, t)));
    } else if (f.type === "checkbox") input = h("input", { type: "checkbox", name: f.name });
    else input = h("input", { type: f.type || "text", name: f.name, maxlength: f.type === "number" ? null : 200,
                              min: f.min, max: f.max });
    if (f.value !== undefined && f.value !== null) input.value = f.value;
    if (f.type === "hidden") { form.append(input); continue; }
    form.append(h("label", { class: f.type === "checkbox" ? "inline" : "" }, f.label, " ", input));
  }
  const bar = h("div", { class: "actions" });
  for (const b of buttons || [{ label: submit, value: "submit" }]) {
    bar.append(h("button", { type: "submit", value: b.value, class: b.cls || "" }, b.label));
  }
  form.append(bar, error, done);
  // typed into (or a choice changed): a list reload keeps this form as it is until it is sent
  const touched = () => { form.dataset.dirty = "1"; };
  form.addEventListener("input", touched);
  form.addEventListener("change", touched);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearError(error);
    done.hidden = true;
    const values = { _button: ev.submitter ? ev.submitter.value : "submit" };
    for (const f of fields) {
      const el = form.elements[f.name];
      values[f.name] = f.type === "checkbox" ? el.checked : f.type === "number" ? Number(el.value) : el.value.trim();
      if (f.required && (values[f.name] === "" || (f.type === "number" && !el.value))) {
        showError(error, new ApiError(422, "invalid_input", `请填写「${f.label}」`));
        el.focus();
        return;
      }
    }
    $$("button", form).forEach((b) => { b.disabled = true; });
    try {
      const message = await onSubmit(values);
      delete form.dataset.dirty;  // sent: the next reload draws the row afresh
      done.textContent = message || "已完成";
      done.hidden = false;
    } catch (err) {
      showError(error, err);
    } finally {
      $$("button", form).forEach((b) => { b.disabled = false; });
    }
  });
  return form;
}

const SATISFACTION_ASK = { "": "— 请选择 —", satisfied: "满意", basically_satisfied: "基本满意", unsatisfied: "不满意" };
const rejectOptions = () => Object.fromEntries(Object.entries(L.reject));
function unitOptions(units, first) {
  const out = first ? { "": first } : {};
  for (const u of units) if (u.joined) out[u.code] = u.name;
  return out;
}

// ---- session and page guard --------------------------------------------------------------
function session() {
  return { token: store.getItem("token"), username: store.getItem("username"), role: store.getItem("role"),
           unit: store.getItem("unit_code") };
}

async function guard(page) {
  const s = session();
  if (!s.token) { location.replace("/app/login"); return null; }
  if (!PAGE_ROLES[page].includes(s.role)) { location.replace(ROLE_HOME[s.role] || "/app/login"); return null; }
  let me;
  try { me = await get("/auth/me"); } catch (err) {
    if (err.status === 401) { location.replace("/app/login"); return null; }
    throw err;
  }
  let unitName = me.unit_code;
  try {
    CATEGORIES.push(...await get("/console/categories"));
    if (me.unit_code) unitName = (await get(`/units/${encodeURIComponent(me.unit_code)}`)).name;
  } catch { /* names only: the codes stay readable */ }
  const who = $(".who");
  if (who) {
    who.textContent = `${me.display_name || me.username}（${label("role", me.role)}${unitName ? " · " + unitName : ""}）`;
  }
  const out = $(".logout");
  if (out) out.addEventListener("click", logout);
  return me;
}

async function logout() {
  try { await post("/auth/logout"); } catch { /* the token may have expired already */ }
  store.clear();
  location.assign("/app/login");
}

function initLogin() {
  const form = $("#login-form");
  const error = $(".error", form);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearError(error);
    const username = form.elements.username.value.trim();
    const password = form.elements.password.value;
    if (!username || !password) { showError(error, new ApiError(422, "", "请输入用户名和密码")); return; }
    try {
      const t = await post("/auth/token", { username, password });
      const home = ROLE_HOME[t.role];
      if (!home) { showError(error, new ApiError(403, "", "此账号的角色没有工作台页面")); return; }
      store.setItem("token", t.access_token);
      store.setItem("username", t.username);
      store.setItem("role", t.role);
      store.setItem("unit_code", t.unit_code || "");
      location.assign(home);
    } catch (err) {
      if (err.status === 401) { error.textContent = "用户名或密码错误"; error.hidden = false; }
      else showError(error, err);
    }
  });
}

// ---- shared case rendering ---------------------------------------------------------------
function workOrderLine(wo) {
  return h("li", { class: "wo", dataset: { wo: wo.id } },
    h("b", {}, wo.unit_name), ` · ${label("mode", wo.mode)} · ${label("woRole", wo.role)} · `,
    h("span", { class: "status" }, label("woStatus", wo.status)),
    " · 告知时限 ", due(wo.notify_due_at, wo.notified_at ? (wo.notify_met ? "met" : "late") : null, wo, "notify_due_at"),
    " · 报结时限 ", due(wo.report_due_at, wo.reported_at ? (wo.report_met ? "met" : "late") : (wo.overdue ? "overdue" : null), wo, "report_due_at"),
    wo.urge_count ? ` · 已催办${wo.urge_count}次` : "",
    wo.answer ? h("div", { class: "answer" }, "单位答复：", wo.answer) : null,
    wo.return_reason ? h("div", {}, "退回理由：", wo.return_reason) : null);
}

function caseCard(c) {
  return h("div", { class: "case-card", dataset: { number: c.number } },
    h("h3", {}, `${c.number} · ${c.title}`),
    h("p", { class: "meta" }, `${label("kind", c.kind)} · ${label("channel", c.channel)} · 分类 ${categoryName(c.category_code)} · `,
      h("span", { class: "status" }, label("caseStatus", c.status)), ` · 受理 ${fmt(c.accepted_at)}`,
      c.owner ? ` · 首问 ${c.owner}` : "", c.confidential ? h("span", { class: "mark confidential" }, "纪检监察件") : null),
    h("p", { class: "desc" }, c.description),
    c.location || c.citizen_name || c.citizen_phone
      ? h("p", { class: "meta" }, `地点：${c.location || "—"} · 诉求人：${c.citizen_name || "—"} · 电话：${c.citizen_phone || "—"}`) : null,
    c.operator_message && PAGE === "desk" ? h("p", { class: "read-aloud" }, "请向诉求人宣读：", c.operator_message) : null,
    h("p", { class: "meta" }, "办理时限 ", caseDue(c.deadline_at, null, c.overdue, c, "deadline_at"),
      c.dispatch_due_at ? [" · 后台派单时限 ", caseDue(c.dispatch_due_at, c.dispatch_met, false, c, "dispatch_due_at")] : null,
      c.callback_due_at ? [" · 回访时限 ", caseDue(c.callback_due_at, c.callback_met, false, c, "callback_due_at")] : null,
      c.close_due_at ? [" · 办结时限 ", caseDue(c.close_due_at, c.close_met, false, c, "close_due_at")] : null),
    c.reject_reason ? h("p", {}, `不予受理：${label("reject", c.reject_reason)}；告知去向：${c.referral || ""}`) : null,
    c.answer ? h("p", { class: "answer" }, "答复：", c.answer) : null,
    c.satisfaction ? h("p", {}, `满意度：${label("satisfaction", c.satisfaction)}`) : null,
    c.work_orders.length ? h("ul", { class: "wos" }, c.work_orders.map(workOrderLine)) : null);
}

// ---- front desk --------------------------------------------------------------------------
const desk = { categories: [], units: [], pending: null, me: null };

function categoryOf(code) { return desk.categories.find((c) => c.code === code) || null; }

function routingText(cat) {
  if (!cat) return "未选分类：交办时请选择承办单位。";
  const names = cat.units.map((u) => `${u.name}${u.code === cat.lead ? "（牵头）" : ""}${u.joined ? "" : "（未入驻）"}`);
  let text = `路由：${label("mode", cat.mode)} → ${names.join("、") || "（所涉单位）"}`;
  if (cat.concerned_unit) text += "；交所涉单位，请选择";
  if (cat.units.length > 1 && !cat.concerned_unit) text += "；多单位件由后台派单（R7.3h），可转后台";
  if (cat.mode === "three_way" || cat.mode === "transfer") text += "；通话在电话上进行，结束后在下方列表中记录通话结果（R7.4）";
  if (cat.description) text += `。${cat.description}`;
  return text;
}

function fillCategories() {
  const form = $("#case-form");
  const kind = form.elements.kind.value;
  const sel = form.elements.category_code;
  const keep = sel.value;
  sel.replaceChildren(h("option", { value: "" }, "— 未分类 —"),
    ...desk.categories.filter((c) => c.kinds.includes(kind)).map((c) => h("option", { value: c.code }, c.name)));
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
  onCategory();
}

function dispatchTargets(cat) {
  // What the front desk can send: one unit (R7.3h: several units are the back office's).
  const sel = $("#case-form").elements.dispatch_unit;
  const opts = [];
  if (cat && cat.units.length === 1 && !cat.concerned_unit) {
    opts.push(h("option", { value: "" }, `按分类路由：${cat.units[0].name}`));
  } else {
    opts.push(h("option", { value: "" }, "— 请选择承办单位 —"));
  }
  const listed = new Set();
  for (const u of cat ? cat.units : []) {
    listed.add(u.code);
    opts.push(h("option", { value: u.code, disabled: !u.joined }, u.name + (u.joined ? "" : "（未入驻）")));
  }
  if (!cat || cat.concerned_unit || cat.units.length === 0) {
    for (const u of desk.units) if (!listed.has(u.code) && u.joined) opts.push(h("option", { value: u.code }, u.name));
  }
  sel.replaceChildren(...opts);
}

function onCategory() {
  const form = $("#case-form");
  const cat = categoryOf(form.elements.category_code.value);
  $("#routing").textContent = routingText(cat);
  const read = $("#category-read-aloud");
  read.hidden = !(cat && cat.mode === "discipline");
  read.textContent = cat && cat.mode === "discipline" ? `请向诉求人宣读（R7.3c）：${cat.read_aloud}` : "";
  const consent = $(".consent", form);
  consent.hidden = !(cat && cat.mode === "transfer");
  $("#disclaimer").textContent = cat && cat.mode === "transfer" ? `转接前请宣读（R7.3f）：${cat.read_aloud}` : "";
  dispatchTargets(cat);
}

function onHandling() {
  const form = $("#case-form");
  const which = form.elements.handling.value;
  $$(".handling-part", form).forEach((p) => { p.hidden = p.dataset.for !== which; });
}

function dispatchBody(cat, unit, instructions) {
  // Units omitted: the API follows the category's routing rule (units, lead, mode).
  if (!unit) {
    if (!cat || cat.units.length !== 1 || cat.concerned_unit) return null;
    return { instructions };
  }
  const mode = cat ? (cat.mode === "discipline" ? "work_order" : cat.mode) : "work_order";
  return { units: [unit], mode, instructions };
}

function resultPanel(c, note) {
  const panel = $("#case-result");
  panel.replaceChildren(h("p", { class: "done" }, note), caseCard(c));
  panel.hidden = false;
}

function setPending(number) {
  desk.pending = number;
  if (number) window.dispatchEvent(new CustomEvent("case-created", { detail: { number } }));
  const btn = $('#case-form button[type="submit"]');
  btn.textContent = number ? `继续处理诉求件 ${number}` : "提交";
}

async function submitCase(ev) {
  ev.preventDefault();
  const form = ev.target;
  const error = $(".error", form);
  clearError(error);
  const f = form.elements;
  const v = (name) => f[name].value.trim();
  const handling = f.handling.value;
  const cat = categoryOf(v("category_code"));
  const fail = (msg) => showError(error, new ApiError(422, "", msg));
  if (!desk.pending && (!v("title") || !v("description"))) return fail("请填写标题和诉求内容");
  if (handling === "answer" && (!v("answer") || !v("satisfaction"))) return fail("直接答复须填写答复内容，并记录诉求人当场的满意度（R7.4）");
  if (handling === "reject" && !v("referral")) return fail("不予受理须记录告知诉求人的去向：有权处理的机关及其联系方式（R3.2）");
  const transfer = handling === "dispatch" && cat && cat.mode === "transfer";
  let body = null;
  if (handling === "dispatch" && !transfer) {
    body = dispatchBody(cat, v("dispatch_unit"), v("instructions"));
    if (!body) return fail("请选择一个承办单位；多单位件请选择「转后台派单」");
  }
  const submitBtn = $('button[type="submit"]', form);
  submitBtn.disabled = true;
  try {
    let c;
    const base = {
      kind: v("kind"), channel: v("channel"), title: v("title"), description: v("description"),
      category_code: v("category_code") || null, citizen_name: v("citizen_name"), citizen_phone: v("citizen_phone"),
      citizen_id_number: v("citizen_id_number"), location: v("location"),
    };
    const rejectBody = { reason: v("reject_reason"), referral: v("referral") };
    if (!desk.pending) {
      // Dispatch and refusal go in the same request as acceptance: all or nothing.
      c = await post("/cases", { ...base, dispatch: handling === "dispatch" && !transfer ? body : null,
                                 reject: handling === "reject" ? rejectBody : null });
      if (!["dispatch", "reject"].includes(handling) || transfer) setPending(c.number);
    } else {
      c = await get(`/cases/${encodeURIComponent(desk.pending)}`);
      if (handling === "dispatch" && !transfer) c = await post(`/cases/${c.number}/dispatch`, { ...body, expected_version: c.version });
      if (handling === "reject") c = await post(`/cases/${c.number}/reject`, { ...rejectBody, expected_version: c.version });
    }
    let note = `已受理：${c.number}（${label("caseStatus", c.status)}）`;
    if (handling === "answer") {
      const kb = v("knowledge_entry_id");
      c = await post(`/cases/${c.number}/answer`, { answer: v("answer"), satisfaction: v("satisfaction"),
        knowledge_entry_id: kb ? Number(kb) : null, expected_version: c.version });
      note = `已直接答复：${c.number}（满意度：${label("satisfaction", c.satisfaction)}）`;
    } else if (handling === "escalate") {
      c = await post(`/cases/${c.number}/escalate`, { note: v("escalate_note"), expected_version: c.version });
      note = `已转后台派单：${c.number}`;
    } else if (handling === "reject") {
      note = `已记录不予受理：${c.number}`;
    } else if (transfer) {
      c = await post(`/cases/${c.number}/consent`, { disclaimer_read: f.disclaimer_read.checked, consent: f.consent.checked });
      if (!f.consent.checked) {
        setPending(null);
        note = `诉求人不同意转接：${c.number} 已受理，可在下方列表中直接答复或不予受理`;
        resultPanel(c, note);
        resetCaseForm();
        loadMyCases();
        return;
      }
      c = await post(`/cases/${c.number}/dispatch`, { expected_version: c.version, instructions: v("instructions") });
      note = `已转接便民服务中心：${c.number}。通话结束后请在下方记录结果`;
    } else if (handling === "dispatch") {
      note = `已受理并交办：${c.number}`;
    }
    setPending(null);
    resultPanel(c, note);
    resetCaseForm();
    loadMyCases();
  } catch (err) {
    showError(error, err);
    if (desk.pending) {
      error.append(h("br"), `诉求件 ${desk.pending} 已受理；改正后再次提交将继续处理这一件（不会重复受理）。`);
      loadMyCases();
    }
  } finally {
    submitBtn.disabled = false;
  }
}

function resetCaseForm() {
  const form = $("#case-form");
  const keep = { kind: form.elements.kind.value, channel: form.elements.channel.value };
  form.reset();
  form.elements.kind.value = keep.kind;
  form.elements.channel.value = keep.channel;
  setPending(null);
  fillCategories();
  onHandling();
}

// R7.2: the knowledge base searched as the operator types, the case's category first.
async function searchKnowledge(ev, category) {
  if (ev) ev.preventDefault();
  const box = $("#knowledge");
  const error = $(".error", box);
  clearError(error);
  const q = $("#kb-form").elements.q.value.trim();
  const cat = category || $("#case-form").elements.category_code.value;
  if (!q && !cat) { $("#kb-results").replaceChildren(); return; }
  const asked = `/knowledge?q=${encodeURIComponent(q)}&limit=10${cat ? "&category=" + encodeURIComponent(cat) : ""}`;
  desk.kbAsked = asked;
  try {
    const rows = await get(asked);
    if (desk.kbAsked !== asked) return;  // a later keystroke's answer is the one to show
    $("#kb-results").replaceChildren(...rows.map((e) => h("li", { dataset: { entry: e.id } },
      h("b", {}, e.question), h("div", { class: "answer" }, e.answer),
      h("div", { class: "meta" }, `${e.unit_name} · 第${e.version}版 · 更新 ${fmt(e.updated_at)}`),
      h("button", { type: "button", class: "secondary", onclick: () => useAnswer(e) }, "用此答复"),
      h("button", { type: "button", class: "link", onclick: () => flagEntry(e, error) }, "反映有误"))));
    if (!rows.length) $("#kb-results").replaceChildren(h("li", { class: "empty" }, "没有找到相关条目。"));
  } catch (err) { showError(error, err); }
}

async function flagEntry(entry, error) {
  const note = window.prompt(`条目「${entry.question}」哪里有误或已过时？`);
  if (!note || !note.trim()) return;
  try {
    await post(`/knowledge/${entry.id}/flags`, { reason: "outdated", note: note.trim() });
    window.alert("已转交该条目的维护单位。");
  } catch (err) { showError(error, err); }
}

function useAnswer(entry) {
  const f = $("#case-form").elements;
  f.answer.value = entry.answer;
  f.knowledge_entry_id.value = entry.id;
  f.handling.value = "answer";
  onHandling();
  f.satisfaction.focus();
}

async function loadMyCases() {
  const box = $("#my-cases");
  const error = $(".error", box);
  clearError(error);
  try {
    const rows = await get("/console/my-cases");
    $("tbody", box).replaceChildren(...rows.map((c) => h("tr", { dataset: { number: c.number }, class: c.overdue ? "overdue" : "" },
      h("td", {}, c.number), h("td", {}, label("kind", c.kind)), h("td", {}, c.title),
      h("td", { class: "status" }, label("caseStatus", c.status)),
      h("td", {}, c.work_orders.filter((w) => w.status !== "cancelled").map((w) => `${w.unit_name}（${label("woStatus", w.status)}）`).join("、") || "—"),
      h("td", {}, caseDue(c.deadline_at, null, c.overdue, c, "deadline_at")),
      h("td", {}, c.callback_required ? caseDue(c.callback_due_at, c.callback_met, false, c, "callback_due_at") : "无需回访"),
      h("td", {}, caseDue(c.close_due_at, c.close_met, false, c, "close_due_at")),
      h("td", {}, h("button", { type: "button", class: "secondary", onclick: () => openDeskCase(c.number) }, "处理")))));
    if (!rows.length) $("tbody", box).replaceChildren(h("tr", {}, h("td", { colspan: 9, class: "empty" }, "暂无未办结的诉求件。")));
  } catch (err) { showError(error, err); }
}

// R7.1, R2.2: a fax arrives with only its PDF; the desk types in the request before handling it.
function intakeForm(c, after) {
  const categories = { "": "— 请选择 —", ...Object.fromEntries(CATEGORIES.map((k) => [k.code, k.name])) };
  return actionForm({ title: "补全来件信息（传真件：请对照附件填写）", cls: "intake", fields: [
    { name: "kind", label: "诉求类型", type: "select", options: L.kind, value: c.kind },
    { name: "category_code", label: "分类", type: "select", options: categories, value: c.category_code || "" },
    { name: "title", label: "标题", required: true, value: c.title },
    { name: "description", label: "诉求内容", type: "textarea", rows: 3, required: true, value: c.description },
    { name: "citizen_name", label: "诉求人姓名", value: c.citizen_name || "" },
    { name: "citizen_phone", label: "联系电话", value: c.citizen_phone || "" },
    { name: "location", label: "地点", value: c.location || "" }],
    submit: "保存",
    onSubmit: (v) => after(post(`/cases/${c.number}/intake`, { kind: v.kind, category_code: v.category_code || null,
      title: v.title, description: v.description, citizen_name: v.citizen_name, citizen_phone: v.citizen_phone,
      location: v.location, expected_version: c.version }), "已保存来件信息") });
}

async function openDeskCase(number, flash = "") {
  const panel = $("#case-detail");
  const error = $(".error", $("#my-cases"));
  clearError(error);
  let c;
  try { c = await get(`/cases/${encodeURIComponent(number)}`); } catch (err) { showError(error, err); return; }
  const cat = categoryOf(c.category_code);
  // after a change the panel is drawn again from the API, with what was done said on top
  const after = async (promise, msg) => {
    const updated = await promise;
    const text = msg + (updated && updated.status ? `（${label("caseStatus", updated.status)}）` : "");
    loadMyCases();
    setTimeout(() => openDeskCase(number, text), 0);
    return text;
  };
  const forms = [];
  const ver = { expected_version: c.version };
  if (c.status === "new" && c.channel === "fax") forms.push(intakeForm(c, after));
  if (c.status === "new") {
    const units = cat && cat.units.length && !cat.concerned_unit ? cat.units : desk.units;
    forms.push(actionForm({ title: "交办", fields: [
      { name: "unit", label: "承办单位", type: "select", options: unitOptions(units, cat && cat.units.length === 1 ? `按分类路由：${cat.units[0].name}` : "— 请选择 —") },
      { name: "instructions", label: "交办意见", type: "textarea" }],
      onSubmit: (v) => {
        const body = dispatchBody(cat, v.unit, v.instructions);
        if (!body) throw new ApiError(422, "", "请选择一个承办单位；多单位件请转后台派单");
        return after(post(`/cases/${c.number}/dispatch`, { ...body, ...ver }), "已交办");
      } }));
    if (cat && cat.mode === "transfer") {
      forms.push(actionForm({ title: `便民服务告知（R7.3f）：${cat.read_aloud}`, fields: [
        { name: "disclaimer_read", label: "已宣读", type: "checkbox" }, { name: "consent", label: "诉求人同意", type: "checkbox" }],
        onSubmit: (v) => after(post(`/cases/${c.number}/consent`, { disclaimer_read: v.disclaimer_read, consent: v.consent }), "已记录") }));
    }
    forms.push(actionForm({ title: "直接答复（R7.2）", fields: [
      { name: "answer", label: "答复内容", type: "textarea", required: true },
      { name: "satisfaction", label: "满意度", type: "select", options: SATISFACTION_ASK, required: true }],
      onSubmit: (v) => after(post(`/cases/${c.number}/answer`, { answer: v.answer, satisfaction: v.satisfaction, ...ver }), "已答复") }));
    forms.push(actionForm({ title: "不予受理（R3.1/R3.2）", fields: [
      { name: "reason", label: "原因", type: "select", options: rejectOptions() },
      { name: "referral", label: "告知去向", type: "textarea", required: true }],
      onSubmit: (v) => after(post(`/cases/${c.number}/reject`, { reason: v.reason, referral: v.referral, ...ver }), "已记录") }));
    forms.push(actionForm({ title: "转后台派单", fields: [{ name: "note", label: "说明", type: "textarea" }],
      onSubmit: (v) => after(post(`/cases/${c.number}/escalate`, { note: v.note, ...ver }), "已转后台") }));
  }
  const live = c.work_orders.some((w) => w.mode !== "work_order" && w.status === "notified");
  if (c.status === "dispatched" && live) {
    forms.push(actionForm({ title: "记录通话结果（R7.4：三方通话/转接当场评价）", fields: [
      { name: "answer", label: "处理结果", type: "textarea", required: true },
      { name: "satisfaction", label: "满意度", type: "select", options: { ...SATISFACTION_ASK, not_rated: "未评价（转接）" }, required: true }],
      onSubmit: (v) => after(post(`/cases/${c.number}/live-outcome`, { answer: v.answer, satisfaction: v.satisfaction, ...ver }), "已记录") }));
  }
  if (c.status === "reported" && c.callback_required) {
    forms.push(actionForm({ title: "回访结果（R7.4）", fields: [
      { name: "satisfaction", label: "满意度", type: "select", options: SATISFACTION_ASK, required: true },
      { name: "note", label: "回访记录", type: "textarea" }],
      onSubmit: (v) => after(post(`/cases/${c.number}/callback`, { satisfaction: v.satisfaction, note: v.note, ...ver }), "已记录回访") }));
  }
  if (c.status === "awaiting_close" || (c.status === "reported" && !c.callback_required)) {
    forms.push(actionForm({ title: "办结（R7.5）", fields: [{ name: "note", label: "说明", type: "textarea" }],
      onSubmit: (v) => after(post(`/cases/${c.number}/close`, { note: v.note, ...ver }), "已办结") }));
  }
  for (const wo of c.work_orders) {
    if (["dispatched", "received", "notified", "return_requested"].includes(wo.status)) {
      forms.push(actionForm({ title: `催办 ${wo.unit_name}（R7.7）`, fields: [{ name: "note", label: "催办意见", type: "text" }],
        submit: "催办", onSubmit: async (v) => {
          const n = await post(`/work-orders/${wo.id}/urge`, { note: v.note });
          loadMyCases();
          return `已催办，通知 ${n.recipient || wo.unit_name}`;
        } }));
    }
  }
  panel.replaceChildren(h("div", { class: "detail", dataset: { number: c.number, version: c.version } },
    h("div", { class: "detail-head" }, h("h3", {}, "诉求件详情"),
      h("button", { type: "button", class: "secondary", onclick: () => panel.replaceChildren() }, "关闭")),
    flash ? h("p", { class: "done flash" }, flash) : null,
    repeatFlag(c), caseCard(c), h("div", { class: "attachments" }), h("div", { class: "forms" }, forms)));
  showAttachments(c, $(".attachments", panel));
}

// Files of the case (a citizen's photo from the web portal): read with the token, shown as data: URLs.
async function showAttachments(c, box) {
  let files = [];
  try { files = await get(`/cases/${encodeURIComponent(c.number)}/attachments`); } catch { return; }
  for (const f of files) {
    const r = await fetch(`${API}/cases/${encodeURIComponent(c.number)}/attachments/${f.id}`,
      { headers: { Authorization: `Bearer ${store.getItem("token")}` } });
    if (!r.ok) continue;
    const blob = new Blob([await r.arrayBuffer()], { type: f.media_type });
    const url = await new Promise((resolve) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => resolve(null);
      reader.readAsDataURL(blob);
    });
    if (!url) continue;
    box.append(f.media_type.startsWith("image/")
      ? h("figure", { class: "attachment" }, h("img", { src: url, alt: "市民上传的照片", class: "photo" }),
          h("figcaption", {}, `照片 · ${Math.ceil(f.size / 1024)} KB`))
      : h("p", {}, h("a", { href: url, download: `${c.number}-${f.id}.pdf` }, `附件 ${f.id}（PDF）`)));
  }
}

// 重复诉求并单 (ticketing/repeats.py): the desk sees the flag and hands the case to the back
// office, which merges it into the open case it repeats.
const REPEAT_GROUND = { same_caller: "同一来电号码", same_place: "同一地点" };
const repeatText = (r) => `${r.number}（${REPEAT_GROUND[r.ground] || r.ground}）`;
function repeatsOf(c, show) {
  if (!["new", "pending_back_office"].includes(c.status)) return;
  get(`/cases/${encodeURIComponent(c.number)}/repeats`).then((reps) => { if (reps.length) show(reps); }).catch(() => {});
}
function repeatFlag(c) {
  const slot = h("div", { class: "repeat-slot" });
  repeatsOf(c, (reps) => slot.replaceChildren(h("p", { class: "notice found repeat-flag" },
    `可能是重复诉求：${reps.map(repeatText).join("、")}。可转后台并单。`)));
  return slot;
}
function mergeForm(c) {
  const slot = h("div", { class: "repeat-slot" });
  repeatsOf(c, (reps) => slot.replaceChildren(actionForm({ title: "并单（重复诉求）", submit: "并单", cls: "merge",
    fields: [{ name: "into", label: "并入", type: "select", options: Object.fromEntries(reps.map((r) => [r.number, repeatText(r)])) }],
    onSubmit: async (v) => {
      await post(`/cases/${c.number}/merge`, { into: v.into, expected_version: c.version });
      setTimeout(loadBack, 0);
      return `已并入${v.into}`;
    } })));
  return slot;
}

// A server-sent-event stream read with fetch() (it needs the Authorization header, which
// EventSource cannot send): each message's JSON to onEvent, until the stream ends or drops. A bad
// message is skipped; keep-alive comments carry no data.
async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
        if (!data) continue;
        let message;
        try { message = JSON.parse(data); } catch { continue; }
        onEvent(message);
      }
    }
  } catch { /* dropped: the caller reconnects */ }
}

// Screen-pop (issue 4): the operator's own event stream. It needs the Authorization header, so it
// is read with fetch() streaming, not EventSource. Without telephony the API says 503 and the
// page works on without it.
async function phoneStream() {
  const status = $("#phone-status");
  let response;
  try {
    response = await fetch(`${API}/operators/me/events`, {
      headers: { Authorization: `Bearer ${store.getItem("token")}`, Accept: "text/event-stream" } });
  } catch {
    status.textContent = "电话系统连接中断，10秒后重试……";
    setTimeout(phoneStream, 10000);
    return;
  }
  if (!response.ok) {
    let body = null;
    try { body = await response.json(); } catch { body = null; }
    if (response.status === 503) status.textContent = "电话系统未连接（本服务未接入Asterisk）：来电弹屏与签入队列暂不可用，其余功能正常。";
    else if (response.status === 403) status.textContent = "您的账号未配置坐席分机，来电弹屏不可用。";
    else status.textContent = explain(new ApiError(response.status, body && body.error, body && body.detail));
    return;
  }
  status.textContent = "电话系统已连接，等待来电。";
  await readEvents(response, onPhoneEvent);
  status.textContent = "电话系统连接中断，10秒后重试……";
  setTimeout(phoneStream, 10000);
}

function queueText(member) {
  if (!member) return "未签入队列";
  const state = { free: "空闲", busy: "通话中", paused: "小休", unavailable: "不可用" }[member.state] || member.state || "";
  const left = member.wrap_up_until ? Math.max(0, Math.round(member.wrap_up_until - Date.now() / 1000)) : null;
  const wrapUp = left === null ? "" : `，${left} 秒后自动就绪，可点“结束小休”提前接听`;
  return `已签入队列：${state}${member.paused ? `（${label("pause", member.paused_reason) || ""}${wrapUp}）` : ""}`;
}

function onPhoneEvent(ev) {
  window.dispatchEvent(new CustomEvent("phone-event", { detail: ev }));  // the call panel (callpanel.js)
  const status = $("#phone-status");
  if (ev.type === "hello") status.textContent = `电话系统已连接 · 分机 ${ev.extension} · ${queueText(ev.queue && ev.queue.member)}`;
  else if (ev.type === "member") status.textContent = queueText(ev.member);
  else if (ev.type === "link") status.textContent = ev.connected ? "电话系统已连接。" : "电话系统断开，正在重连……";
  else if (ev.type === "call" && ev.event === "hangup") $("#screen-pop").prepend(h("p", { class: "meta" }, "通话已结束。"));
  else if (ev.type === "screen_pop") showScreenPop(ev);
}

function showScreenPop(ev) {
  const caseItem = (c) => h("li", {}, h("button", { type: "button", class: "link", onclick: () => openDeskCase(c.number) }, c.number),
    ` ${label("kind", c.kind)} · ${label("caseStatus", c.status)} · ${c.title}`, c.deadline_at ? ` · 时限 ${fmt(c.deadline_at)}` : "");
  const pop = h("div", { class: "pop" },
    h("h3", {}, ev.reason === "missed_call_callback" ? "漏接回拨：" : "来电：", h("span", { class: "caller" }, ev.caller_number || "未显示号码")),
    ev.missed_call ? h("p", { class: "meta" }, `该号码排队未接通后挂断 ${ev.missed_call.times || 1} 次` +
      (ev.missed_call.last_at ? `，最近一次 ${fmt(ev.missed_call.last_at)}` : "") +
      (ev.missed_call.longest_wait_s != null ? `，最长等待 ${Math.round(ev.missed_call.longest_wait_s)} 秒` : "") +
      "；接听后系统将呼叫该市民。") : null,
    ev.flow_path && ev.flow_path.length ? h("p", { class: "meta" }, `语音导航：${ev.flow_path.join(" → ")}`) : null,
    ev.case_owner === "other" ? h("p", { class: "meta" }, "该来电的诉求件已有首问话务员。") : null,
    h("p", {}, `未办结诉求件 ${ev.open_cases.length} 件`), h("ul", {}, ev.open_cases.map(caseItem)),
    ev.recent_cases && ev.recent_cases.length ? [h("p", {}, "近期诉求件"), h("ul", {}, ev.recent_cases.map(caseItem))] : null,
    h("button", { type: "button", class: "secondary", onclick: () => {
      const f = $("#case-form").elements;
      f.citizen_phone.value = ev.caller_number || "";
      f.title.focus();
    } }, "以此来电新建诉求件"));
  $("#screen-pop").replaceChildren(pop);
  const first = ev.open_cases.find((c) => !c.confidential);  // the voice menu's case: its category's entries
  if (first) get(`/cases/${encodeURIComponent(first.number)}`).then((c) => c.category_code && searchKnowledge(null, c.category_code)).catch(() => {});
  if (ev.case_owner === "you") loadMyCases();  // R4.1: the voice menu's case is now this operator's
}

function initQueueButtons() {
  const box = $("#phone");
  const error = $(".error", box);
  for (const b of $$("[data-queue]", box)) {
    b.addEventListener("click", async () => {
      clearError(error);
      const action = b.dataset.queue;
      try {
        const body = action === "pause" ? { reason: $('[name="pause-reason"]', box).value } : {};
        const r = await post(`/operators/me/queue/${action}`, body);
        $("#phone-status").textContent = r && r.member !== undefined ? queueText(r.member) : `已${b.textContent}`;
      } catch (err) { showError(error, err); }
    });
  }
}

// 漏接回拨 (ticketing/missed_calls.py): callers who gave up in the queue, until reached.
async function loadMissedCalls() {
  const box = $("#missed-calls");
  const error = $(".error", box);
  clearError(error);
  const record = (m, reached) => async () => {
    try {
      await post(`/missed-calls/${encodeURIComponent(m.number)}/callback`, { reached });
      loadMissedCalls();
    } catch (err) { showError(error, err); }
  };
  try {
    const rows = await get("/missed-calls");
    $("tbody", box).replaceChildren(...rows.map((m) => h("tr", { dataset: { number: m.number } },
      h("td", {}, m.number), h("td", {}, String(m.times)), h("td", {}, fmt(m.last_at)),
      h("td", {}, `${Math.round(m.longest_wait_s)} 秒`), h("td", {}, String(m.tries)),
      // the scheduler is calling this number back (callback/missed.py): not by hand as well
      m.automatic ? h("td", { class: "meta automatic" }, m.automatic === "scheduled" ? "等待系统回拨" : "系统回拨中") :
      h("td", {}, h("button", { type: "button", class: "reached", onclick: record(m, true) }, "已回拨"), " ",
        h("button", { type: "button", class: "secondary unreached", onclick: record(m, false) }, "未接通")))));
    if (!rows.length) $("tbody", box).replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "empty" }, "暂无待回拨的漏接来电。")));
  } catch (err) { showError(error, err); }
}

// R4.1, R2.2: cases from the web (and other channels with no call) until an operator takes one.
async function loadWaitingCases() {
  const box = $("#waiting-cases");
  const error = $(".error", box);
  clearError(error);
  const take = (c) => async () => {
    try {
      await post(`/cases/${encodeURIComponent(c.number)}/take`);
      loadWaitingCases();
      loadMyCases();
      openDeskCase(c.number, "已领取");
    } catch (err) { showError(error, err); }
  };
  try {
    const rows = await get("/console/waiting");
    $("tbody", box).replaceChildren(...rows.map((c) => h("tr", { dataset: { number: c.number } },
      h("td", {}, c.number), h("td", {}, label("channel", c.channel)), h("td", {}, label("kind", c.kind)),
      h("td", {}, c.title), h("td", {}, fmt(c.accepted_at)),
      h("td", {}, h("button", { type: "button", class: "take", onclick: take(c) }, "领取")))));
    if (!rows.length) $("tbody", box).replaceChildren(h("tr", {}, h("td", { colspan: 6, class: "empty" }, "暂无待领取的来件。")));
    // faxes of which no page arrived (ticketing/fax.py): nothing to take, the sender is called back
    const failed = await get("/console/failed-faxes");
    $(".failed-faxes", box).replaceChildren(...failed.map((f) => h("li", {},
      `${fmt(f.at)} 来自 ${f.caller_number || "未显示号码"} 的传真未收到（${f.reason || ""}），请回电请对方重发。`)));
  } catch (err) { showError(error, err); }
}

async function initDesk(me) {
  desk.me = me;
  const form = $("#case-form");
  form.elements.reject_reason.replaceChildren(...Object.entries(L.reject).map(([v, t]) => h("option", { value: v }, t)));
  form.elements.kind.addEventListener("change", fillCategories);
  form.elements.category_code.addEventListener("change", onCategory);
  $$('[name="handling"]', form).forEach((r) => r.addEventListener("change", onHandling));
  form.addEventListener("submit", submitCase);
  $("#clear-form").addEventListener("click", () => { resetCaseForm(); $("#case-result").hidden = true; clearError($(".error", form)); });
  $("#kb-form").addEventListener("submit", searchKnowledge);
  let typing = 0;
  $("#kb-form").elements.q.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(searchKnowledge, 250); });
  $(".refresh", $("#my-cases")).addEventListener("click", loadMyCases);
  initQueueButtons();
  try {
    desk.categories = CATEGORIES;
    desk.units = await get("/units");
  } catch (err) { showError($(".error", form), err); }
  fillCategories();
  onHandling();
  $(".refresh", $("#missed-calls")).addEventListener("click", loadMissedCalls);
  $(".refresh", $("#waiting-cases")).addEventListener("click", loadWaitingCases);
  loadWaitingCases();
  loadMyCases();
  loadMissedCalls();
  setInterval(() => { if (!document.hidden) { loadWaitingCases(); loadMyCases(); loadMissedCalls(); } }, 60000);  // only the tables: forms keep their input
  phoneStream();
}

// ---- member unit -------------------------------------------------------------------------
const unit = { open: null };

async function loadInbox() {
  const box = $("#inbox");
  const error = $(".error", box);
  clearError(error);
  try {
    const [rows, done] = await Promise.all([get("/console/work-orders?scope=active"), get("/console/work-orders?scope=done&limit=50")]);
    $("tbody", box).replaceChildren(...rows.map(({ work_order: wo, case: c, notify_mark, report_mark }) =>
      h("tr", { dataset: { wo: wo.id, number: c.number }, class: [notify_mark, report_mark].includes("overdue") ? "overdue" : "" },
        h("td", {}, `#${wo.id}`), h("td", {}, c.number), h("td", {}, label("kind", c.kind)), h("td", {}, c.title),
        h("td", {}, `${label("mode", wo.mode)}${wo.role !== "sole" ? " · " + label("woRole", wo.role) : ""}`),
        h("td", { class: "status" }, label("woStatus", wo.status), wo.pending_extension_id ? h("span", { class: "mark soon" }, "延期待批") : null,
          approvalBadge(wo)),
        h("td", { class: "notify-due" }, due(wo.notify_due_at, notify_mark, wo, "notify_due_at")),
        h("td", { class: "report-due" }, due(wo.report_due_at, report_mark, wo, "report_due_at")),
        h("td", {}, wo.urge_count ? h("span", { class: "mark overdue" }, `催办${wo.urge_count}次`) : "—"),
        h("td", {}, h("button", { type: "button", class: "secondary", onclick: () => openOrder(wo.id) }, "办理")))));
    $(".empty", box).hidden = rows.length > 0;
    $("#done tbody").replaceChildren(...done.map(({ work_order: wo, case: c, notify_mark, report_mark }) =>
      h("tr", { dataset: { wo: wo.id, number: c.number } }, h("td", {}, `#${wo.id}`), h("td", {}, c.number), h("td", {}, c.title),
        h("td", { class: "status" }, label("woStatus", wo.status)),
        h("td", {}, due(wo.notified_at, notify_mark)), h("td", {}, due(wo.reported_at, report_mark)))));
  } catch (err) { showError(error, err); }
}

async function openOrder(id, flash = "") {
  const panel = $("#order-detail");
  const error = $(".error", $("#inbox"));
  clearError(error);
  let wo, c;
  try {
    wo = await get(`/work-orders/${id}`);
    c = await get(`/cases/${encodeURIComponent(wo.case_number)}`);
  } catch (err) { showError(error, err); return; }
  unit.open = id;
  // after a change the panel is drawn again from the API, with what was done said on top
  const after = async (promise, msg) => {
    const updated = await promise;
    const text = msg + (updated && updated.status ? `（${label("woStatus", updated.status)}）` : "");
    loadInbox();
    setTimeout(() => openOrder(id, text), 0);
    return text;
  };
  const forms = [];
  const s = wo.status;
  if (s === "dispatched") {
    forms.push(actionForm({ title: "签收（R8.1）", submit: "签收", cls: "receive",
      onSubmit: () => after(post(`/work-orders/${id}/receive`), "已签收") }));
  }
  if (s === "dispatched" || s === "received") {
    forms.push(actionForm({ title: "告知诉求人（R8.2：2个工作日内）", cls: "notify", submit: "已告知", fields: [
      { name: "channel", label: "告知方式", type: "select", options: L.notifyChannel },
      { name: "note", label: "说明", type: "text" }],
      onSubmit: (v) => after(post(`/work-orders/${id}/notify`, { channel: v.channel, note: v.note }), "已记录告知") }));
  }
  // Article 5 (二) 6: in a unit with approval a clerk's report waits for the leader, or comes back with a note.
  const ap = wo.approval;
  const waiting = s === "notified" && ap && ap.state === "pending";
  if (waiting) forms.push(h("p", { class: "meta approval-pending" }, `报结已于 ${fmt(ap.submitted_at)} 呈批，待本单位领导审批（报结时限照常计算）。`));
  if (s === "notified" && ap && ap.state === "sent_back") {
    forms.push(h("p", { class: "error approval-note" }, `领导退回修改（${fmt(ap.decided_at)}）：${ap.note || ""}`));
  }
  if (s === "notified" && !waiting) {
    const draft = ap && ap.state === "sent_back" ? ap : null;
    forms.push(actionForm({ title: "报结（R8.4：告知时间、答复、满意度）", cls: "report", submit: "报结", fields: [
      { name: "answer", label: "答复内容", type: "textarea", rows: 4, required: true, value: draft ? draft.answer : null },
      { name: "satisfaction", label: "诉求人满意度", type: "select", value: draft ? draft.satisfaction || "" : null,
        options: { "": "— 未询问 —", satisfied: "满意", basically_satisfied: "基本满意", unsatisfied: "不满意" } }],
      onSubmit: (v) => after(post(`/work-orders/${id}/report`, {
        answer: v.answer, satisfaction: v.satisfaction || null, expected_version: c.version }), "已报结") }));
  }
  if (["dispatched", "received", "notified"].includes(s)) {
    forms.push(actionForm({ title: "申请延期（R8.5：须引用依据）", cls: "extension", submit: "提交延期申请", fields: [
      { name: "legal_basis", label: "依据（法规条款）", type: "textarea", required: true },
      { name: "extra_working_days", label: "延长工作日数", type: "number", value: 5, min: 1, max: 60, required: true }],
      onSubmit: async (v) => {
        const ext = await post(`/work-orders/${id}/extensions`, { legal_basis: v.legal_basis, extra_working_days: v.extra_working_days });
        loadInbox();
        return `延期申请已提交，待中心审批（原时限 ${fmt(ext.old_due_at)}）`;
      } }));
    forms.push(actionForm({ title: "退回（R8.6：不属本单位职责，见退回期限）", cls: "return", submit: "申请退回", fields: [
      { name: "reason", label: "退回理由", type: "textarea", required: true }],
      onSubmit: (v) => after(post(`/work-orders/${id}/return`, { reason: v.reason }), "已申请退回") }));
  }
  if (s === "return_requested") forms.push(h("p", { class: "meta" }, "退回申请待中心审核。"));
  panel.dataset.version = `${wo.status}:${c.version}`;
  panel.replaceChildren(...[
    h("div", { class: "detail-head" }, h("h2", {}, `工单 #${wo.id} · ${label("woStatus", wo.status)}`),
      h("button", { type: "button", class: "secondary", onclick: () => { panel.hidden = true; unit.open = null; } }, "关闭")),
    flash ? h("p", { class: "done flash" }, flash) : null,
    caseCard(c),
    wo.instructions ? h("p", {}, "交办意见：", wo.instructions) : null,
    h("p", { class: "meta" }, `派单 ${fmt(wo.dispatched_at)} · 签收 ${fmt(wo.received_at)} · 告知 ${fmt(wo.notified_at)}`,
      wo.notify_channel ? `（${label("notifyChannel", wo.notify_channel)}）` : "", ` · 退回期限 ${fmt(wo.return_due_at)}`),
    h("div", { class: "forms" }, forms)].filter(Boolean));
  panel.hidden = false;
  panel.scrollIntoView({ block: "nearest" });
}

// ---- inquiries (R6.1): supervision's 问责/说明 tasks for this unit -------------------------------
const INQUIRY_WORDS = {
  reason: { overdue: "超期办理", untrue_report: "报结不实", staff_conduct: "工作人员作风" },
  status: { asked: "待说明", explained: "已说明，待监察结论", closed: "已办结" },
  decision: { none: "不予问责", criticism: "批评教育", notice: "通报批评", referral: "移送纪检监察" },
};

function explainForm(inq) {
  return actionForm({ title: `说明 问责调查#${inq.id}（时限 ${fmt(inq.explanation_due_at)}）`, cls: "explain", submit: "提交说明",
    fields: [{ name: "explanation", label: "情况说明", type: "textarea", rows: 4, required: true }],
    onSubmit: async (v) => {
      await post(`/inquiries/${inq.id}/explanation`, { explanation: v.explanation });
      setTimeout(loadInquiries, 0);
      return "已提交说明";
    } });
}

async function loadInquiries() {
  const box = $("#inquiries");
  if (!box) return;
  const error = $(".error", box);
  clearError(error);
  try {
    const rows = await get("/inquiries?limit=100");
    $("tbody", box).replaceChildren(...rows.map((inq) =>
      h("tr", { dataset: { inquiry: inq.id }, class: inq.overdue ? "overdue" : "" },
        h("td", {}, `#${inq.id}`), h("td", {}, inq.case_number ? `${inq.case_number} ${inq.case_title || ""}` : "（单位）"),
        h("td", {}, INQUIRY_WORDS.reason[inq.reason] || inq.reason), h("td", {}, inq.description),
        h("td", { class: "status" }, INQUIRY_WORDS.status[inq.status] || inq.status),
        h("td", { class: "explanation-due" }, due(inq.explanation_due_at,
          inq.explained_at ? (inq.explanation_met ? "met" : "late") : (inq.overdue ? "overdue" : null), inq, "explanation_due_at")),
        h("td", {}, inq.urge_count ? h("span", { class: "mark overdue" }, `催办${inq.urge_count}次`) : "—"),
        h("td", {}, inq.decision ? `${INQUIRY_WORDS.decision[inq.decision]}：${inq.findings || ""}` : "—"))));
    $(".empty", box).hidden = rows.length > 0;
    // a form being typed into stays as it is
    const forms = $(".forms", box);
    const kept = new Map($$("form.explain", forms).filter((f) => f.dataset.dirty).map((f) => [f.dataset.inquiry, f]));
    forms.replaceChildren(...rows.filter((inq) => inq.status === "asked").map((inq) => {
      const f = kept.get(String(inq.id)) || explainForm(inq);
      f.dataset.inquiry = String(inq.id);
      return f;
    }));
  } catch (err) { showError(error, err); }
}

function initInquiries() {
  const box = $("#inquiries");
  if (!box) return;
  $(".refresh", box).addEventListener("click", loadInquiries);
  loadInquiries();
  setInterval(() => { if (!document.hidden) loadInquiries(); }, 60000);
}

function approvalBadge(wo) {
  const ap = wo.status === "notified" ? wo.approval : null;
  if (!ap || ap.state === "approved") return null;
  return h("span", { class: `mark ${ap.state === "pending" ? "soon" : "overdue"}` }, ap.state === "pending" ? "待审批" : "被退回");
}

// Article 5 (二) 6 (呈批, 审结): the leader's list of reports waiting for approval, most urgent first.
async function loadApprovals() {
  const box = $("#approvals");
  const error = $(".error", box);
  clearError(error);
  try {
    const rows = await get("/report-approvals");
    // a note being typed is kept until it is sent (as actionForm's other lists do)
    const kept = new Map($$("tbody tr", box).filter((tr) => $("form[data-dirty]", tr)).map((tr) => [tr.dataset.id, tr]));
    $("tbody", box).replaceChildren(...rows.map((a) => kept.get(String(a.id)) || h("tr", { dataset: { id: a.id, wo: a.work_order_id }, class: a.overdue ? "overdue" : "" },
      h("td", {}, `#${a.work_order_id}`), h("td", {}, a.case_number), h("td", {}, a.submitted_by || "—"),
      h("td", {}, fmt(a.submitted_at)), h("td", { class: "report-due" }, due(a.report_due_at, a.overdue ? "overdue" : null)),
      h("td", { class: "answer" }, a.answer, a.satisfaction ? `（${label("satisfaction", a.satisfaction)}）` : ""),
      h("td", {}, actionForm({ cls: "decide", fields: [{ name: "note", label: "退回意见", type: "text" }],
        buttons: [{ label: "批准报结", value: "approve" }, { label: "退回修改", value: "send_back", cls: "secondary" }],
        onSubmit: async (v) => {
          if (v._button === "send_back") {
            if (!v.note) throw new ApiError(422, "invalid_input", "请填写「退回意见」");
            await post(`/work-orders/${a.work_order_id}/report/send-back`, { note: v.note, expected_version: a.case_version });
          } else {
            await post(`/work-orders/${a.work_order_id}/report/approve`, { expected_version: a.case_version });
          }
          setTimeout(() => { loadApprovals(); loadInbox(); }, 0);
          return v._button === "send_back" ? "已退回经办人" : "已批准，报结已送中心";
        } })))));
    $(".empty", box).hidden = rows.length > 0;
  } catch (err) { showError(error, err); }
}

// ---- the unit's own assessment (考核, R5.2): this month's figures and band; no rank, no other unit
async function loadAssessment() {
  const box = $("#assessment");
  if (!box) return;
  const error = $(".error", box);
  clearError(error);
  try {
    const u = (await get("/assessment")).units[0];
    const pct = (r) => (r === null ? "—" : `${(r * 100).toFixed(1)}%`);
    const score = !u ? "本单位的工单为纪检监察件，不参加考核（R7.3c）" : u.score === null ? "本月暂无应计指标，不评分"
      : `得分 ${u.score.toFixed(2)}，等次 ${u.band}（${u.band_label}）`;
    const inq = u ? `；问责调查：本月未结 ${u.inquiries.open}，已结 ${u.inquiries.decided}` +
      (u.inquiries.deduction ? `，扣 ${u.inquiries.deduction} 分` : "") : "";
    $(".summary", box).textContent = score + inq;
    $("tbody", box).replaceChildren(...Object.entries(u ? u.figures : {}).map(([name, f]) =>
      h("tr", { dataset: { figure: name } }, h("td", {}, f.label), h("td", {}, `${f.numerator}/${f.denominator}`),
        h("td", {}, pct(f.rate)), h("td", {}, String(f.weight)), h("td", {}, f.points === null ? "不计" : f.points.toFixed(2)))));
  } catch (err) { showError(error, err); }
}

async function initUnit(me) {
  $(".refresh", $("#inbox")).addEventListener("click", loadInbox);
  $(".refresh", $("#assessment")).addEventListener("click", loadAssessment);
  loadAssessment();
  exportPanel();
  initInquiries();
  const leader = me && me.unit_leader;
  if (leader) {
    $("#approvals").hidden = false;
    $(".refresh", $("#approvals")).addEventListener("click", () => { loadApprovals(); loadInbox(); });
    await loadApprovals();
  }
  await Promise.all([loadInbox(), ...pageSections.unit.map((init) => init(me))]);
  setInterval(() => {  // R8.1: new orders show up by themselves
    if (document.hidden) return;
    loadInbox();
    if (leader) loadApprovals();
  }, 60000);
}

// ---- back office / supervisor --------------------------------------------------------------
const back = { units: [], categories: [], canAct: false };

function dispatchForm(c, title) {
  const cat = back.categories.find((x) => x.code === c.category_code);
  const routed = new Set(cat ? cat.units.map((u) => u.code) : []);
  const select = h("select", { name: "units", multiple: true, size: 6 },
    back.units.filter((u) => u.joined).map((u) => h("option", { value: u.code, selected: routed.has(u.code) }, u.name)));
  const lead = h("select", { name: "lead" }, h("option", { value: "" }, "（不指定：各单位分别答复）"),
    back.units.filter((u) => u.joined).map((u) => h("option", { value: u.code, selected: cat && cat.lead === u.code }, u.name)));
  const mode = h("select", { name: "mode" }, ["work_order", "three_way", "transfer"].map((m) =>
    h("option", { value: m, selected: cat && cat.mode === m }, L.mode[m])));
  const form = actionForm({ fields: [{ name: "instructions", label: "交办意见", type: "textarea" }], submit: "交办",
    onSubmit: async (v) => {
      const units = [...select.selectedOptions].map((o) => o.value);
      if (!units.length) throw new ApiError(422, "", "请至少选择一个承办单位");
      const updated = await post(`/cases/${c.number}/dispatch`, { units, lead: lead.value || null, mode: mode.value,
        instructions: v.instructions, expected_version: c.version });
      setTimeout(loadBack, 0);
      return `已交办（${label("caseStatus", updated.status)}）`;
    } });
  // a long multi-select hides what is chosen: say it in words under it
  const chosen = h("p", { class: "meta chosen" });
  const sayChosen = () => {
    chosen.textContent = `已选：${[...select.selectedOptions].map((o) => o.textContent).join("、") || "（无）"}`;
  };
  select.addEventListener("change", sayChosen);
  sayChosen();
  form.prepend(h("h4", {}, title), h("label", {}, "承办单位（可多选，按住Ctrl）", select), chosen,
    h("label", {}, "牵头单位（R7.3h）", lead), h("label", {}, "方式", mode));
  return form;
}

function item(cardEl, forms) {
  return h("div", { class: "item" }, cardEl, back.canAct ? h("div", { class: "forms" }, forms) : null);
}

function woCard(wo, extra) {
  return h("div", { class: "case-card", dataset: { number: wo.case_number, wo: wo.id } },
    h("h3", {}, `工单 #${wo.id} · 诉求件 ${wo.case_number} · ${wo.unit_name}`),
    h("p", { class: "meta" }, `${label("mode", wo.mode)} · `, h("span", { class: "status" }, label("woStatus", wo.status)),
      " · 告知时限 ", due(wo.notify_due_at, wo.notified_at ? (wo.notify_met ? "met" : "late") : null, wo, "notify_due_at"),
      " · 报结时限 ", due(wo.report_due_at, wo.overdue ? "overdue" : null, wo, "report_due_at"), wo.urge_count ? ` · 已催办${wo.urge_count}次` : ""),
    wo.instructions ? h("p", {}, "交办意见：", wo.instructions) : null, extra || null);
}

// An item whose form the clerk is filling in (typed into, or focused) is being worked on.
const editing = (el) => $$("form.action", el).some((f) => f.dataset.dirty || f.contains(document.activeElement));

// Draws a list afresh from the API, except the items being worked on: any action reloads every
// list, and a reload arriving while a clerk types would otherwise throw the typed text away. A
// kept item acts on the version it showed; if the row moved on meanwhile, the API says 409.
async function fill(sectionId, loader, render, key = (row) => row.number ?? row.id) {
  const box = $(`#${sectionId}`);
  const error = $(".error", box);
  clearError(error);
  try {
    const rows = await loader();
    $(".count", box).textContent = `（${rows.length}）`;
    const items = await Promise.all(rows.map(render));
    // read now, not before the requests: typing goes on while they are under way
    const kept = new Map($$(".items > .item[data-key]", box).filter(editing).map((el) => [el.dataset.key, el]));
    rows.forEach((row, i) => { items[i].dataset.key = String(key(row)); });
    $(".items", box).replaceChildren(...items.map((el) => kept.get(el.dataset.key) || el));
    if (!rows.length) $(".items", box).replaceChildren(h("p", { class: "empty" }, "暂无。"));
    box.dataset.loads = String(Number(box.dataset.loads || 0) + 1);  // pages (and tests) can tell a reload landed
  } catch (err) { showError(error, err); }
}

const decision = (path, done) => actionForm({ fields: [{ name: "note", label: "意见", type: "text" }],
  buttons: [{ label: "批准", value: "yes" }, { label: "不批准", value: "no", cls: "secondary" }],
  onSubmit: async (v) => {
    await post(path, { approve: v._button === "yes", note: v.note });
    setTimeout(loadBack, 0);
    return v._button === "yes" ? `已批准${done}` : `已驳回${done}`;
  } });

const urgeForm = (wo) => actionForm({ fields: [{ name: "note", label: "催办意见", type: "text" }], submit: "催办", cls: "urge",
  onSubmit: async (v) => {
    const n = await post(`/work-orders/${wo.id}/urge`, { note: v.note });
    setTimeout(loadBack, 0);
    return `已催办，通知 ${n.recipient || wo.unit_name}`;
  } });

function loadBack() {
  fill("pending-dispatch", () => get("/cases?status=pending_back_office&limit=100"),
    (c) => item(caseCard(c), [dispatchForm(c, "派单（R7.3：3日内）"), mergeForm(c)]));
  fill("unsatisfied", () => get("/cases?status=unsatisfied&limit=100"), (c) => item(caseCard(c), [
    actionForm({ title: "暂结（R7.5）", fields: [{ name: "note", label: "说明", type: "textarea" }], submit: "暂结",
      onSubmit: async (v) => {
        await post(`/cases/${c.number}/close`, { provisional: true, note: v.note, expected_version: c.version });
        setTimeout(loadBack, 0);
        return "已暂结";
      } }),
    dispatchForm(c, "重新交办（R7.5）")]));
  fill("extensions", () => get("/extensions"), async (e) => {
    let wo = null;
    try { wo = await get(`/work-orders/${e.work_order_id}`); } catch { wo = null; }
    const info = h("p", {}, `申请延长 ${e.extra_working_days} 个工作日 · 依据：${e.legal_basis} · 申请时间 ${fmt(e.requested_at)} · 原时限 ${fmt(e.old_due_at)}`);
    return item(wo ? woCard(wo, info) : h("div", { class: "case-card" }, `工单 #${e.work_order_id}`, info),
      [decision(`/extensions/${e.id}/decision`, "延期")]);
  });
  fill("returns", () => get("/work-orders?status=return_requested&limit=100"), (wo) =>
    item(woCard(wo, h("p", {}, "退回理由：", wo.return_reason || "")), [decision(`/work-orders/${wo.id}/return/decision`, "退回")]));
  fill("manual-callbacks", () => get("/cases?status=reported&callback_manual=true&limit=100"), (c) => item(caseCard(c), [
    actionForm({ title: "人工回访结果（R7.4）", fields: [
      { name: "satisfaction", label: "满意度", type: "select", options: SATISFACTION_ASK, required: true },
      { name: "note", label: "回访记录", type: "textarea" }],
      onSubmit: async (v) => {
        await post(`/cases/${c.number}/callback`, { satisfaction: v.satisfaction, note: v.note, expected_version: c.version });
        setTimeout(loadBack, 0);
        return "已记录回访";
      } })]));
  fill("overdue", () => get("/work-orders?due=overdue&limit=100"), (wo) => item(woCard(wo), [urgeForm(wo)]));
  fill("publishable", () => get("/console/publishable"), (c) => {
    // R7.6: the suggested texts have personal data replaced; the reviewer edits and publishes them,
    // and the API refuses text that still holds any.
    const form = actionForm({ title: "公开（R7.6：审核后公开，个人信息不得公开）", fields: [
      { name: "public_summary", label: "公开摘要", type: "textarea", rows: 3, required: true },
      { name: "public_answer", label: "公开答复", type: "textarea", rows: 3 }], submit: "公开",
      onSubmit: async (v) => {
        await post(`/cases/${c.number}/publish`, { public_summary: v.public_summary, public_answer: v.public_answer });
        setTimeout(loadBack, 0);
        return "已公开";
      } });
    form.classList.add("publish");
    get(`/cases/${c.number}/publication`).then((p) => {
      // what the reviewer already typed stays
      if (!form.elements.public_summary.value) form.elements.public_summary.value = p.summary;
      if (!form.elements.public_answer.value) form.elements.public_answer.value = p.answer;
      if (p.findings.length) {
        form.prepend(h("p", { class: "notice found" },
          `已自动隐去：${[...new Set(p.findings.map((f) => f.label))].join("、")}，请核对`));
      }
    }).catch(() => {});
    return item(caseCard(c), [form]);
  });
}

async function lookup(ev) {
  ev.preventDefault();
  const box = $("#lookup");
  const error = $(".error", box);
  clearError(error);
  const number = ev.target.elements.number.value.trim();
  if (!number) return;
  try {
    const c = await get(`/cases/${encodeURIComponent(number)}`);
    const forms = [];
    for (const wo of c.work_orders) {
      if (["dispatched", "received", "notified", "return_requested"].includes(wo.status)) {
        const f = urgeForm(wo);
        f.prepend(h("h4", {}, `催办 ${wo.unit_name}（R7.7）`));
        forms.push(f);
      }
    }
    if (["new", "pending_back_office", "dispatched", "unsatisfied", "reported"].includes(c.status)) {
      forms.push(dispatchForm(c, "交办 / 重新交办（R7.7）"));
    }
    $("#lookup-result").replaceChildren(item(caseCard(c), forms));
  } catch (err) { showError(error, err); $("#lookup-result").replaceChildren(); }
}

// T1: which years' holidays are known, the standing warning while next year's arrangement is due
// and not entered, and (admin) the form that enters it.
const YEAR_SOURCE = { official: "官方", override: "已录入", provisional: "暂定（法定节假日）" };
const lines = (text) => text.split(/[\s,，、]+/).map((t) => t.trim()).filter(Boolean);
async function calendarPanel(me) {
  let status;
  try { status = await get("/calendar"); } catch (err) { return; /* the work lists are not this endpoint's */ }
  const box = $("#calendar");
  const show = (st) => {
    $(".years", box).textContent = st.years.map((y) => `${y.year}年：${YEAR_SOURCE[y.source] || y.source}`).join("　");
    const old = $(".calendar-warning");
    if (old) old.remove();
    if (st.warning) $("main").prepend(h("p", { class: "notice calendar-warning", role: "status" }, st.warning));
  };
  show(status);
  box.hidden = false;
  if (me.role !== "admin") return;
  const next = status.years.find((y) => y.source === "provisional");
  $(".calendar-form", box).replaceChildren(actionForm({
    title: "录入国务院办公厅节假日安排（录入后暂定期限自动更正）",
    fields: [
      { name: "year", label: "年份", type: "number", required: true, value: next ? next.year : null, min: 2000, max: 2099 },
      { name: "holidays", label: "放假日期（每行一个日期或 起..止）", type: "textarea", rows: 4, required: true },
      { name: "workdays", label: "调休上班日（周六或周日）", type: "textarea", rows: 2 },
    ],
    submit: "录入",
    onSubmit: async (v) => {
      const result = await api("PUT", `/calendar/${v.year}`, { holidays: lines(v.holidays), workdays: lines(v.workdays) });
      show(result);
      return `已录入${v.year}年安排，更正暂定期限${result.moved.length}个`;
    },
  }));
}

// Sections of a page with a script of their own (hot.js, deliveries.js) register here.
const pageSections = { back: [], unit: [] };
const onPage = (page, init) => { pageSections[page].push(init); };
const onBack = (init) => onPage("back", init);

async function initBack(me) {
  back.canAct = me.role === "back_office";
  if (!back.canAct) {
    $("main").prepend(h("p", { class: "notice" }, `${label("role", me.role)}角色：本页只读，办理操作由后台人员进行。`));
  }
  $("#lookup-form").addEventListener("submit", lookup);
  $(".refresh-all").addEventListener("click", loadBack);
  calendarPanel(me);
  try {
    back.categories = CATEGORIES;
    back.units = await get("/units");
  } catch (err) { showError($(".error", $("#lookup")), err); }
  exportPanel(back.units);
  loadBack();
  await Promise.all(pageSections.back.map((init) => init(me)));
}

// ---- exports (issue 12 item 7) ----------------------------------------------------------------
// A list's CSV says its row count first (X-Export-Rows) and then streams: the count of records
// received so far (newlines outside quotes) is the progress shown.
async function runExport(box, path) {
  const progress = $(".progress", box), error = $(".error", box);
  clearError(error);
  progress.textContent = "导出中…";
  let r;
  try {
    r = await fetch(API + "/exports/" + path, { headers: { Authorization: `Bearer ${store.getItem("token")}` } });
  } catch { progress.textContent = ""; showError(error, new ApiError(0, "network", "请检查网络后重试")); return; }
  if (!r.ok) {
    const data = await r.json().catch(() => null);
    if (r.status === 401) expired();
    progress.textContent = "";
    showError(error, new ApiError(r.status, data && data.error, data && data.detail));
    return;
  }
  const total = r.headers.get("X-Export-Rows");
  const reader = r.body.getReader();
  const chunks = [];
  let rows = -1, quoted = false;  // -1: the header line is no row
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    if (path.includes(".csv")) {
      for (const b of value) { if (b === 34) quoted = !quoted; else if (b === 10 && !quoted) rows += 1; }
      progress.textContent = `已导出 ${rows}${total ? " / " + total : ""} 行`;
    }
  }
  const name = (/filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "") || [])[1] || "export";
  const url = URL.createObjectURL(new Blob(chunks, { type: r.headers.get("Content-Type") || "" }));
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  progress.textContent = `已下载 ${name}` + (rows >= 0 ? `（${rows} 行）` : "");
}

function exportPanel(units = []) {
  const box = $("#exports");
  if (!box) return;
  const form = $(".export-form", box);
  const now = new Date();
  form.month.value = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, "0")}`;
  if (form.unit) form.unit.append(...units.map((u) => h("option", { value: u.code }, u.name)));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const what = ev.submitter ? ev.submitter.value : "monthly.xlsx";
    const q = new URLSearchParams();
    if (what.startsWith("monthly") || what.startsWith("calls")) q.set("month", form.month.value);
    if (what.startsWith("monthly") && form.unit && form.unit.value) q.set("unit", form.unit.value);
    runExport(box, `${what}${q.toString() ? "?" + q : ""}`);
  });
}

// ---- boot --------------------------------------------------------------------------------
const PAGE = document.body.dataset.page;
const INIT = { desk: initDesk, unit: initUnit, back: initBack };
if (PAGE === "login") {
  initLogin();
} else if (INIT[PAGE]) {
  // data-inited: the page's handlers are in place (tests wait for it before they act)
  guard(PAGE).then(async (me) => {
    if (!me) return;
    await INIT[PAGE](me);
    // pages' own modules (phone.js) start once the login is checked and the page is in place
    document.dispatchEvent(new CustomEvent("console:ready", { detail: me }));
  }).then(() => { document.body.dataset.inited = "1"; }).catch((err) => {
    document.body.prepend(h("p", { class: "error" }, explain(err)));
  });
}
document.documentElement.dataset.ready = "1";
// What the pages with a script of their own (stats.js, knowledge.js) share with this one.
export { ApiError, CATEGORIES, L, ROLE_HOME, $, $$, actionForm, api, caseCard, categoryName, clearError, explain, fmt, get, guard,
  h, label, onBack, onPage, post, readEvents, showError };
