// Hot topics on the back-office page (R7.6, issue 13 item 6): the period's topics (category, words,
// street) with counts and the trend against the period before, the week unless dates are given;
// the back office publishes a topic's public answer for /public and withdraws it. What a topic is
// and what may be published: the API's (ticketing/hot_topics.py).
import { $, actionForm, clearError, fmt, get, h, onBack, post, showError } from "./console.js";

const TREND = { new: "新出现", up: "上升", down: "下降", same: "持平" };
const hot = { canAct: false, asked: {} };

function publishForm(t) {
  const form = actionForm({
    title: "发布热点解答（R7.6：公开发布，不得含个人信息）",
    fields: [
      { name: "title", label: "标题", type: "text", required: true, value: `关于${t.place}${t.term}问题的解答` },
      { name: "answer", label: "解答", type: "textarea", rows: 3, required: true }],
    submit: "发布",
    onSubmit: async (v) => {
      await post("/hot-topics/answers", { category_code: t.category_code, term: t.term, place: t.place,
        since: hot.asked.since || null, until: hot.asked.until || null, title: v.title, answer: v.answer });
      setTimeout(loadHot, 0);
      return "已发布到公开页面";
    } });
  form.classList.add("hot-answer");
  return form;
}

function topicItem(t) {
  const card = h("div", { class: "case-card hot-topic", dataset: { topic: `${t.category_code}/${t.term}/${t.place}` } },
    h("h3", {}, [t.category_name, t.place, t.term || "（无关键词）"].filter(Boolean).join(" · ")),
    h("p", { class: "meta" }, `本期 ${t.count} 件 · 上期 ${t.previous} 件 · `,
      h("span", { class: `trend ${t.trend}` }, TREND[t.trend] || t.trend), t.answer_id ? " · 已发布解答" : ""),
    h("p", { class: "terms" }, "关键词：", t.terms.join("、")),
    h("p", { class: "meta" }, "诉求件：", t.case_numbers.join("、")));
  return h("div", { class: "item", dataset: { key: card.dataset.topic } }, card,
    hot.canAct ? h("div", { class: "forms" }, publishForm(t)) : null);
}

function answerItem(a) {
  const withdraw = hot.canAct ? h("button", { type: "button", class: "secondary", onclick: async () => {
    try { await post(`/hot-topics/answers/${a.id}/withdraw`); loadHot(); } catch (err) { showError($(".error", $("#hot-topics")), err); }
  } }, "撤回") : null;
  return h("div", { class: "item hot-answer-item", dataset: { answer: a.id } },
    h("h4", {}, a.title), h("p", { class: "meta" },
      `${a.category_name}${a.place ? " · " + a.place : ""} · 相关诉求 ${a.cases} 件 · 发布 ${fmt(a.published_at)}`),
    h("p", {}, a.answer), withdraw);
}

async function loadHot() {
  const box = $("#hot-topics");
  const error = $(".error", box);
  clearError(error);
  const q = new URLSearchParams(Object.entries(hot.asked).filter(([, v]) => v));
  try {
    const [body, answers] = await Promise.all([get(`/hot-topics${q.toString() ? "?" + q : ""}`), get("/hot-topics/answers")]);
    $(".period", box).textContent = `${fmt(body.since)} 至 ${fmt(body.until)}，与此前同等时长（自 ${fmt(body.previous_since)}）相比`;
    $(".count", box).textContent = `（${body.topics.length}）`;
    $(".items", box).replaceChildren(...(body.topics.length ? body.topics.map(topicItem) : [h("p", { class: "empty" }, "暂无热点。")]));
    $(".answers", box).replaceChildren(...(answers.length ? answers.map(answerItem) : [h("p", { class: "empty" }, "暂无。")]));
    box.dataset.loads = String(Number(box.dataset.loads || 0) + 1);
  } catch (err) { showError(error, err); }
}

onBack(async (me) => {
  hot.canAct = me.role === "back_office";
  const form = $("#hot-topics .hot-period");
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    hot.asked = { since: form.since.value, until: form.until.value };
    loadHot();
  });
  await loadHot();
});
