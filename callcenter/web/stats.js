// 12345 statistics page (/app/stats, issue 12 item 6): charts of the figures the API defines
// (/api/v1/stats, /api/v1/assessment), drawn with Apache ECharts (window.echarts, installed from
// the npm registry, served from this server). Every number and chart element opens the cases or
// calls behind it; a case opens its case card as the back office's look-up does. The API decides
// which unit's figures a person reads (a unit's staff: their own only); this page never works round it.
import { $, $$, ROLE_HOME, caseCard, categoryName, clearError, explain, fmt, get, guard, h, label, showError } from "./console.js";

const CENTER = ["back_office", "supervisor", "admin"];
const LIMIT = 200;
const QUEUE_PART = { offered: "排队来电", answered: "人工接通", answered_within: "15秒内接通", abandoned: "排队放弃", abandoned_short: "5秒内放弃" };
const FIGURE = {
  received: "登记", accepted: "受理", rejected: "不予受理", closed: "办结", direct_answer: "直接答复率",
  dispatched_same_day: "当日交办率", back_office_on_time: "后台3日内派单率", satisfaction: "满意率",
  first_time_closed: "一次办结率", callback_reach: "回访接通率", repeat_caller: "重复来电率", response: "响应率",
  on_time: "按时办结率", returned: "退回率", extended: "延期率", urged: "催办率",
};
const PART = { numerator: "计入分子", denominator: "全部计入", missed: "未达" };
const DEADLINE = { report: "超期未报结（R8.3）", notify: "超期未告知（R8.2）" };
const BAND_COLOURS = ["#1e7b34", "#5b8c00", "#c9a227", "#d46b08", "#b00"];
const page = { me: null, units: [], charts: {}, loads: 0 };

const pct = (r) => (r && r.rate !== null && r.rate !== undefined ? `${(r.rate * 100).toFixed(1)}%` : "—");
const secs = (t) => (t && t.average !== null && t.average !== undefined ? t.average.toFixed(1) : "—");
const unitName = (code) => (page.units.find((u) => u.code === code) || { name: code }).name;
const isCenter = () => CENTER.includes(page.me.role);

function query(extra = {}) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...period(), ...extra })) if (v !== "" && v !== null && v !== undefined) params.set(k, v);
  return params.toString();
}
function period() {  // none chosen: the API's default, this month so far by the server's clock
  const f = $("#filter-form").elements;
  if (f.since.value && f.until.value) return { since: f.since.value, until: f.until.value };
  return { month: f.month.value };
}
const chosenUnit = () => $("#filter-form").elements.unit.value;

function chart(id) {
  if (!page.charts[id]) {
    // canvas, and tooltips drawn into it (richText): no markup with inline styles, which the
    // page's Content-Security-Policy (style-src 'self') would refuse
    page.charts[id] = window.echarts.init(document.getElementById(id), null, { renderer: "canvas" });
    window.addEventListener("resize", () => page.charts[id].resize());
  }
  return page.charts[id];
}
const TOOLTIP = { trigger: "axis", renderMode: "richText" };
function noData(id, text = "暂无数据") {
  const c = chart(id);
  c.clear();
  c.setOption({ title: { text, left: "center", top: "middle", textStyle: { color: "#999", fontSize: 14 } } });
}

// ---- drill-down: the rows behind a number ---------------------------------------------------
function drillBox(title) {
  const box = $("#drill");
  box.hidden = false;
  $(".title", box).textContent = title;
  clearError($(".error", box));
  $("#drill-case").replaceChildren();
  return box;
}

