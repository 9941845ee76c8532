// Notice deliveries on the back-office page and a unit's page (issue 14): urges to a unit's duty
// phone (R7.7), R8.2 notices and portal confirmations to citizens, with their state, tries and last
// outcome; numbers come masked from the API (callback/deliveries.py), a unit's staff get their own
// unit's only; the back office can try a failed one again.
import { $, clearError, fmt, get, h, onPage, post, showError } from "./console.js";

const KIND = { urge: "催办（单位值班电话）", unit_notice: "告知诉求人（R8.2）", portal_confirmation: "网上受理确认" };
const STATE = { scheduled: "待拨打", dialing: "拨打中", answered: "已接通", acknowledged: "已送达", failed: "失败" };
const view = { failedOnly: false, canRetry: false };

function row(d) {
  const retry = view.canRetry && d.state === "failed" ? h("button", { type: "button", class: "secondary retry", onclick: async () => {
    try { await post(`/notifications/${d.id}/retry`); loadDeliveries(); } catch (err) { showError($(".error", $("#notice-deliveries")), err); }
  } }, "重新发送") : null;
  return h("tr", { dataset: { delivery: d.id, state: d.state }, class: d.state === "failed" ? "overdue" : "" },
    h("td", {}, KIND[d.kind] || d.kind), h("td", {}, d.case_number || "—"), h("td", {}, d.unit_name || "—"),
    h("td", {}, d.channel === "voice" ? "语音电话" : d.channel), h("td", {}, d.phone || "—"),
    h("td", { class: "state" }, STATE[d.state] || d.state), h("td", {}, String(d.tries)),
    h("td", {}, d.last_outcome || "—"), h("td", {}, d.acknowledged_at ? fmt(d.acknowledged_at) : "—"), h("td", {}, retry));
}

async function loadDeliveries() {
  const box = $("#notice-deliveries");
  const error = $(".error", box);
  clearError(error);
  try {
    const rows = await get(`/notifications${view.failedOnly ? "?state=failed" : ""}`);
    $(".count", box).textContent = `（${rows.length}）`;
    $("tbody", box).replaceChildren(...(rows.length ? rows.map(row)
      : [h("tr", {}, h("td", { colspan: COLUMNS.length, class: "empty" }, "暂无。"))]));
    box.dataset.loads = String(Number(box.dataset.loads || 0) + 1);
  } catch (err) { showError(error, err); }
}

const COLUMNS = ["类型", "诉求件", "单位", "方式", "号码", "状态", "未接次数", "最近结果", "送达时间", ""];

async function initDeliveries(me) {
  view.canRetry = ["back_office", "supervisor", "admin", "unit_staff", "discipline"].includes(me.role);  // the API's RETRIERS
  const box = $("#notice-deliveries");
  $("table", box).replaceChildren(h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", {}, c)))), h("tbody"));
  const only = $("input[name=failed]", box);
  only.addEventListener("change", () => { view.failedOnly = only.checked; loadDeliveries(); });
  $(".refresh", box)?.addEventListener("click", loadDeliveries);
  $(".refresh-all")?.addEventListener("click", loadDeliveries);
  await loadDeliveries();
}

onPage("back", initDeliveries);
onPage("unit", initDeliveries);
