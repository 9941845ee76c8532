// The operator's call actions on the desk page (issue 17 item 2): warm transfer to a unit's duty
// phone (A then B), completed or taken back; three-way call with the unit, left and rejoined;
// convenience transfer after the R7.3f disclaimer and consent; the live satisfaction of a three-way
// call or transfer (R7.4). Everything goes through /api/v1/calls/{uniqueid}/…, the same routes a
// softphone user would call; the API decides what is allowed. The call comes from the operator's
// event stream (console.js re-dispatches it as a "phone-event").
import { $, CATEGORIES, clearError, get, h, label, post, showError } from "./console.js";

const call = { uid: null, caller: "", state: "idle", inCall: true, ended: false, acted: false, busy: false };
let units = [];
const popCase = {};  // caller uniqueid -> the screen-pop's first open case

const STATE_WORDS = {
  talking: "通话中", consulting: "已接通单位，诉求人等待中", transferred: "已转接单位",
  conference: "三方通话中", left: "您已离开三方通话，诉求人与单位仍在通话", ended: "通话已结束",
};
// the API's call state, with the operator's own presence in a three-way call
const shown = () => (call.ended ? "ended" : call.state === "conference" && !call.inCall ? "left" : call.state);

function box() { return $("#call-actions"); }
function say(text) { $(".call-state", box()).textContent = text; }

function caseNumber() {
  const value = $("input[name=call-case]", box()).value.trim();
  if (!value) throw new Error("请先填写本次通话的诉求件编号");
  return value;
}

async function act(path, body, then) {
  const error = $(".error", box());
  clearError(error);
  call.busy = true;
  try {
    const r = await post(`/calls/${encodeURIComponent(call.uid)}${path}`, body);
    call.acted = true;
    if (r && r.state) { call.state = r.state; call.inCall = r.operator_in_call; }
    if (then) then(r);
    render();
    return r;
  } catch (err) {
    showError(error, err);
    return null;
  } finally {
    call.busy = false;
  }
}

function unitName(code) { return (units.find((u) => u.code === code) || { name: code }).name; }

function connectedText(r) {
  if (!r || !r.connected) return "单位 A、B 岗均未接听，诉求人仍在线上";
  return `已接通${unitName(r.connected.unit)}（${r.connected.duty} 岗）`;
}

function withCase(fn) {
  return () => {
    try { fn(caseNumber()); } catch (err) { showError($(".error", box()), err); }
  };
}

function unitCall(kind) {
  return withCase((number) => {
    const unit = $("select[name=call-unit]", box()).value;
    const path = kind === "transfer" ? "/transfer" : "/conference";
    act(path, { case_number: number, unit }, (r) => { call.note = connectedText(r); });
  });
}

function convenience() {
  return withCase(async (number) => {
    const f = $(".convenience", box());
    const read = $("input[name=cv-read]", f).checked, consent = $("input[name=cv-consent]", f).checked;
    const r = await act("/consent", { case_number: number, disclaimer_read: read, consent });
    if (!r) return;
    if (!consent) { call.note = "诉求人不同意转接，已记录"; render(); return; }
    await act("/convenience-transfer", { case_number: number }, () => { call.note = "已转接便民服务中心"; });
  });
}

function outcome() {
  return withCase((number) => {
    const f = $(".outcome", box());
    const answer = $("textarea[name=oc-answer]", f).value.trim();
    act("/outcome", { case_number: number, answer, satisfaction: $("select[name=oc-satisfaction]", f).value },
      (r) => { call.note = `已记录通话结果：${label("satisfaction", r.satisfaction)}`; call.rated = true; });
  });
}

function button(text, onclick, cls = "", call = "") {
  return h("button", { type: "button", class: cls, onclick, dataset: { call } }, text);
}

function actions() {
  const s = shown();
  if (s === "talking") {
    return [button("转接单位（先 A 岗后 B 岗）", unitCall("transfer"), "", "transfer"),
            button("三方通话", unitCall("conference"), "secondary", "conference")];
  }
  if (s === "consulting") {
    return [button("完成转接", () => act("/transfer/complete", {}, () => { call.note = "单位已接手诉求人"; }), "", "transfer/complete"),
            button("取消转接，回到诉求人", () => act("/transfer/cancel", {}, () => { call.note = "已回到诉求人"; }), "secondary",
                   "transfer/cancel")];
  }
  if (s === "conference") return [button("离开三方通话", () => act("/conference/leave", {}), "", "conference/leave")];
  if (s === "left") return [button("重新加入三方通话", () => act("/conference/rejoin", {}), "", "conference/rejoin")];
  return [];
}

function disclaimer() {
  const cat = CATEGORIES.find((c) => c.mode === "transfer");
  return cat ? cat.read_aloud : "便民服务可能收费，转接前须告知并经诉求人同意";
}

function render() {
  const el = box();
  if (!el) return;
  el.hidden = !call.uid;
  if (!call.uid) return;
  $(".caller", el).textContent = call.caller || "未显示号码";
  el.dataset.state = shown();  // talking | consulting | transferred | conference | left | ended
  say(`${STATE_WORDS[shown()] || call.state}${call.note ? ` · ${call.note}` : ""}`);
  $(".buttons", el).replaceChildren(...actions());
  $(".convenience", el).hidden = call.ended || call.state !== "talking";
  $(".cv-text", el).textContent = `请宣读（R7.3f）：${disclaimer()}`;
  // R7.4: rated live once the unit was on the line (three-way or transfer)
  $(".outcome", el).hidden = !call.acted || call.rated || !["conference", "transferred"].includes(call.state);
}

function onPhoneEvent(ev) {
  if (ev.type === "queue_call" && ev.event === "connect") {
    Object.assign(call, { uid: ev.caller_uniqueid, caller: ev.caller_number, state: "talking", inCall: true, ended: false,
                          acted: false, rated: false, note: "" });
    // a new call starts with a clean panel: nothing of the last citizen's stays in its fields
    const el = box();
    for (const f of el.querySelectorAll("input[type=checkbox]")) f.checked = false;
    for (const f of el.querySelectorAll("input[name=call-case], textarea")) f.value = "";
    $("input[name=call-case]", el).value = popCase[call.uid] || "";
    render();
  } else if (ev.type === "queue_call" && ev.event === "complete" && ev.caller_uniqueid === call.uid) {
    // the operator's leg ended: the call is over unless they handed it on (a transfer or three-way
    // call, whose answer may still be on its way while an action runs)
    if (call.state === "talking" && !call.busy) call.ended = true;
    render();
  } else if (ev.type === "screen_pop") {
    // the pop may come before or after the call's connect event: keep its case for either
    const first = (ev.open_cases || []).find((c) => !c.confidential);
    if (!first) return;
    popCase[ev.caller_uniqueid] = first.number;
    const field = $("input[name=call-case]", box());
    if (field && !field.value && ev.caller_uniqueid === call.uid) field.value = first.number;
  }
}

async function init() {
  const el = box();
  if (!el) return;
  $(".convenience button", el).addEventListener("click", convenience());
  $(".outcome button", el).addEventListener("click", outcome());
  // a case the operator just created on this page is the call's case
  window.addEventListener("case-created", (e) => { $("input[name=call-case]", el).value = e.detail.number; });
  window.addEventListener("phone-event", (e) => onPhoneEvent(e.detail));
  try {
    units = (await get("/units")).filter((u) => u.joined);
    $("select[name=call-unit]", el).replaceChildren(...units.map((u) => h("option", { value: u.code }, u.name)));
  } catch (err) { showError($(".error", el), err); }
  render();
  el.dataset.inited = "1";
}

init();