async function drillCases(title, path, params) {
  const box = drillBox(title);
  try {
    const r = await get(`/stats/${path}?${query({ ...params, limit: LIMIT })}`);
    $(".more", box).hidden = !r.more;
    $("thead", box).replaceChildren(h("tr", {}, ["诉求件", "状态", "分类", "单位", "工单"].map((t) => h("th", {}, t))));
    $("tbody", box).replaceChildren(...(r.cases.length ? r.cases.map((c) => h("tr", { dataset: { number: c.number } },
      h("td", {}, h("button", { type: "button", class: "link open-case", onclick: () => openCase(c.number) }, c.number),
        c.confidential ? h("span", { class: "mark confidential" }, "纪检监察件") : null),
      h("td", {}, label("caseStatus", c.status)), h("td", {}, categoryName(c.category_code)),
      h("td", {}, c.units.map(unitName).join("、") || "—"), h("td", {}, c.work_order_id ? `#${c.work_order_id}` : "—")))
      : [h("tr", {}, h("td", { colspan: 5, class: "empty" }, "没有记录。"))]));
    box.dataset.rows = String(r.cases.length);
  } catch (err) { showError($(".error", box), err); $("tbody", box).replaceChildren(); }
  box.scrollIntoView({ block: "start" });
}

async function drillCalls(title, params) {
  const box = drillBox(title);
  try {
    const r = await get(`/stats/calls/rows?${query({ ...params, limit: LIMIT })}`);
    $(".more", box).hidden = !r.more;
    $("thead", box).replaceChildren(h("tr", {}, ["通话", "进入排队", "结果", "等待（秒）", "通话（秒）", "话务员"].map((t) => h("th", {}, t))));
    $("tbody", box).replaceChildren(...(r.calls.length ? r.calls.map((c) => h("tr", { dataset: { call: c.call_id } },
      h("td", {}, `#${c.call_id}`), h("td", {}, fmt(c.queued_at)),
      h("td", {}, c.answered ? "接通" : c.abandoned ? "放弃" : "未接通"),
      h("td", {}, c.wait_s === null ? "—" : c.wait_s.toFixed(0)), h("td", {}, c.talk_s === null ? "—" : c.talk_s.toFixed(0)),
      h("td", {}, c.operator_name || "—")))
      : [h("tr", {}, h("td", { colspan: 6, class: "empty" }, "没有记录。"))]));
    box.dataset.rows = String(r.calls.length);
  } catch (err) { showError($(".error", box), err); $("tbody", box).replaceChildren(); }
  box.scrollIntoView({ block: "start" });
}

async function openCase(number) {
  const box = $("#drill");
  clearError($(".error", box));
  try {
    $("#drill-case").replaceChildren(caseCard(await get(`/cases/${encodeURIComponent(number)}`)));
  } catch (err) { showError($(".error", box), err); }
}

const scoped = (extra = {}) => ({ unit: chosenUnit(), ...extra });
const caseRate = (name, part, unit) => () => drillCases(`${FIGURE[name]} · ${PART[part]}`, "cases/rows",
  { figure: name, part, unit: unit ?? chosenUnit() });

// ---- the figures ---------------------------------------------------------------------------
function tile(title, value, onclick, key) {
  return h("button", { type: "button", class: "figure", dataset: { figure: key }, onclick }, h("b", {}, value), title);
}
function rateTile(name, r, unit) {
  return tile(`${FIGURE[name]}（${r.numerator}/${r.denominator}）`, pct(r), caseRate(name, "denominator", unit), name);
}

