// thinktune's labelling page. Plain JS, no build step, no network but this server.
// Model text is shown with textContent only: completions are model output and may contain markup.
// A label is kept in localStorage until the server acknowledged it, and re-sent with the same id until it does,
// so a reload, a lost answer or a restarted server never loses or duplicates it.
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || "";
  const NAME = /^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,39}$/;
  const $ = (id) => document.getElementById(id);
  const state = {annotator: null, item: null, shownAt: 0, verdictSeen: false, order: [], picked: [],
                 ranked: false, busy: false};

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function status(text, kind) {
    const s = $("status");
    s.textContent = text || "";
    s.className = "status" + (kind ? " " + kind : "");
  }

  function newId() {  // crypto.randomUUID needs a secure context; getRandomValues does not
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  async function call(method, path, body) {
    const r = await fetch(path, {method, cache: "no-store", headers: {"Content-Type": "application/json",
      "X-Label-Token": token}, body: body === undefined ? undefined : JSON.stringify(body)});
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    return {status: r.status, ok: r.ok, data};
  }

  // POST until the server answers; network errors and 5xx are retried (the label id makes retries safe)
  async function persist(path, body, what) {
    for (let attempt = 0; ; attempt++) {
      let r = null;
      try { r = await call("POST", path, body); } catch (e) { r = null; }
      if (r && (r.ok || (r.status >= 400 && r.status < 500))) {
        if (attempt > 0) status("");
        return r;
      }
      status("Saving " + what + "… the server is not answering, retrying (nothing is lost)", "warn");
      await sleep(Math.min(2000, 150 * 2 ** attempt));
    }
  }

  const pendingKey = () => "thinktune-pending:" + token.slice(0, 12) + ":" + state.annotator;

  async function flushPending() {
    const raw = localStorage.getItem(pendingKey());
    if (!raw) return;
    const label = JSON.parse(raw);
    const r = await persist("/api/label", label, "your last label");
    localStorage.removeItem(pendingKey());
    if (r.ok) showProgress(r.data.progress);
  }

  function showProgress(p) {
    if (!p) return;
    $("progress").textContent = "You: " + p.mine + " labelled · everyone: " + p.judgements_done + " / " +
      p.judgements_needed + " judgements on " + p.items + " items";
    $("progress-bar").max = Math.max(1, p.judgements_needed);
    $("progress-bar").value = p.judgements_done;
  }

  function candidateCard(c, k) {
    const card = el("article", "cand");
    card.dataset.slot = c.slot;
    const head = el("h3", null);
    head.append(el("span", "slot", c.slot), el("span", "rankpos", ""));
    card.append(head);
    const answer = el("div", "answer");
    answer.append(el("span", "lbl", "Answer"), el("output", null, c.answer === null ? "(no answer block)" : c.answer));
    card.append(answer);
    const det = el("details", "reasoning");
    const text = c.reasoning !== null ? c.reasoning : c.raw;
    const lines = text ? text.split("\n").filter((x) => x.trim()).length : 0;
    det.append(el("summary", null, (c.reasoning !== null ? "Reasoning" : "Full text (no reasoning block)") +
      " · " + lines + " line" + (lines === 1 ? "" : "s")));
    det.append(el("pre", null, text));
    if (!c.well_formed) det.append(el("p", "note", "Not in the expected <think>…</think><answer>…</answer> layout."));
    card.append(det);
    card.append(el("div", "verdict", ""));
    if (k > 2) {
      card.draggable = true;
      const moves = el("div", "moves");
      const up = el("button", "quiet", "↑");
      up.type = "button"; up.title = "move up"; up.setAttribute("aria-label", "move " + c.slot + " up");
      up.addEventListener("click", () => move(c.slot, -1));
      const down = el("button", "quiet", "↓");
      down.type = "button"; down.title = "move down"; down.setAttribute("aria-label", "move " + c.slot + " down");
      down.addEventListener("click", () => move(c.slot, +1));
      moves.append(up, down);
      card.append(moves);
      card.addEventListener("dragstart", (e) => { e.dataTransfer.setData("text/plain", c.slot); });
      card.addEventListener("dragover", (e) => e.preventDefault());
      card.addEventListener("drop", (e) => {
        e.preventDefault();
        const from = e.dataTransfer.getData("text/plain");
        if (from && from !== c.slot) placeBefore(from, c.slot);
      });
    }
    return card;
  }

  function renderOrder() {
    const box = $("cands");
    const cards = Object.fromEntries(Array.from(box.children).map((x) => [x.dataset.slot, x]));
    state.order.forEach((slot, i) => {
      box.append(cards[slot]);
      if (state.item.k > 2) cards[slot].querySelector(".rankpos").textContent = state.ranked ? " · #" + (i + 1) : "";
    });
    $("ranking").textContent = state.ranked ? "Your ranking: " + state.order.join(" > ") : "";
  }

  function placeBefore(slot, target) {
    const order = state.order.filter((s) => s !== slot);
    order.splice(order.indexOf(target), 0, slot);
    state.order = order; state.ranked = true; state.picked = [];
    renderOrder();
  }

  function move(slot, delta) {
    const i = state.order.indexOf(slot), j = i + delta;
    if (j < 0 || j >= state.order.length) return;
    [state.order[i], state.order[j]] = [state.order[j], state.order[i]];
    state.ranked = true; state.picked = [];
    renderOrder();
  }

  function pickLetter(slot) {  // keyboard ranking: letters in order of preference
    if (state.picked.includes(slot)) return;
    state.picked.push(slot);
    const rest = state.order.filter((s) => !state.picked.includes(s));
    state.order = state.picked.concat(rest);
    state.ranked = state.picked.length >= state.item.k - 1;
    renderOrder();
    if (!state.ranked) $("ranking").textContent = "Picked so far: " + state.picked.join(" > ");
  }

  function undoPick() {
    state.picked.pop();
    state.ranked = false;
    renderOrder();
    $("ranking").textContent = state.picked.length ? "Picked so far: " + state.picked.join(" > ") : "";
  }

  function show(item) {
    state.item = item; state.verdictSeen = false; state.picked = []; state.ranked = false;
    $("reason").value = "";
    if (!item) {
      $("work").hidden = true; $("done").hidden = false;
      return;
    }
    $("done").hidden = true; $("work").hidden = false;
    $("question").textContent = item.question;
    const box = $("cands");
    box.replaceChildren(...item.candidates.map((c) => candidateCard(c, item.k)));
    box.classList.toggle("ranked", item.k > 2);
    document.body.classList.toggle("rank-mode", item.k > 2);
    $("rank-help").hidden = item.k <= 2;
    state.order = item.candidates.map((c) => c.slot);
    renderOrder();
    $("reveal").hidden = !item.has_verdict;
    $("reveal").disabled = false;
    state.shownAt = performance.now();
    window.scrollTo(0, 0);
  }

  async function next() {
    const r = await persist("/api/next", {annotator: state.annotator}, "your place");
    if (!r.ok) { status((r.data && r.data.error) || "error " + r.status, "error"); return; }
    showProgress(r.data.progress);
    show(r.data.item);
  }

  async function submit(choice) {
    if (state.busy || !state.item) return;
    if (choice === "rank" && !state.ranked) {
      status("Rank the answers first: drag them, or press their letters in order of preference", "warn");
      return;
    }
    state.busy = true;
    document.body.classList.add("saving");
    const label = {label_id: newId(), annotator: state.annotator, item: state.item.id, choice,
                   ranking: choice === "rank" ? state.order.slice() : null,
                   reason: $("reason").value.replace(/\s+/g, " ").trim(), verdict_seen: state.verdictSeen,
                   seconds: Math.round((performance.now() - state.shownAt) / 100) / 10};
    localStorage.setItem(pendingKey(), JSON.stringify(label));
    try {
      const r = await persist("/api/label", label, "your label");
      localStorage.removeItem(pendingKey());
      if (!r.ok && r.status !== 409) {
        status((r.data && r.data.error) || "error " + r.status, "error");
        return;
      }
      status(r.status === 409 ? "That item was already labelled; moving on" : "Saved", "ok");
      await next();
    } finally {
      state.busy = false;
      document.body.classList.remove("saving");
    }
  }

  async function reveal() {
    if (!state.item || !state.item.has_verdict) return;
    const r = await persist("/api/reveal", {annotator: state.annotator, item: state.item.id}, "the reveal");
    if (!r.ok) { status((r.data && r.data.error) || "error " + r.status, "error"); return; }
    state.verdictSeen = true;
    $("reveal").disabled = true;
    for (const card of $("cands").children) {
      const v = r.data.verdicts[card.dataset.slot];
      const box = card.querySelector(".verdict");
      box.textContent = v === true ? "verifier: correct ✓" : v === false ? "verifier: wrong ✗" : "verifier: no verdict";
      box.className = "verdict " + (v === true ? "right" : v === false ? "wrong" : "");
    }
  }

  function onKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const inField = e.target && (e.target.tagName === "INPUT" || e.target.tagName === "TEXTAREA");
    if (inField) {
      if (e.key === "Escape") e.target.blur();
      return;
    }
    if (!state.item || $("work").hidden) return;
    const key = e.key.toLowerCase();
    const k = state.item.k;
    let handled = true;
    if (k === 2 && (key === "a" || key === "1")) submit("A");
    else if (k === 2 && (key === "b" || key === "2")) submit("B");
    else if (k > 2 && key.length === 1 && key >= "a" && key < String.fromCharCode(97 + k)) pickLetter(key.toUpperCase());
    else if (k > 2 && e.key === "Enter") submit("rank");
    else if (k > 2 && e.key === "Backspace") undoPick();
    else if (key === "t") submit("tie");
    else if (key === "x") submit("both_bad");
    else if (key === "s") submit("skip");
    else if (key === "v") reveal();
    else if (key === "r") $("reason").focus();
    else if (key === "?") document.querySelector("details.keys").open ^= true;
    else handled = false;
    if (handled) e.preventDefault();
  }

  async function start(name) {
    state.annotator = name;
    localStorage.setItem("thinktune-annotator", name);
    params.set("annotator", name);
    history.replaceState(null, "", "?" + params.toString());
    $("login").hidden = true;
    $("who").textContent = "Annotator: " + name;
    await flushPending();
    await next();
  }

  async function init() {
    const s = await call("GET", "/api/session");
    if (!s.ok) { status("This page needs the link thinktune printed (with its token).", "error"); return; }
    if (s.data.guidelines) {
      $("guidelines").textContent = s.data.guidelines;
      $("guidelines-box").hidden = false;
    }
    document.querySelectorAll("#choices button").forEach((b) =>
      b.addEventListener("click", () => submit(b.dataset.choice)));
    $("reveal").addEventListener("click", reveal);
    document.addEventListener("keydown", onKey);
    $("switch").addEventListener("click", (e) => {
      e.preventDefault();
      localStorage.removeItem("thinktune-annotator");
      params.delete("annotator");
      location.search = "?" + params.toString();
    });
    $("login").addEventListener("submit", (e) => {
      e.preventDefault();
      const name = $("name").value.trim();
      if (!NAME.test(name)) { status("A name of 1-40 letters, digits, spaces, '.', '_' or '-'", "error"); return; }
      status("");
      start(name);
    });
    const name = params.get("annotator") || localStorage.getItem("thinktune-annotator");
    if (name && NAME.test(name)) start(name);
    else { $("login").hidden = false; $("name").focus(); }
  }

  document.addEventListener("DOMContentLoaded", init);
})();
