// The knowledge base's own page (R5.3, R7.2): a unit writes, revises and submits its entries and
// answers operators' flags; the back office reviews, publishes or returns them, urges entries past
// their review date and reads their use. The helpers and the login guard are console.js's.
import { $, CATEGORIES, categoryName, clearError, fmt, get, guard, h, post, api, showError } from "./console.js";

const STATE = { draft: "草稿", submitted: "待审核", published: "已发布", expired: "已过期", withdrawn: "已撤回",
                returned: "已退回", superseded: "已被替代" };
const kb = { me: null, editing: null };
const lines = (text) => text.split("\n").map((x) => x.trim()).filter(Boolean);
const isUnit = () => ["unit_staff", "discipline"].includes(kb.me.role);

function show(section, rows, render) {
  $("tbody", section) ? $("tbody", section).replaceChildren(...rows.map(render)) : $(".items", section).replaceChildren(...rows.map(render));
  const empty = $(".empty", section);
  if (empty) empty.hidden = rows.length > 0;
}

async function loadMine() {
  const box = $("#kb-mine");
  clearError($(".error", box));
  try {
    const rows = await get(`/units/${encodeURIComponent(kb.me.unit_code)}/knowledge`);
    show(box, rows, (e) => h("tr", { dataset: { entry: e.id } },
      h("td", {}, e.question), h("td", {}, STATE[e.state] || e.state, e.pending ? `（修订第${e.pending.number}版：${STATE[e.pending.state]}）` : ""),
      h("td", {}, e.version), h("td", { class: e.due_for_review ? "overdue" : "" }, fmt(e.review_due_at)),
      h("td", {}, e.open_flags ? `${e.open_flags} 条反映` : ""),
      h("td", {},
        h("button", { type: "button", class: "secondary", onclick: () => edit(e) }, "编辑"),
        (e.pending && ["draft", "returned"].includes(e.pending.state)) || e.state === "draft"
          ? h("button", { type: "button", onclick: () => act(box, `/knowledge/${e.id}/submit`) }, "提交审核") : null,
        ["published", "draft", "submitted"].includes(e.state)
          ? h("button", { type: "button", class: "secondary", onclick: () => act(box, `/knowledge/${e.id}/withdraw`, { note: "" }) }, "撤回") : null)));
  } catch (err) { showError($(".error", box), err); }
}

async function act(box, path, body = {}) {
  clearError($(".error", box));
  try { await post(path, body); await refresh(); } catch (err) { showError($(".error", box), err); }
}

function edit(entry) {
  kb.editing = entry;
  const f = $("#kb-entry").elements;
  const c = entry ? (entry.pending ? entry.pending.content : entry) : {};
  f.question.value = c.question || "";
  f.variants.value = (c.variants || []).join("\n");
  f.answer.value = c.answer || "";
  f.keywords.value = c.keywords || "";
  f.category_code.value = c.category_code || "";
  f.legal_basis.value = c.legal_basis || "";
  f.source_links.value = (c.source_links || []).join("\n");
  f.valid_until.value = c.valid_until ? c.valid_until.slice(0, 10) : "";
  f.review_interval_days.value = c.review_interval_days || 365;
  const returned = $("#kb-entry .returned");
  returned.hidden = !(entry && entry.pending && entry.pending.state === "returned");
  returned.textContent = returned.hidden ? "" : `审核退回：${entry.pending.note}`;
  $("#kb-editor .which").textContent = entry ? `#${entry.id} 第${entry.version}版（修订将在审核发布后生效）` : "新条目";
  $("#kb-editor").hidden = false;
  f.question.focus();
}

async function save(ev) {
  ev.preventDefault();
  const f = ev.target.elements;
  const error = $(".error", ev.target);
  clearError(error);
  const body = {
    question: f.question.value.trim(), variants: lines(f.variants.value), answer: f.answer.value.trim(),
    keywords: f.keywords.value.trim(), category_code: f.category_code.value || null, legal_basis: f.legal_basis.value.trim(),
    source_links: lines(f.source_links.value), review_interval_days: Number(f.review_interval_days.value || 365),
    valid_until: f.valid_until.value ? `${f.valid_until.value}T23:59:59+08:00` : null,
  };
  try {
    if (kb.editing) await api("PUT", `/knowledge/${kb.editing.id}`, body);
    else await post(`/units/${encodeURIComponent(kb.me.unit_code)}/knowledge`, body);
    $("#kb-editor").hidden = true;
    await refresh();
  } catch (err) { showError(error, err); }
}