async function loadCalls() {
  const show = isCenter() && !chosenUnit();  // call figures are the hotline's: not per unit, not for a unit
  $$("[data-center]").forEach((el) => { el.hidden = !show; });
  if (!show) return [];
  const c = await get(`/stats/calls?${query()}`);
  const q = c.queue;
  const hours = [...Array(24).keys()];
  const byHour = Object.fromEntries(c.by_hour.map((x) => [Number(x.key), x]));
  chart("chart-hour").setOption({
    tooltip: TOOLTIP, legend: { top: 0 }, grid: { left: 40, right: 16, top: 30, bottom: 30 },
    xAxis: { type: "category", data: hours.map((x) => `${x}时`) }, yAxis: { type: "value", minInterval: 1 },
    series: [{ name: "排队来电", type: "bar", data: hours.map((x) => (byHour[x] ? byHour[x].offered : 0)) },
             { name: "人工接通", type: "bar", data: hours.map((x) => (byHour[x] ? byHour[x].answered : 0)) }],
  }, true);
  chart("chart-hour").off("click");
  chart("chart-hour").on("click", (p) => drillCalls(`${p.dataIndex}时 · ${p.seriesName}`,
    { part: p.seriesIndex === 0 ? "offered" : "answered", hour: p.dataIndex }));
  if (c.by_day.length) {
    const percent = (r) => (r.rate === null ? null : Math.round(r.rate * 1000) / 10);
    chart("chart-trend").setOption({
      tooltip: TOOLTIP, legend: { top: 0 }, grid: { left: 40, right: 16, top: 30, bottom: 30 },
      xAxis: { type: "category", data: c.by_day.map((d) => d.key.slice(5)) },
      yAxis: { type: "value", max: 100, axisLabel: { formatter: "{value}%" } },
      series: [{ name: "接通率", type: "line", data: c.by_day.map((d) => percent(d.answer_rate)) },
               { name: `${c.answer_within_s}秒接通率`, type: "line", data: c.by_day.map((d) => percent(d.answered_within)) }],
    }, true);
    chart("chart-trend").off("click");
    chart("chart-trend").on("click", (p) => drillCalls(`${c.by_day[p.dataIndex].key} · ${p.seriesName}`,
      { part: p.seriesIndex === 0 ? "answered" : "answered_within", day: c.by_day[p.dataIndex].key }));
  } else noData("chart-trend");
  $("#operators tbody").replaceChildren(...c.by_operator.map((o) => h("tr", {},
    h("td", {}, h("button", { type: "button", class: "link", onclick: () => drillCalls(`${o.name} · 接听`, { part: "answered", operator: o.key }) }, o.name || o.key)),
    h("td", {}, String(o.answered)), h("td", {}, pct(o.answered_within)), h("td", {}, secs(o.wait)), h("td", {}, secs(o.talk)))));
  const calls = (part) => () => drillCalls(QUEUE_PART[part], { part });
  return [
    tile("排队来电", String(q.offered), calls("offered"), "offered"),
    tile(`接通率（${q.answer_rate.numerator}/${q.answer_rate.denominator}）`, pct(q.answer_rate), calls("answered"), "answer_rate"),
    tile(`${c.answer_within_s}秒接通率`, pct(q.answered_within), calls("answered_within"), "answered_within"),
    tile("排队放弃", String(q.abandoned), calls("abandoned"), "abandoned"),
    tile("平均等待（秒）", secs(q.wait), calls("answered"), "wait"),
    tile("平均通话（秒）", secs(q.talk), calls("answered"), "talk"),
  ];
}

