// Call actions on the desk page (issue 17 item 2): on the call of the latest screen-pop, a warm
// transfer to a member unit's duty phone (A, then B if A does not answer) completed or cancelled,
// or a three-way call with the unit that the operator leaves and rejoins. Everything goes through
// /api/v1/calls/{uniqueid}/… (the API checks the call is this operator's and logs each step, A2);
// it works the same with the browser phone and with a softphone.
import { $, $$, clearError, get, h, post, showError } from "./console.js";

const STATE_TEXT = {
  consulting: "转接：单位已接听，诉求人在等待（可完成转接或取消）", transferred: "已转接给承办单位",
  talking: "与诉求人通话中", ended: "通话已结束", conference: "三方通话中", conference_left: "您已退出三方通话（诉求人与单位继续通话）",
};
// which buttons make sense in which state of the call (the API refuses the others with 409 anyway)
const ALLOWED = {
  talking: ["transfer", "conference"], consulting: ["transfer/complete", "transfer/cancel"],
  conference: ["conference/leave"], conference_left: ["conference/rejoin"], transferred: [], ended: [],
};

const call = { uniqueid: null, state: null };

function show() {
  const box = $("#call-actions");
  box.hidden = !call.uniqueid;
  box.dataset.state = call.state || "";
  const allowed = ALLOWED[call.state] || ALLOWED.talking;
  for (const b of $$("[data-call]", box)) b.disabled = !allowed.includes(b.dataset.call);
  $("#call-action-status").textContent = STATE_TEXT[call.state] || call.state || "";
}

async function act(action) {
  const box = $("#call-actions");
  const error = $(".error", box);
  clearError(error);
  const f = $("#call-action-form").elements;
  const body = ["transfer", "conference"].includes(action)
    ? { case_number: f.case_number.value.trim(), unit: f.unit.value } : undefined;
  const buttons = $$("[data-call]", box);
  buttons.forEach((b) => { b.disabled = true; });
  $("#call-action-status").textContent = action === "transfer" || action === "conference" ? "正在呼叫承办单位值班电话……" : "处理中……";
  try {
    const r = await post(`/calls/${encodeURIComponent(call.uniqueid)}/${action}`, body);
    // after "leave" the room goes on without the operator: only "rejoin" makes sense then
    call.state = r.state === "conference" && !r.operator_in_call ? "conference_left" : r.state;
    if (r.connected) {
      const unit = f.unit.selectedOptions[0] ? f.unit.selectedOptions[0].textContent : r.connected.unit;
      $("#call-action-unit").textContent = `${unit}（${r.connected.duty}岗）已接听`;
    } else if (action === "transfer" || action === "conference") {
      $("#call-action-unit").textContent = "承办单位值班电话无人接听";
    }
  } catch (err) {
    showError(error, err);
    if (err.status === 410) call.uniqueid = null;  // the call is over
  }
  show();
}

async function init() {
  const box = $("#call-actions");
  if (!box) return;
  try {
    const units = await get("/units");
    $("#call-action-form").elements.unit.replaceChildren(
      ...units.filter((u) => u.joined).map((u) => h("option", { value: u.code }, u.name)));
  } catch (err) { showError($(".error", box), err); }
  for (const b of $$("[data-call]", box)) b.addEventListener("click", () => act(b.dataset.call));
  document.addEventListener("console:call", (ev) => {
    const pop = ev.detail;
    call.uniqueid = pop.caller_uniqueid;
    call.state = "talking";
    $("#call-action-unit").textContent = "";
    clearError($(".error", box));
    const mine = pop.open_cases.find((c) => c.id === pop.case_id) || null;
    $("#call-action-form").elements.case_number.value = mine ? mine.number : "";
    show();
  });
}

document.addEventListener("console:ready", () => { init(); }, { once: true });
