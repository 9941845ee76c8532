// The operator's phone in the desk page (issue 17 item 1): JsSIP (served from this install,
// /app/static/vendor/jssip.min.js) registers the operator's account to Asterisk over a secure
// WebSocket and answers queue calls in the browser. What it shows is what is true now:
// "已注册" only while Asterisk has confirmed the registration and the connection answers; the media
// line counts RTP packets both ways, so one-way audio is visible. Operators whose account is a
// softphone (config/operators.yaml phone: softphone) see a note instead.
import { $, explain, get, h } from "./console.js";

const PROBE_EVERY_MS = 4000;  // a silent network loss is noticed within PROBE_EVERY_MS + PROBE_WAIT_MS
const PROBE_WAIT_MS = 3000;
const STATS_EVERY_MS = 1000;
const prefs = window.localStorage;  // device choice and auto-answer stay with this browser

const REG_TEXT = {
  off: "电话未启动", connecting: "正在连接电话服务器……", registered: "已注册：可以接听来电",
  unregistered: "未注册：与电话服务器的连接已断开，正在自动重连……", failed: "未注册",
};
const MEDIA_TEXT = {
  idle: "无通话", ringing: "来电振铃", connecting: "正在接通媒体……", flowing: "通话中：双向有声音",
  "one-way-in": "单通：收不到对方的声音（发送正常）", "one-way-out": "单通：对方收不到您的声音（接收正常）",
  silent: "媒体中断：双向都没有语音包", held: "通话已保持（对方听等待音）", failed: "媒体连接失败",
};

// A JsSIP socket that can be dropped as a network failure: JsSIP then reports "disconnected", marks
// the registration lost and reconnects on its own (closing a dead TCP connection can take minutes).
function checkedSocket(url) {
  const socket = new window.JsSIP.WebSocketInterface(url);
  socket.drop = () => { phone.drops += 1; socket.disconnect(); socket.ondisconnect(true, 4000, "no answer"); };
  return socket;
}

const phone = { ua: null, socket: null, account: null, session: null, state: "off", media: "idle",
                last: null, probeTimer: 0, statsTimer: 0, muted: false, held: false, host: "",
                drops: 0, probes: 0 };  // connections dropped for want of an answer; checks answered

function setReg(state, detail = "") {
  phone.state = state;
  const el = $("#webphone-reg");
  el.dataset.state = state;
  el.textContent = REG_TEXT[state] + (detail ? `（${detail}）` : "");
}

function setMedia(state, detail = "") {
  phone.media = state;
  const el = $("#webphone-media");
  el.dataset.state = state;
  el.textContent = `媒体：${MEDIA_TEXT[state]}${detail ? " · " + detail : ""}`;
  const inCall = phone.session !== null;
  $("#webphone-answer").hidden = !(phone.session && phone.session.direction === "incoming" && state === "ringing");
  for (const id of ["#webphone-hangup", "#webphone-mute", "#webphone-hold"]) $(id).disabled = !inCall;
  $("#webphone-keypad").hidden = !(inCall && state !== "ringing");
}

// ---- registration ---------------------------------------------------------------------------
function start(account) {
  const url = new URL(account.ws_url);
  phone.host = url.hostname;
  phone.socket = checkedSocket(account.ws_url);
  phone.ua = new window.JsSIP.UA({
    sockets: [phone.socket], uri: `sip:${account.endpoint}@${phone.host}`, authorization_user: account.endpoint,
    password: account.password, display_name: account.extension, register: true, register_expires: 120,
    session_timers: false, user_agent: "12345-console",
    connection_recovery_min_interval: 2, connection_recovery_max_interval: 8,
  });
  const ua = phone.ua;
  // reconnecting after a loss keeps saying "not registered" until Asterisk confirms again
  ua.on("connecting", () => { if (phone.state === "off" || phone.state === "failed") setReg("connecting"); });
  ua.on("disconnected", () => setReg("unregistered"));
  ua.on("registered", () => setReg("registered"));
  ua.on("unregistered", () => setReg(ua.isConnected() ? "failed" : "unregistered", ua.isConnected() ? "已注销" : ""));
  ua.on("registrationFailed", (e) => setReg(ua.isConnected() ? "failed" : "unregistered", failure(e.cause)));
  ua.on("newRTCSession", onSession);
  setReg("connecting");
  ua.start();
  phone.probeTimer = setInterval(probe, PROBE_EVERY_MS);
  window.addEventListener("offline", () => { if (phone.socket.isConnected()) phone.socket.drop("offline"); });
}

function failure(cause) {
  const words = { "Authentication Error": "账号或密码被拒绝，请联系管理员", "Connection Error": "无法连接电话服务器",
                  "Request Timeout": "电话服务器无应答" };
  return words[cause] || cause || "";
}