async function loadCases() {
  const c = await get(`/stats/cases?${query(scoped())}`);
  $("#filters .period").textContent = `统计期：${fmt(c.period.since)} 至 ${fmt(c.period.until)}（不含）`
    + (c.unit ? ` · ${unitName(c.unit)}` : " · 全市");
  const f = $("#filter-form").elements;
  if (!f.month.value && !f.since.value) f.month.value = fmt(c.period.since).slice(0, 7);  // the server's "this month"
  const intake = c.intake;
  const categories = Object.entries(intake.by_category).sort((a, b) => a[1] - b[1]);
  if (categories.length) {
    chart("chart-category").setOption({
      tooltip: TOOLTIP, grid: { left: 150, right: 24, top: 10, bottom: 24 },
      xAxis: { type: "value", minInterval: 1 }, yAxis: { type: "category", data: categories.map(([k]) => categoryName(k || null)) },
      series: [{ name: "受理", type: "bar", data: categories.map(([, n]) => n) }],
    }, true);
    chart("chart-category").off("click");
    chart("chart-category").on("click", (p) => drillCases(`分类：${p.name}`, "cases/rows",
      scoped({ figure: "accepted", category: categories[p.dataIndex][0] })));
  } else noData("chart-category");
  const channels = Object.entries(intake.by_channel);
  if (channels.length) {
    chart("chart-channel").setOption({
      tooltip: { trigger: "item", renderMode: "richText" },
      series: [{ name: "受理渠道", type: "pie", radius: "65%", data: channels.map(([k, n]) => ({ name: label("channel", k), value: n, code: k })) }],
    }, true);
    chart("chart-channel").off("click");
    chart("chart-channel").on("click", (p) => drillCases(`渠道：${p.name}`, "cases/rows", scoped({ figure: "accepted", channel: p.data.code })));
  } else noData("chart-channel");
  $("#channels .kinds").replaceChildren("诉求类型：", ...Object.entries(intake.by_kind).flatMap(([k, n]) => [
    h("button", { type: "button", class: "link", dataset: { kind: k },
                  onclick: () => drillCases(`诉求类型：${label("kind", k)}`, "cases/rows", scoped({ figure: "accepted", kind: k })) },
      `${label("kind", k)} ${n}`), " "]));
  const r = c.rates;
  return [
    tile("受理", String(intake.accepted), () => drillCases("受理", "cases/rows", scoped({ figure: "accepted" })), "accepted"),
    tile("不予受理", String(intake.rejected), () => drillCases("不予受理", "cases/rows", scoped({ figure: "rejected" })), "rejected"),
    tile("办结", String(c.closing.closed), () => drillCases("办结", "cases/rows", scoped({ figure: "closed" })), "closed"),
    rateTile("satisfaction", r.satisfaction), rateTile("response", r.response), rateTile("on_time", r.on_time),
    rateTile("first_time_closed", r.first_time_closed), rateTile("direct_answer", r.direct_answer),
    rateTile("dispatched_same_day", r.dispatched_same_day), rateTile("repeat_caller", r.repeat_caller),
  ];
}

async function loadOverdue() {
  const o = await get(`/stats/overdue?${query(scoped())}`);  // now; the period does not apply
  const rows = o.units;
  if (rows.some((u) => u.report || u.notify)) {
    chart("chart-overdue").setOption({
      tooltip: TOOLTIP, legend: { top: 0 }, grid: { left: 150, right: 24, top: 30, bottom: 24 },
      xAxis: { type: "value", minInterval: 1 }, yAxis: { type: "category", data: rows.map((u) => u.name) },
      series: [{ name: "超期未报结", type: "bar", stack: "o", data: rows.map((u) => u.report) },
               { name: "超期未告知", type: "bar", stack: "o", data: rows.map((u) => u.notify) }],
    }, true);
    chart("chart-overdue").off("click");
    chart("chart-overdue").on("click", (p) => {
      const deadline = p.seriesIndex === 0 ? "report" : "notify";
      drillCases(`${rows[p.dataIndex].name} · ${DEADLINE[deadline]}`, "overdue/rows", { unit: rows[p.dataIndex].code, deadline });
    });
  } else noData("chart-overdue", "当前无超期工单");
  const mine = o.total || rows[0] || { report: 0 };
  return [tile(`当前超期工单（${fmt(o.at)}）`, String(mine.report),
    () => drillCases(DEADLINE.report, "overdue/rows", scoped({ deadline: "report" })), "overdue")];
}

async function loadUnits() {
  const u = await get(`/stats/units?${query(scoped())}`);
  // 响应率, 按时办结率, 满意率: the misses are what a unit is asked about; returns and urges are counts
  const MISSABLE = ["response", "on_time", "satisfaction"];
  const cell = (name, r, code) => h("td", {},
    h("button", { type: "button", class: "link", onclick: caseRate(name, "denominator", code) }, `${pct(r)}（${r.numerator}/${r.denominator}）`),
    MISSABLE.includes(name) && r.denominator > r.numerator
      ? [" ", h("button", { type: "button", class: "link missed", onclick: caseRate(name, "missed", code) }, `未达${r.denominator - r.numerator}`)] : null);
  $("#units tbody").replaceChildren(...(u.units.length ? u.units.map((x) => h("tr", { dataset: { unit: x.code } },
    h("td", {}, x.name), h("td", {}, String(x.dispatched)), cell("response", x.response, x.code), cell("on_time", x.on_time, x.code),
    cell("satisfaction", x.satisfaction, x.code), cell("returned", x.returned, x.code), cell("urged", x.urged, x.code)))
    : [h("tr", {}, h("td", { colspan: 7, class: "empty" }, "本期无工单。"))]));
}

