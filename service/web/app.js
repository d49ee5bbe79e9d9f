// The search page: talks only to the REST API (/health, /v1/ask, /v1/documents/{path}).
// All text from the API is inserted with textContent, never as HTML.
// Offsets from the API count Unicode code points (Python strings); JS strings count UTF-16 units,
// so text is sliced with Array.from (code points).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORAGE = "ask.apiKey";

  // -- API ------------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  async function api(path, options = {}) {
    const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (key) headers["Authorization"] = "Bearer " + key;
    let response;
    try {
      response = await fetch(path, Object.assign({}, options, { headers }));
    } catch (e) {
      throw new ApiError(0, "network", "The service cannot be reached.");
    }
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const err = (body && body.error) || {};
      if (response.status === 401) showKeyBanner();
      throw new ApiError(response.status, err.code || "http_" + response.status,
                         err.message || response.statusText || "request failed");
    }
    return body;
  }

  const docUrl = (source) => "/v1/documents/" + source.split("/").map(encodeURIComponent).join("/");

  // -- helpers --------------------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c != null) node.append(c);
    return node;
  }

  // text with the code-point range [a, b) wrapped in <mark>
  function highlighted(text, a, b) {
    const cps = Array.from(text);
    const frag = document.createDocumentFragment();
    a = Math.max(0, Math.min(a, cps.length));
    b = Math.max(a, Math.min(b, cps.length));
    if (b <= a) { frag.append(text); return frag; }
    frag.append(cps.slice(0, a).join(""));
    frag.append(el("mark", { text: cps.slice(a, b).join("") }));
    frag.append(cps.slice(b).join(""));
    return frag;
  }

  function show(id, on) { $(id).hidden = !on; }

  function showError(message) {
    $("error").textContent = message;
    show("error", Boolean(message));
  }

  function showKeyBanner() { show("key-banner", true); $("api-key").focus(); }

  // -- hash state: #q=...&doc=...&p=N&qs=..&qe=.. -------------------------------------------------------
  function readHash() { return new URLSearchParams(location.hash.replace(/^#/, "")); }
  function writeHash(params) {
    const s = params.toString();
    history.replaceState(null, "", s ? "#" + s : location.pathname);
  }

  // -- health ---------------------------------------------------------------------------------------
  async function loadStatus() {
    const status = $("status");
    try {
      const h = await api("/health");
      status.textContent = `${h.documents} documents · ${h.chunks} passages · ${h.model}`;
      status.className = "status ok";
    } catch (e) {
      status.textContent = e.status === 503 ? "no index yet" : "service unavailable";
      status.className = "status down";
    }
  }

  // -- ask ------------------------------------------------------------------------------------------
  async function ask(question, k) {
    showError("");
    show("empty", false);
    show("answer-card", false);
    show("citations-section", false);
    show("loading", true);
    $("ask-button").disabled = true;
    try {
      const result = await api("/v1/ask", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ question, k }),
      });
      renderAnswer(result);
    } catch (e) {
      showError(e.message);
      if (e.status !== 401) show("empty", true);
    } finally {
      show("loading", false);
      $("ask-button").disabled = false;
    }
  }

  function renderAnswer(result) {
    const card = $("answer-card");
    const abstained = result.answer === null;
    card.classList.toggle("abstain", abstained);
    $("answer-label").textContent = abstained ? "No confident answer" : "Answer";
    $("answer").textContent = abstained ? result.reason : result.answer;
    $("confidence").textContent = `confidence ${Number(result.confidence).toFixed(2)}`;
    const first = result.citations[0];
    $("answer-source").textContent = !abstained && first ? `— ${first.source} ¶${first.paragraph} [1]` : "";
    show("answer-card", true);

    const list = $("citations");
    list.replaceChildren();
    result.citations.forEach((c, i) => list.append(renderCitation(c, i + 1)));
    $("citations-label").textContent = abstained ? "Closest passages" : "Sources";
    show("citations-section", result.citations.length > 0);
  }

  function renderCitation(c, n) {
    const link = el("a", {
      class: "open-doc",
      href: "#" + new URLSearchParams({ doc: c.source, p: c.paragraph, qs: c.quote_start, qe: c.quote_end }),
      text: `Open ¶${c.paragraph} in the document →`,
    });
    link.addEventListener("click", (ev) => {
      ev.preventDefault();
      openDocument(c.source, c.paragraph, c.quote_start, c.quote_end);
      document.querySelectorAll(".citation.active").forEach((x) => x.classList.remove("active"));
      item.classList.add("active");
    });
    const text = el("p", { class: "cite-text" },
      highlighted(c.text, c.quote_start - c.char_start, c.quote_end - c.char_start));
    const item = el("li", { class: "citation", "data-source": c.source, "data-paragraph": c.paragraph },
      el("div", { class: "cite-head" },
        el("span", { class: "cite-num", text: String(n) }),
        el("span", { class: "cite-title", text: c.title || c.source }),
        el("span", { class: "cite-source mono", text: `${c.source} ¶${c.paragraph}` })),
      text,
      el("div", { class: "cite-foot" }, link, el("span", { class: "score", text: `score ${Number(c.score).toFixed(3)}` })));
    return item;
  }

  // -- document view --------------------------------------------------------------------------------
  async function openDocument(source, paragraph, quoteStart, quoteEnd) {
    const params = readHash();
    params.set("doc", source);
    params.set("p", paragraph);
    if (quoteStart != null) { params.set("qs", quoteStart); params.set("qe", quoteEnd); }
    writeHash(params);
    const view = $("doc-view");
    $("doc-title").textContent = "Loading…";
    $("doc-source").textContent = `${source} ¶${paragraph}`;
    $("doc-body").replaceChildren();
    view.hidden = false;
    document.querySelector(".layout").classList.add("with-doc");
    let doc;
    try {
      doc = await api(docUrl(source));
    } catch (e) {
      $("doc-title").textContent = "Cannot open the document";
      $("doc-body").replaceChildren(el("p", { class: "error", text: e.message }));
      return;
    }
    $("doc-title").textContent = doc.title || source;
    const body = $("doc-body");
    let target = null;
    for (const p of doc.paragraphs) {
      const isTarget = p.paragraph === Number(paragraph);
      let content = p.text;
      if (isTarget && quoteStart != null && quoteStart >= p.char_start && quoteEnd <= p.char_end) {
        content = highlighted(p.text, quoteStart - p.char_start, quoteEnd - p.char_start);
      }
      const row = el("div", { class: "para" + (isTarget ? " target" : ""), id: "para-" + p.paragraph,
                              "data-paragraph": p.paragraph },
        el("span", { class: "para-num", text: "¶" + p.paragraph }),
        el("p", { class: "para-text" }, content));
      body.append(row);
      if (isTarget) target = row;
    }
    if (target) {
      // Scroll the document panel only (not the page) to put the highlight a third of the way down.
      const focus = target.querySelector("mark") || target;
      const box = body.getBoundingClientRect();
      body.scrollTop += focus.getBoundingClientRect().top - box.top - box.height / 3;
      if (window.matchMedia("(max-width: 960px)").matches) view.scrollIntoView({ block: "start" });
    }
  }

  function closeDocument() {
    $("doc-view").hidden = true;
    document.querySelector(".layout").classList.remove("with-doc");
    document.querySelectorAll(".citation.active").forEach((x) => x.classList.remove("active"));
    const params = readHash();
    ["doc", "p", "qs", "qe"].forEach((k) => params.delete(k));
    writeHash(params);
  }

  // -- wiring ---------------------------------------------------------------------------------------
  function submit(ev) {
    if (ev) ev.preventDefault();
    const question = $("question").value.trim();
    if (!question) { showError("Type a question first."); return; }
    const k = Number($("k").value);
    const params = new URLSearchParams({ q: question });
    if (k !== 5) params.set("k", k);
    writeHash(params);
    if (!$("doc-view").hidden) closeDocument();
    ask(question, k);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("ask-form").addEventListener("submit", submit);
    $("doc-close").addEventListener("click", closeDocument);
    document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && !$("doc-view").hidden) closeDocument(); });
    $("key-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const key = $("api-key").value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY_STORAGE, key);
      show("key-banner", false);
      showError("");
      loadStatus();
      if ($("question").value.trim()) submit();
    });

    loadStatus();
    const params = readHash();
    if (params.get("k")) $("k").value = params.get("k");
    if (params.get("q")) {
      $("question").value = params.get("q");
      ask(params.get("q"), Number($("k").value));
    }
    if (params.get("doc")) {
      const qs = params.get("qs"), qe = params.get("qe");
      openDocument(params.get("doc"), Number(params.get("p") || 1),
                   qs === null ? null : Number(qs), qe === null ? null : Number(qe));
    }
  });
})();