// A registration is only as good as the connection under it: ask the server something every few
// seconds; no answer in time means the network is gone even if the socket still looks open.
function probe() {
  const ua = phone.ua;
  if (!ua.isConnected()) return;
  let answered = false;
  const timer = setTimeout(() => { if (!answered && ua.isConnected()) phone.socket.drop("no answer to OPTIONS"); }, PROBE_WAIT_MS);
  const done = () => { answered = true; phone.probes += 1; clearTimeout(timer); };
  // any reply, even a refusal, proves the path works; only silence counts against it
  ua.sendOptions(`sip:${phone.host}`, null, { eventHandlers: { succeeded: done, failed: (e) => {
    if (e.originator === "remote") done();
  } } });
}

// ---- calls --------------------------------------------------------------------------------
function onSession({ session, originator }) {
  if (originator !== "remote") return;
  if (phone.session) { session.terminate({ status_code: 486, reason_phrase: "Busy Here" }); return; }
  phone.session = session;
  phone.muted = phone.held = false;
  const who = session.remote_identity;
  $("#webphone-peer").textContent = `来电：${who.display_name || ""} ${who.uri.user || ""}`.trim();
  session.on("peerconnection", (e) => watchMedia(e.peerconnection));
  session.on("accepted", () => setMedia("connecting"));
  session.on("hold", () => { phone.held = true; showToggles(); });
  session.on("unhold", () => { phone.held = false; showToggles(); });
  session.on("muted", () => { phone.muted = true; showToggles(); });
  session.on("unmuted", () => { phone.muted = false; showToggles(); });
  session.on("ended", () => ended("通话已结束"));
  session.on("failed", (e) => ended(e.originator === "remote" ? "对方已挂断" : `未接通（${e.cause}）`));
  setMedia("ringing");
  showToggles();
  if ($("#webphone-auto").checked) answer();
}

async function answer() {
  const session = phone.session;
  if (!session || session.isEstablished()) return;
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: micConstraint(), video: false });
  } catch (err) {
    $("#webphone-peer").textContent = `无法使用麦克风（${err.name}）：请在浏览器地址栏允许本页使用麦克风`;
    return;
  }
  if (phone.session !== session) { stream.getTracks().forEach((t) => t.stop()); return; }
  session.answer({ mediaStream: stream, pcConfig: { iceServers: [] } });
  if (phone.session.connection) watchMedia(phone.session.connection);
  loadDevices();  // device names are readable once the microphone is allowed
}

function ended(text) {
  clearInterval(phone.statsTimer);
  const session = phone.session;
  if (session && session.connection) {
    for (const s of session.connection.getSenders()) if (s.track) s.track.stop();
  }
  phone.session = null;
  phone.last = null;
  $("#webphone-peer").textContent = text;
  $("#webphone-audio").srcObject = null;
  setMedia("idle");
  showToggles();
}

function watchMedia(pc) {
  if (pc.watched) return;
  pc.watched = true;
  pc.addEventListener("track", (ev) => {
    const audio = $("#webphone-audio");
    audio.srcObject = ev.streams[0] || new MediaStream([ev.track]);
    audio.play().catch(() => { /* autoplay refused: the answer click usually allows it */ });
  });
  pc.addEventListener("connectionstatechange", () => { if (pc.connectionState === "failed") setMedia("failed", "网络不通（ICE/DTLS）"); });
  clearInterval(phone.statsTimer);
  phone.statsTimer = setInterval(() => sample(pc), STATS_EVERY_MS);
}

// RTP counters of the call, as the browser's WebRTC stack reports them
async function sample(pc) {
  if (!phone.session || pc.connectionState === "closed") return;
  let got = 0, sent = 0;
  (await pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "audio") got += r.packetsReceived || 0;
    if (r.type === "outbound-rtp" && r.kind === "audio") sent += r.packetsSent || 0;
  });
  const el = $("#webphone-media");
  el.dataset.received = got;
  el.dataset.sent = sent;
  const before = phone.last;
  phone.last = { got, sent };
  if (!before || pc.connectionState === "failed") return;
  const counts = `收 ${got} 包 / 发 ${sent} 包`;
  const inFlow = got > before.got, outFlow = sent > before.sent;
  if (phone.held) setMedia("held", counts);
  else if (inFlow && outFlow) setMedia("flowing", counts);
  else if (outFlow) setMedia("one-way-in", counts);
  else if (inFlow) setMedia(phone.muted ? "flowing" : "one-way-out", phone.muted ? counts + " · 已静音" : counts);
  else if (pc.connectionState === "connected") setMedia("silent", counts);
}

function showToggles() {
  $("#webphone-mute").textContent = phone.muted ? "取消静音" : "静音";
  $("#webphone-hold").textContent = phone.held ? "恢复通话" : "保持";
}

// ---- audio devices ----------------------------------------------------------------------------
function micConstraint() {
  const id = prefs.getItem("phone.mic");
  return id ? { deviceId: { exact: id } } : true;
}

