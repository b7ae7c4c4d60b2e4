// bee chat: a multi-turn client of /v1/chat/completions (SSE) and /v1/feedback.
"use strict";

const T = {
  zh: {
    new: "新对话", send: "发送", stop: "停止", regen: "重新生成", maxTokens: "最大长度", key: "密钥",
    placeholder: "输入消息，Ctrl+Enter 发送", correction: "写下更好的回答（可选）", sendCorr: "提交修改",
    thanks: "已记录，谢谢", fbOff: "服务器未开启反馈存储", fbFail: "反馈提交失败",
    blockedPrompt: "这条消息被内容安全策略拦截，未发送给模型。", blockedReply: "回答因内容安全策略被中止。",
    stopped: "已停止", error: "出错了：", auth: "需要 API 密钥（填在下方“密钥”里）",
  },
  en: {
    new: "New chat", send: "Send", stop: "Stop", regen: "Regenerate", maxTokens: "Max tokens", key: "API key",
    placeholder: "Type a message, Ctrl+Enter to send", correction: "Write a better answer (optional)",
    sendCorr: "Send correction", thanks: "Recorded, thank you", fbOff: "The server has no feedback store",
    fbFail: "Feedback failed", blockedPrompt: "This message was blocked by the content policy and not sent to the model.",
    blockedReply: "The reply was stopped by the content policy.", stopped: "Stopped", error: "Error: ",
    auth: "An API key is needed (enter it under \u201cAPI key\u201d)",
  },
};

const $ = (id) => document.getElementById(id);
let lang = localStorage.getItem("bee.lang") || (navigator.language.startsWith("zh") ? "zh" : "en");
let turns = [];        // {role, content, el, id}
let ctrl = null;       // AbortController of the running request

function t(k) { return T[lang][k]; }

function applyLang() {
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-i18n]").forEach((e) => { e.textContent = t(e.dataset.i18n); });
  $("input").placeholder = t("placeholder");
  $("lang").textContent = lang === "zh" ? "EN" : "中文";
  document.querySelectorAll(".corr textarea").forEach((e) => { e.placeholder = t("correction"); });
  document.querySelectorAll(".sendcorr").forEach((e) => { e.textContent = t("sendCorr"); });
}

function notice(text) {
  const n = $("notice");
  n.textContent = text || "";
  n.hidden = !text;
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const k = $("key").value.trim();
  if (k) h.Authorization = "Bearer " + k;
  return h;
}

function bubble(role, text) {
  const el = $("tpl-msg").content.firstElementChild.cloneNode(true);
  el.classList.add(role);
  el.querySelector(".text").textContent = text;
  $("log").appendChild(el);
  el.scrollIntoView({ block: "end" });
  return el;
}

function flag(el, text) {
  const f = document.createElement("span");
  f.className = "flag";
  f.textContent = text;
  el.appendChild(f);
}

async function postFeedback(turn, rating, correction, state) {
  const body = { response_id: turn.id, rating };
  if (correction) body.correction = correction;
  try {
    const r = await fetch("/v1/feedback", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    if (r.ok) {
      state.textContent = t("thanks");
      return true;
    }
    const e = (await r.json().catch(() => ({}))).error || {};
    const off = r.status === 404 && !e.param; // 404 without a param: the server has no store
    state.textContent = off ? t("fbOff") : t("fbFail") + " (" + r.status + ")";
    return false;
  } catch (e) {
    state.textContent = t("fbFail");
    return false;
  }
}

function feedbackTools(turn) {
  const tools = turn.el.querySelector(".tools");
  const state = tools.querySelector(".fbstate"), corr = tools.querySelector(".corr");
  corr.querySelector("textarea").placeholder = t("correction");
  corr.querySelector(".sendcorr").textContent = t("sendCorr");
  const up = tools.querySelector(".up"), down = tools.querySelector(".down");
  // The latest rating is the one that counts (the store keeps every row), so one button shows as chosen.
  const mark = (b) => { up.classList.toggle("on", b === up); down.classList.toggle("on", b === down); };
  tools.hidden = false;
  up.onclick = async () => { if (await postFeedback(turn, 1, null, state)) mark(up); };
  down.onclick = async () => {
    corr.hidden = false;
    if (await postFeedback(turn, -1, null, state)) mark(down);
  };
  corr.querySelector(".sendcorr").onclick = () => postFeedback(turn, -1, corr.querySelector("textarea").value.trim(), state);
}

function busy(on) {
  $("send").disabled = on;
  $("stop").disabled = !on;
  $("regen").disabled = on || !turns.some((x) => x.role === "assistant");
}

// Reads an SSE body, calling onEvent for each JSON event until [DONE].
async function readSSE(resp, onEvent) {
  const reader = resp.body.getReader(), dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!ev.startsWith("data: ")) continue;
      const data = ev.slice(6);
      if (data === "[DONE]") return;
      onEvent(JSON.parse(data));
    }
  }
}

