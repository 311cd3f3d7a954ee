// The chat page: one conversation, sent to one generator or to both side by side.
// Side by side, every user message goes to both generators; each column keeps its own
// history (the user's turns plus that generator's replies), so each generator continues
// the same conversation in its own way.
"use strict";

const GENERATORS = ["pretrained", "adversarial"];
const OPTION_FIELDS = ["temperature", "top_p", "top_k", "num_beams", "max_len"];
const INTEGER_FIELDS = new Set(["top_k", "num_beams", "max_len"]);

const state = {
  info: null,
  available: new Set(),
  history: { pretrained: [], adversarial: [] },
  busy: false,
};

const $ = (id) => document.getElementById(id);
const column = (g) => document.querySelector(`.column[data-generator="${g}"]`);

function activeGenerators() {
  const both = $("side-by-side").checked;
  const chosen = $("generator").value;
  return GENERATORS.filter((g) => state.available.has(g) && (both || g === chosen));
}

function layout() {
  const both = $("side-by-side").checked;
  $("generator-label").hidden = both;
  const active = new Set(activeGenerators());
  for (const g of GENERATORS) {
    // side by side shows an unavailable generator too, with the reason
    column(g).hidden = !(active.has(g) || (both && !state.available.has(g)));
  }
}

function addMessage(g, kind, text, meta) {
  const li = document.createElement("li");
  li.className = `msg ${kind}`;
  const span = document.createElement("span");
  span.className = "text";
  span.textContent = text;
  li.appendChild(span);
  if (meta) {
    const m = document.createElement("span");
    m.className = "meta";
    m.textContent = meta;
    li.appendChild(m);
  }
  const log = column(g).querySelector(".log");
  log.appendChild(li);
  log.scrollTop = log.scrollHeight;
  return li;
}

function samplingOptions() {
  const opts = {};
  const strategy = $("strategy").value;
  if (strategy) opts.strategy = strategy;
  for (const name of OPTION_FIELDS) {
    const raw = $(name).value.trim();
    if (raw === "") continue;
    const value = Number(raw);
    // a value that is not a number is sent as text: the server explains what it expects
    opts[name] = Number.isFinite(value) && (!INTEGER_FIELDS.has(name) || Number.isInteger(value)) ? value : raw;
  }
  return opts;
}

function fitContext(turns) {
  // the most recent turns within the server's limits, counted in characters as the server counts
  // them (code points: an emoji is one, though two UTF-16 units, and is never cut in half)
  const limits = state.info ? state.info.limits
    : { max_context_turns: 32, max_context_chars: 4000, max_turn_chars: 4000 };
  const out = [];
  let chars = 0;
  for (let i = turns.length - 1; i >= 0; i--) {
    const n = Array.from(turns[i]).length;
    if (out.length >= limits.max_context_turns || chars + n > limits.max_context_chars
        || n > limits.max_turn_chars) break;
    out.unshift(turns[i]);
    chars += n;
  }
  const keep = Math.min(limits.max_context_chars, limits.max_turn_chars);
  return out.length ? out : [Array.from(turns[turns.length - 1]).slice(-keep).join("")];
}

async function ask(g, text, opts) {
  const history = state.history[g];
  history.push(text);
  addMessage(g, "user", text);
  const pending = addMessage(g, "bot pending", "…");
  try {
    const res = await fetch("/v1/respond", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ context: fitContext(history), generator: g, ...opts }),
    });
    let body = null;
    try {
      body = await res.json();
    } catch {
      body = { error: `HTTP ${res.status}` };
    }
    pending.remove();
    if (!res.ok) {
      history.pop();
      addMessage(g, "error", body.error || `HTTP ${res.status}`);
      return;
    }
    history.push(body.response);
    addMessage(g, "bot", body.response || "(empty response)",
      `${body.tokens} tokens · ${Math.round(body.latency_ms)} ms · batch of ${body.batch_size}`);
  } catch (err) {
    pending.remove();
    history.pop();
    addMessage(g, "error", `the server did not answer (${err.message})`);
  }
}

async function send(event) {
  event.preventDefault();
  const text = $("message").value.trim();
  const targets = activeGenerators();
  if (!text || state.busy || targets.length === 0) return;
  state.busy = true;
  $("send").disabled = true;
  $("reset").disabled = true; // a reply still on its way belongs to this conversation
  $("message").value = "";
  $("status").textContent = "thinking…";
  const opts = samplingOptions();
  await Promise.all(targets.map((g) => ask(g, text, opts)));
  state.busy = false;
  $("send").disabled = false;
  $("reset").disabled = false;
  $("status").textContent = "";
  $("message").focus();
}

function reset() {
  if (state.busy) return;
  for (const g of GENERATORS) {
    state.history[g] = [];
    column(g).querySelector(".log").replaceChildren();
  }
  $("message").focus();
}

async function loadInfo() {
  try {
    const res = await fetch("/v1/info");
    state.info = await res.json();
  } catch (err) {
    $("run").textContent = `cannot reach the server (${err.message})`;
    return;
  }
  const info = state.info;
  $("run").textContent = `run ${info.run} · seqgan ${info.version}`;
  for (const g of GENERATORS) {
    const gen = info.generators[g];
    const col = column(g);
    if (gen && gen.available) {
      state.available.add(g);
      col.querySelector(".note").textContent = "";
    } else {
      col.classList.add("unavailable");
      col.querySelector(".note").textContent = "(not available)";
      const reason = gen ? gen.reason : "not available";
      addMessage(g, "error", reason);
      $("generator").querySelector(`option[value="${g}"]`).disabled = true;
      $("notice").textContent = `The ${g} generator is not available: ${reason}`;
    }
  }
  if (state.available.size < 2) {
    $("side-by-side").checked = false;
    $("side-by-side").disabled = true;
    $("generator").value = [...state.available][0] || "pretrained";
  }
  const d = info.sampling_defaults;
  for (const name of OPTION_FIELDS) $(name).placeholder = String(d[name]);
  $("max_len").max = String(info.limits.max_len);
  $("strategy").querySelector('option[value=""]').textContent = `(default: ${d.strategy})`;
  layout();
  $("send").disabled = false;
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", () => {
  $("send").disabled = true;
  $("composer").addEventListener("submit", send);
  $("message").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("side-by-side").addEventListener("change", layout);
  $("generator").addEventListener("change", layout);
  $("reset").addEventListener("click", reset);
  loadInfo();
});