// The ranking with bands (GET /api/v1/assessment, contracts.md 2). "No data" while that route is not
// there (404), refuses this reader, or answers in another shape; its failure is the panel's alone.
async function loadRanking() {
  let a;
  try {
    a = await get(`/assessment?${query()}`);
  } catch (err) {
    $("#ranking .bands").textContent = [403, 404, 405].includes(err.status) ? "" : explain(err);
    noData("chart-ranking");
    return;
  }
  if (!a || !Array.isArray(a.units)) { $("#ranking .bands").textContent = ""; noData("chart-ranking"); return; }
  const bands = a.bands || [];
  const colour = (band) => BAND_COLOURS[Math.max(0, bands.findIndex((b) => b.band === band)) % BAND_COLOURS.length];
  $("#ranking .bands").textContent = bands.map((b) => `${b.band} ${b.label}（≥${b.min_score}）`).join("　");
  const shown = (a.units || []).filter((u) => !chosenUnit() || u.code === chosenUnit());
  // a unit with nothing to count in the period has no score: said in words, not drawn as a bar
  const units = shown.filter((u) => u.score !== null && u.score !== undefined).sort((x, y) => x.score - y.score);
  const unscored = shown.length - units.length;
  if (unscored) $("#ranking .bands").textContent += `　（另有${unscored}个单位本期无可计指标，不评分）`;
  if (!units.length) { noData("chart-ranking"); return; }
  chart("chart-ranking").setOption({
    tooltip: TOOLTIP, grid: { left: 150, right: 60, top: 10, bottom: 24 },
    xAxis: { type: "value", max: 100 }, yAxis: { type: "category", data: units.map((u) => u.name) },
    series: [{ name: "得分", type: "bar", data: units.map((u) => ({ value: u.score, itemStyle: { color: colour(u.band) } })),
               label: { show: true, position: "right", formatter: (p) => {
                 const u = units[p.dataIndex];
                 return `${u.band ?? "—"} ${u.score ?? "—"}${u.rank ? " 第" + u.rank + "名" : ""}`;
               } } }],
  }, true);
  chart("chart-ranking").off("click");
  chart("chart-ranking").on("click", (p) => {  // that unit's own figures
    const code = units[p.dataIndex].code;
    const select = $("#filter-form").elements.unit;
    if ([...select.options].some((o) => o.value === code) && !select.disabled) { select.value = code; load(); }
  });
}

async function load() {
  const box = $("#filters");
  clearError($(".error", box));
  try {
    const tiles = [...await loadCalls(), ...await loadCases(), ...await loadOverdue()];
    $("#summary .figures").replaceChildren(...tiles);
    await loadUnits();
    await loadRanking();
  } catch (err) { showError($(".error", box), err); }
  page.loads += 1;
  document.body.dataset.loads = String(page.loads);  // tests (and people) can tell the figures landed
}

async function init(me) {
  page.me = me;
  $(".home").href = ROLE_HOME[me.role] || "/app/login";
  const f = $("#filter-form").elements;
  try { page.units = await get("/units"); } catch { page.units = []; }
  if (isCenter()) {
    f.unit.replaceChildren(h("option", { value: "" }, "全部（全市）"),
      ...page.units.filter((u) => u.joined).map((u) => h("option", { value: u.code }, u.name)));
  } else {  // a unit's staff read their own unit's figures only (the API says so too)
    f.unit.replaceChildren(h("option", { value: me.unit_code }, unitName(me.unit_code)));
    f.unit.disabled = true;
  }
  $("#filter-form").addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
  f.month.addEventListener("change", () => { if (f.month.value) { f.since.value = ""; f.until.value = ""; } });
  await load();
}

guard("stats").then((me) => me && init(me)).catch((err) => {
  document.body.prepend(h("p", { class: "error" }, explain(err)));
});
