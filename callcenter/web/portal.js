// The citizen portal (/): send a request, check its progress, rate the answer (callcenter/portal/).
// No markup is built from strings: every text goes in as a text node.
const API = "/api/v1/portal";
const $ = (sel) => document.querySelector(sel);
const STATUS_SATISFACTION = { satisfied: "满意", basically_satisfied: "基本满意", unsatisfied: "不满意" };
const PHONE = /^(1[3-9][0-9]{9}|0[1-9][0-9]{1,2}-?[0-9]{7,8})$/;
let catalogue = { photo_max_kb: 0, categories: [] };
let photo = null; // base64 of the chosen photo

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "dataset") Object.assign(el.dataset, v); else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c);
  return el;
}

function shown(iso) {
  if (!iso) return "—";
  const parts = Object.fromEntries(new Intl.DateTimeFormat("zh-CN", { timeZone: "Asia/Shanghai", year: "numeric",
    month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" })
    .formatToParts(new Date(iso)).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}`;
}

async function call(path, body) {
  const response = await fetch(API + path, body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (!response.ok) {
    let message = (data && data.detail) || "服务暂时不可用，请稍后再试或拨打 12345。";
    if (response.status === 422 && data && data.error === "invalid_input") message = "填写的信息格式不正确，请检查后再提交。";
    if (response.status === 413) message = "照片太大，请换一张较小的照片。";
    throw new Error(message);
  }
  return data;
}

function showError(el, message, field) {
  el.textContent = message;
  el.hidden = !message;
  for (const bad of document.querySelectorAll("[aria-invalid]")) bad.removeAttribute("aria-invalid");
  if (field) { field.setAttribute("aria-invalid", "true"); field.focus(); }
}

// ---- the catalogue with search -------------------------------------------------------------
function fillCategories() {
  const select = $("#category");
  const words = $("#category-search").value.trim().toLowerCase().split(/\s+/).filter(Boolean);
  const chosen = select.value;
  const matching = catalogue.categories.filter((c) => {
    const text = `${c.name} ${c.description} ${c.keywords || ""} ${c.unit || ""}`.toLowerCase();
    return words.every((w) => text.includes(w));
  });
  select.replaceChildren(...matching.map((c) => h("option", { value: c.code, selected: c.code === chosen }, c.name)));
  $("#category-count").textContent = words.length ? `找到 ${matching.length} 个类别` : `共 ${matching.length} 个类别`;
  fillKinds();
}

function fillKinds() {
  const cat = catalogue.categories.find((c) => c.code === $("#category").value);
  const kind = $("#kind");
  const was = kind.value;
  if (!cat) {
    kind.replaceChildren(h("option", { value: "" }, "请先选择诉求类别"));
    $("#category-note").textContent = "";
    return;
  }
  kind.replaceChildren(...cat.kinds.map((k) => h("option", { value: k.code, selected: k.code === was }, k.name)));
  $("#category-note").textContent = cat.description + (cat.unit ? `（承办：${cat.unit}）` : "");
}

// ---- the photo ---------------------------------------------------------------------------------
function readPhoto() {
  const input = $("#photo");
  const preview = $("#photo-preview");
  const error = $("#request-error");
  photo = null;
  preview.hidden = true;
  const file = input.files[0];
  if (!file) return;
  if (!["image/jpeg", "image/png", "image/webp"].includes(file.type)) {
    input.value = "";
    showError(error, "照片只能是 JPEG、PNG 或 WebP 格式。", input);
    return;
  }
  if (file.size > catalogue.photo_max_kb * 1024) {
    input.value = "";
    showError(error, `照片不能超过 ${catalogue.photo_max_kb} KB，请换一张较小的照片。`, input);
    return;
  }
  const reader = new FileReader();
  reader.onload = () => {
    photo = String(reader.result).split(",", 2)[1];
    preview.src = reader.result;
    preview.hidden = false;
  };
  reader.readAsDataURL(file);
}

// ---- sending a request -------------------------------------------------------------------------
function checkRequest(form) {
  const value = (name) => form.elements[name].value.trim();
  if (!value("category_code")) return ["请选择诉求类别。", $("#category")];
  if (!value("kind")) return ["请选择诉求类型。", $("#kind")];
  if (value("description").length < 5) return ["请填写诉求内容，至少 5 个字。", $("#description")];
  if (value("location").length < 2) return ["请填写事发地点。", $("#location")];
  if (!value("name")) return ["请填写姓名。", $("#name")];
  if (!PHONE.test(value("phone").replace(/\s/g, ""))) return ["请填写正确的联系电话：11 位手机号码，或带区号的固定电话。", $("#phone")];
  return null;
}

async function sendRequest(event) {
  event.preventDefault();
  const form = event.target;
  const error = $("#request-error");
  const problem = checkRequest(form);
  if (problem) { showError(error, ...problem); return; }
  showError(error, "");
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const value = (name) => form.elements[name].value.trim();
    const receipt = await call("/requests", {
      kind: value("kind"), category_code: value("category_code"), description: value("description"),
      location: value("location"), name: value("name"), phone: value("phone").replace(/\s/g, ""), photo });
    const box = $("#receipt");
    box.replaceChildren(
      h("p", {}, "诉求已提交，您的诉求编号是："),
      h("p", { class: "number", dataset: { number: receipt.number } }, receipt.number),
      h("p", {}, receipt.notice),
      h("p", {}, "请记下编号，查询进度时需要编号和联系电话的后四位。"));
    box.hidden = false;
    form.reset();
    photo = null;
    $("#photo-preview").hidden = true;
    fillCategories();
    $("#number").value = receipt.number;
    box.focus();
  } catch (err) {
    showError(error, err.message);
  } finally {
    button.disabled = false;
  }
}

// ---- progress and rating -----------------------------------------------------------------------
function asked() {
  return { number: $("#number").value.trim(), phone_suffix: $("#suffix").value.trim() };
}

function ratingForm(p) {
  const choices = Object.entries(STATUS_SATISFACTION).map(([code, name]) => h("div", { class: "choice" },
    h("input", { type: "radio", name: "satisfaction", id: `rate-${code}`, value: code, required: true }),
    h("label", { for: `rate-${code}` }, name)));
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const form = h("form", { id: "rating-form", novalidate: true },
    h("fieldset", {}, h("legend", {}, "您对答复满意吗？（只能评价一次）"), ...choices),
    error, h("button", { type: "submit" }, "提交评价"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const picked = form.querySelector("input[name=satisfaction]:checked");
    if (!picked) { showError(error, "请选择一项评价。", form.querySelector("input[name=satisfaction]")); return; }
    try {
      const updated = await call("/rating", { ...asked(), satisfaction: picked.value });
      showProgress(updated, "感谢您的评价。");
    } catch (err) { showError(error, err.message); }
  });
  return form;
}

function showProgress(p, flash = "") {
  const row = (term, detail) => [h("dt", {}, term), h("dd", {}, detail)];
  const box = $("#progress-result");
  box.replaceChildren(h("div", { class: "progress", dataset: { number: p.number, status: p.status } },
    flash ? h("p", { role: "status" }, flash) : null,
    h("h3", {}, `诉求编号 ${p.number}`),
    h("dl", {},
      row("办理状态", p.status_text),
      row("诉求类别", p.category || "—"),
      row("受理时间", shown(p.accepted_at)),
      row("承办单位", p.units.length ? p.units.join("、") : "尚未派单"),
      row("办理时限", shown(p.deadline_at)),
      row("答复时间", shown(p.reported_at)),
      row("答复内容", h("span", { class: "answer" }, p.answer || "尚未答复")),
      row("满意度评价", STATUS_SATISFACTION[p.satisfaction] || "尚未评价")),
    p.may_rate ? ratingForm(p) : null));
  box.focus();
}

async function checkProgress(event) {
  event.preventDefault();
  const error = $("#progress-error");
  const { number, phone_suffix: suffix } = asked();
  if (!/^[0-9]{8}-?[0-9]{6}$/.test(number)) { showError(error, "请填写正确的诉求编号，如 20260302-000001。", $("#number")); return; }
  if (!/^[0-9]{4}$/.test(suffix)) { showError(error, "请填写联系电话的后四位数字。", $("#suffix")); return; }
  showError(error, "");
  $("#progress-result").replaceChildren();
  try {
    showProgress(await call("/progress", asked()));
  } catch (err) { showError(error, err.message); }
}

async function init() {
  $("#request-form").addEventListener("submit", sendRequest);
  $("#progress-form").addEventListener("submit", checkProgress);
  $("#category-search").addEventListener("input", fillCategories);
  $("#category").addEventListener("change", fillKinds);
  $("#photo").addEventListener("change", readPhoto);
  try {
    catalogue = await call("/catalogue");
    $("#photo-hint").textContent = `JPEG、PNG 或 WebP 格式，不超过 ${catalogue.photo_max_kb} KB。`;
    fillCategories();
  } catch (err) { showError($("#request-error"), err.message); }
  document.body.dataset.inited = "1";
}

init();