async function loadDevices() {
  let devices = [];
  try { devices = await navigator.mediaDevices.enumerateDevices(); } catch { return; }
  for (const [kind, name, select] of [["audioinput", "phone.mic", "#webphone-mic"], ["audiooutput", "phone.speaker", "#webphone-speaker"]]) {
    const el = $(select);
    const mine = devices.filter((d) => d.kind === kind);
    el.replaceChildren(h("option", { value: "" }, "系统默认"),
      ...mine.filter((d) => d.deviceId && d.deviceId !== "default")
        .map((d, i) => h("option", { value: d.deviceId }, d.label || `设备 ${i + 1}（允许麦克风后显示名称）`)));
    el.value = mine.some((d) => d.deviceId === prefs.getItem(name)) ? prefs.getItem(name) : "";
  }
  $("#webphone-speaker").disabled = !("setSinkId" in HTMLMediaElement.prototype);
}

async function useSpeaker() {
  const id = prefs.getItem("phone.speaker") || "";
  const audio = $("#webphone-audio");
  if (audio.setSinkId) await audio.setSinkId(id).catch(() => {});
}

// Microphone level and a short tone on the chosen speaker: the operator hears and sees that both work.
async function testDevices() {
  const meter = $("#webphone-level");
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: micConstraint(), video: false });
  } catch (err) {
    meter.title = `无法使用麦克风（${err.name}）`;
    $("#webphone-test-result").textContent = meter.title;
    return;
  }
  loadDevices();
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  ctx.createMediaStreamSource(stream).connect(analyser);
  const tone = ctx.createOscillator();
  const out = ctx.createMediaStreamDestination();
  tone.frequency.value = 440;
  tone.connect(out);
  const player = new Audio();
  player.srcObject = out.stream;
  const speaker = prefs.getItem("phone.speaker");
  if (speaker && player.setSinkId) await player.setSinkId(speaker).catch(() => {});
  tone.start();
  player.play().catch(() => {});
  const data = new Uint8Array(analyser.fftSize);
  let peak = 0;
  const began = performance.now();
  await new Promise((resolve) => {
    const step = () => {
      analyser.getByteTimeDomainData(data);
      const level = Math.max(...data.map((v) => Math.abs(v - 128))) / 128;
      peak = Math.max(peak, level);
      meter.value = level;
      if (performance.now() - began < 1500) requestAnimationFrame(step); else resolve();
    };
    requestAnimationFrame(step);
  });
  tone.stop();
  stream.getTracks().forEach((t) => t.stop());
  ctx.close();
  $("#webphone-test-result").textContent = peak > 0.01 ? "麦克风有声音输入；扬声器应听到一声提示音。" : "麦克风没有声音：请检查设备或换一个麦克风。";
}

// ---- panel ----------------------------------------------------------------------------------
function wireButtons() {
  $("#webphone-answer").addEventListener("click", answer);
  $("#webphone-hangup").addEventListener("click", () => phone.session && phone.session.terminate());
  $("#webphone-mute").addEventListener("click", () => {
    if (!phone.session) return;
    if (phone.muted) phone.session.unmute({ audio: true }); else phone.session.mute({ audio: true });
  });
  $("#webphone-hold").addEventListener("click", () => {
    if (!phone.session) return;
    if (phone.held) phone.session.unhold(); else phone.session.hold();
  });
  for (const key of $("#webphone-keypad").querySelectorAll("button")) {
    key.addEventListener("click", () => phone.session && phone.session.sendDTMF(key.textContent, { transportType: "RFC2833" }));
  }
  const auto = $("#webphone-auto");
  auto.checked = prefs.getItem("phone.auto") === "1";
  auto.addEventListener("change", () => prefs.setItem("phone.auto", auto.checked ? "1" : "0"));
  $("#webphone-mic").addEventListener("change", (e) => prefs.setItem("phone.mic", e.target.value));
  $("#webphone-speaker").addEventListener("change", (e) => { prefs.setItem("phone.speaker", e.target.value); useSpeaker(); });
  $("#webphone-test").addEventListener("click", testDevices);
}

async function initPhone() {
  const box = $("#webphone");
  let account;
  try {
    account = await get("/operators/me/phone");
  } catch (err) {
    const note = $("#webphone-softphone");
    note.hidden = false;
    note.textContent = err.status === 403 ? "您的账号未配置坐席分机，网页电话不可用。" : `网页电话不可用：${explain(err)}`;
    $("#webphone-controls").hidden = true;
    return;
  }
  phone.account = account;
  if (account.phone !== "browser") {
    $("#webphone-softphone").hidden = false;
    $("#webphone-softphone").textContent = `您使用外接软电话接听：SIP 账号 ${account.endpoint}（分机 ${account.extension}），由管理员配置。`;
    $("#webphone-controls").hidden = true;
    box.dataset.mode = "softphone";
    return;
  }
  box.dataset.mode = "browser";
  if (!window.JsSIP) {
    $(".error", box).hidden = false;
    $(".error", box).textContent = "网页电话组件未安装（管理员运行 scripts/setup）；请暂用外接软电话。";
    return;
  }
  wireButtons();
  setMedia("idle");
  showToggles();
  loadDevices();
  useSpeaker();
  start(account);
}

document.addEventListener("console:ready", () => { initPhone(); }, { once: true });
window.webphone = phone;  // tests and the browser's console read the live state from here