async function loadFlags() {
  const box = $("#kb-flags");
  try {
    const rows = await get(`/units/${encodeURIComponent(kb.me.unit_code)}/knowledge-flags`);
    show(box, rows, (f) => {
      const input = h("input", { name: "resolution", placeholder: "处理情况", maxlength: "500" });
      return h("li", { dataset: { flag: f.id } }, h("b", {}, f.question), ` · ${f.reason === "wrong" ? "有误" : "已过时"}：${f.note}`,
        h("span", { class: "meta" }, ` ${fmt(f.flagged_at)}`), " ", input,
        h("button", { type: "button", onclick: () => act(box, `/knowledge-flags/${f.id}/resolve`, { resolution: input.value.trim() }) }, "已处理"));
    });
  } catch (err) { showError($(".error", box), err); }
}

function changedText(p) {
  return p.changed.map((k) => ({ question: "问题", variants: "其他问法", answer: "规范答案", keywords: "关键词",
    category_code: "分类", categories: "其他分类", legal_basis: "法律依据", source_links: "来源", valid_from: "生效",
    valid_until: "失效", review_interval_days: "复核周期" })[k] || k).join("、");
}

async function loadReview() {
  const box = $("#kb-review");
  clearError($(".error", box));
  try {
    const rows = await get("/knowledge/review-queue");
    show(box, rows, (e) => {
      const p = e.pending;
      const note = h("input", { name: "note", placeholder: "退回理由", maxlength: "500" });
      return h("div", { class: "item", dataset: { entry: e.id } },
        h("h3", {}, p.content.question), h("p", { class: "meta" },
          `${e.unit_name} · ${e.published_at ? `修订第${p.number}版（改动：${changedText(p)}）` : "新条目"} · 分类 ${categoryName(p.content.category_code)} · 提交 ${fmt(p.submitted_at)}`),
        h("p", { class: "answer" }, p.content.answer),
        p.content.legal_basis ? h("p", { class: "meta" }, `依据：${p.content.legal_basis}`) : null,
        h("button", { type: "button", class: "publish", onclick: () => act(box, `/knowledge/${e.id}/review`, { decision: "publish" }) }, "审核发布"),
        " ", note, h("button", { type: "button", class: "secondary", onclick: () => act(box, `/knowledge/${e.id}/review`, { decision: "return", note: note.value.trim() }) }, "退回"));
    });
  } catch (err) { showError($(".error", box), err); }
}

async function loadDue() {
  const box = $("#kb-due");
  try {
    const rows = await get("/knowledge/due");
    show(box, rows, (e) => h("li", { dataset: { entry: e.id } }, h("b", {}, e.question), ` · ${e.unit_name} · 复核日期 ${fmt(e.review_due_at)}`,
      kb.me.role === "back_office" ? h("button", { type: "button", class: "secondary", onclick: () => act(box, `/knowledge/${e.id}/urge`) }, "催办") : null));
  } catch (err) { showError($(".error", box), err); }
}

async function loadUsage() {
  const box = $("#kb-usage");
  try {
    const rows = await get("/knowledge/usage");
    show(box, rows, (u) => h("tr", {}, h("td", {}, u.question), h("td", {}, u.unit_code), h("td", {}, u.uses), h("td", {}, u.rated),
      h("td", {}, u.satisfaction_rate === null ? "—" : `${(u.satisfaction_rate * 100).toFixed(1)}%`)));
  } catch (err) { showError($(".error", box), err); }
}

async function refresh() {
  if (isUnit()) await Promise.all([loadMine(), loadFlags(), loadDue()]);
  else await Promise.all([loadReview(), loadDue(), loadUsage()]);
}

guard("knowledge").then((me) => {
  if (!me) return;
  kb.me = me;
  $("a.home").href = isUnit() ? "/app/unit" : "/app/back";
  const unit = isUnit();
  $("#kb-mine").hidden = $("#kb-flags").hidden = !unit;
  $("#kb-review").hidden = $("#kb-usage").hidden = unit || me.role !== "back_office";
  if (!unit && me.role === "supervisor") $("#kb-usage").hidden = false;
  $("#kb-entry").elements.category_code.append(...CATEGORIES.map((c) => h("option", { value: c.code }, c.name)));
  $("#kb-entry").addEventListener("submit", save);
  $("#kb-entry .cancel").addEventListener("click", () => { $("#kb-editor").hidden = true; });
  $(".new", $("#kb-mine")).addEventListener("click", () => edit(null));
  for (const b of document.querySelectorAll(".refresh")) b.addEventListener("click", refresh);
  refresh();
}).catch((err) => document.body.prepend(h("p", { class: "error" }, String(err))));