async function generate() {
  const messages = turns.filter((x) => !x.blocked).map((x) => ({ role: x.role, content: x.content }));
  const turn = { role: "assistant", content: "", el: bubble("assistant", ""), id: null };
  turn.el.classList.add("streaming");
  turns.push(turn);
  ctrl = new AbortController();
  busy(true);
  notice("");
  let finish = null, stopped = false;
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), signal: ctrl.signal,
      body: JSON.stringify({ messages, stream: true, max_tokens: Number($("max").value) || 256 }),
    });
    if (!r.ok) {
      const e = (await r.json().catch(() => ({}))).error || {};
      turns.pop();
      turn.el.remove();
      const user = turns[turns.length - 1];
      if (e.type === "content_filter" && user && user.role === "user") {
        user.blocked = true;
        user.el.classList.add("blocked");
        flag(user.el, t("blockedPrompt"));
        notice(t("blockedPrompt"));
      } else {
        notice(r.status === 401 ? t("auth") : t("error") + (e.message || r.status));
      }
      return;
    }
    const text = turn.el.querySelector(".text");
    await readSSE(r, (ev) => {
      if (ev.error) throw new Error(ev.error.message);
      turn.id = turn.id || ev.id;
      const ch = (ev.choices || [])[0];
      if (!ch) return;
      if (ch.delta && ch.delta.content) {
        turn.content += ch.delta.content;
        text.textContent = turn.content;
        turn.el.scrollIntoView({ block: "end" });
      }
      if (ch.finish_reason) finish = ch.finish_reason;
    });
    if (finish === "content_filter") {
      turn.el.classList.add("blocked");
      flag(turn.el, t("blockedReply"));
      notice(t("blockedReply"));
    }
  } catch (e) {
    stopped = e.name === "AbortError";
    if (stopped) flag(turn.el, t("stopped"));
    else notice(t("error") + e.message);
  } finally {
    turn.el.classList.remove("streaming");
    if (turn.id && turns.includes(turn) && !stopped) feedbackTools(turn); // a stopped reply is not stored
    ctrl = null;
    busy(false);
  }
}

function send(ev) {
  ev.preventDefault();
  const text = $("input").value.trim();
  if (!text || ctrl) return;
  $("input").value = "";
  turns.push({ role: "user", content: text, el: bubble("user", text) });
  generate();
}

function regenerate() {
  if (ctrl) return;
  const last = turns[turns.length - 1];
  if (!last || last.role !== "assistant") return;
  turns.pop();
  last.el.remove();
  generate();
}

function init() {
  applyLang();
  $("form").addEventListener("submit", send);
  $("input").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) send(e); });
  $("stop").onclick = () => { if (ctrl) ctrl.abort(); };
  $("regen").onclick = regenerate;
  $("new").onclick = () => { if (ctrl) ctrl.abort(); turns = []; $("log").textContent = ""; notice(""); busy(false); };
  $("lang").onclick = () => { lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("bee.lang", lang); applyLang(); };
  $("key").value = sessionStorage.getItem("bee.key") || "";
  $("key").onchange = () => sessionStorage.setItem("bee.key", $("key").value);
  fetch("/v1/models", { headers: headers() }).then((r) => r.json()).then((j) => {
    $("model").textContent = j.data && j.data[0] ? j.data[0].id : "";
  }).catch(() => {});
  busy(false);
}

document.addEventListener("DOMContentLoaded", init);
